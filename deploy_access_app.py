#!/usr/bin/env python3
"""CDK app of the deploy-access stack (GitHub OIDC provider + deploy roles), deployed once by an admin:

    npx cdk --app "python deploy_access_app.py" deploy \\
        -c github_repository=OWNER/REPO -c environments=dev,prod [-c bootstrap_qualifier=Q] \\
        [-c oidc_provider_arn=arn:aws:iam::ACCOUNT:oidc-provider/token.actions.githubusercontent.com]

See docs/deploy.md.
"""

from __future__ import annotations

import sys

import aws_cdk as cdk

from infra.deploy_access import DeployAccessSettings, DeployAccessStack
from infra.limits import synth_checked
from infra.nag import add_nag_checks


def build(app: cdk.App) -> DeployAccessStack:
    ctx = app.node.try_get_context
    settings = DeployAccessSettings.parse(ctx("github_repository"), ctx("environments") or "dev,prod",
                                          ctx("bootstrap_qualifier"), ctx("oidc_provider_arn"))
    stack = DeployAccessStack(app, settings=settings)
    add_nag_checks(app)
    return stack


def main(app: cdk.App | None = None) -> int:
    return synth_checked(app or cdk.App(), build)


if __name__ == "__main__":
    sys.exit(main())
