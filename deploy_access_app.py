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
from bridge.config import ConfigError

from infra.deploy_access import DeployAccessSettings, DeployAccessStack
from infra.limits import LimitError, check_assembly
from infra.nag import add_nag_checks


def build(app: cdk.App) -> DeployAccessStack:
    ctx = app.node.try_get_context
    settings = DeployAccessSettings.parse(ctx("github_repository"), ctx("environments") or "dev,prod",
                                          ctx("bootstrap_qualifier"), ctx("oidc_provider_arn"))
    stack = DeployAccessStack(app, settings=settings)
    add_nag_checks(app)
    return stack


def main(app: cdk.App | None = None) -> int:
    app = app or cdk.App()
    try:
        build(app)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        check_assembly(app, app.synth())
    except LimitError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
