"""Deploy access for GitHub Actions: the GitHub OIDC provider and one deploy role per environment.

Deployed once per account and region by an administrator (docs/deploy.md), apart from the bridge
stacks. No AWS keys exist anywhere: a workflow job that runs in GitHub environment ENV gets an
OIDC token whose `sub` is `repo:OWNER/REPO:environment:ENV`, exchanges it for the role
`KafkaBridgeDeploy-ENV`, and that role may do exactly one thing: assume the CDK bootstrap roles of
this account and region (deploy, file-publishing, lookup), which `cdk deploy` uses. What a deploy
may change is therefore decided by `cdk bootstrap` (and its `--cloudformation-execution-policies`),
not by this stack.

Pull requests get `KafkaBridgeDiff`: trusted for `repo:OWNER/REPO:pull_request` (what GitHub
issues to pull-request jobs of the repository itself; forks get no token), allowed only to assume
the bootstrap lookup role, which reads (cdk diff compares with the deployed template) and changes
nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import CfnOutput, Fn, Stack
from aws_cdk import aws_iam as iam
from bridge.config import ConfigError
from constructs import Construct

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
GITHUB_AUDIENCE = "sts.amazonaws.com"
DEFAULT_QUALIFIER = "hnb659fds"  # what `cdk bootstrap` uses unless told otherwise
DEPLOY_ROLE_PREFIX = "KafkaBridgeDeploy-"
DIFF_ROLE_NAME = "KafkaBridgeDiff"
STACK_NAME = "KafkaBridgeDeployAccess"
# The bootstrap roles `cdk deploy` assumes (bootstrap v6+), named cdk-<qualifier>-<kind>-<account>-<region>
DEPLOY_BOOTSTRAP_ROLES = ("deploy-role", "file-publishing-role", "lookup-role")
DIFF_BOOTSTRAP_ROLES = ("lookup-role",)

_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_ENVIRONMENT_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")  # the bridge config's environment names
_QUALIFIER_RE = re.compile(r"^[A-Za-z0-9_-]{1,10}$")  # cdk bootstrap --qualifier
_OIDC_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/token\.actions\.githubusercontent\.com$")
# Checked with fullmatch, as config.py's fields are: `$` also matches before a trailing newline, which would go
# into the trusted subject (`repo:OWNER/REPO\n:...`, no token carries it) or the ARNs; [0-9], because `\d` takes
# any Unicode digit.


@dataclass(frozen=True)
class DeployAccessSettings:
    """What the admin passes as context: `-c github_repository=OWNER/REPO -c environments=dev,prod`."""

    repository: str
    environments: tuple[str, ...]
    qualifier: str = DEFAULT_QUALIFIER
    oidc_provider_arn: str | None = None  # reuse the account's GitHub provider (one per account)

    @classmethod
    def parse(cls, repository: object, environments: object, qualifier: object = None,
              oidc_provider_arn: object = None) -> DeployAccessSettings:
        problems = []
        repo = str(repository or "")
        if not _REPOSITORY_RE.fullmatch(repo) or "*" in repo:
            problems.append(f"context github_repository: {repository!r} is not OWNER/REPO. Fix: "
                            "-c github_repository=my-org/kafka-bridge (exact, no wildcards)")
        envs = tuple(e.strip() for e in str(environments or "").split(",") if e.strip())
        bad = [e for e in envs if not _ENVIRONMENT_RE.fullmatch(e)]
        if not envs or bad:
            problems.append(f"context environments: {environments!r} must list stage names (1-16 lowercase letters "
                            "and digits). Fix: -c environments=dev,prod")
        qual = str(qualifier or DEFAULT_QUALIFIER)
        if not _QUALIFIER_RE.fullmatch(qual):
            problems.append(f"context bootstrap_qualifier: {qualifier!r} is not a cdk bootstrap qualifier. Fix: "
                            "the --qualifier given to cdk bootstrap (default hnb659fds)")
        arn = str(oidc_provider_arn) if oidc_provider_arn else None
        if arn and not _OIDC_ARN_RE.fullmatch(arn):
            problems.append(f"context oidc_provider_arn: {arn!r} is not the GitHub OIDC provider. Fix: "
                            "arn:aws:iam::<account>:oidc-provider/token.actions.githubusercontent.com, or leave "
                            "it out to create the provider")
        if problems:
            raise ConfigError(problems, "cdk context")
        return cls(repo, envs, qual, arn)


def bootstrap_role_arn(qualifier: str, kind: str) -> str:
    """The ARN of a CDK bootstrap role of the stack's account and region (CloudFormation resolves both)."""
    return Fn.sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/cdk-{qualifier}-{kind}-"
                  "${AWS::AccountId}-${AWS::Region}")


class DeployAccessStack(Stack):
    """The GitHub OIDC provider (created or reused) and the roles workflows assume."""

    def __init__(self, scope: Construct, construct_id: str = STACK_NAME, *, settings: DeployAccessSettings,
                 **kwargs: object) -> None:
        super().__init__(scope, construct_id, description="GitHub Actions deploy access for the Kafka bridge",
                         **kwargs)  # type: ignore[arg-type]
        if settings.oidc_provider_arn:
            provider_arn = settings.oidc_provider_arn
        else:
            # IAM trusts GitHub's certificate authority for this host itself, so no thumbprint is pinned.
            provider = iam.CfnOIDCProvider(self, "GitHubOidc", url=f"https://{GITHUB_OIDC_HOST}",
                                           client_id_list=[GITHUB_AUDIENCE])
            provider_arn = provider.attr_arn
        self.provider_arn = provider_arn
        self.deploy_roles: dict[str, iam.Role] = {}
        for env in settings.environments:
            subject = f"repo:{settings.repository}:environment:{env}"
            role = self._role(f"Deploy-{env}", f"{DEPLOY_ROLE_PREFIX}{env}", subject, settings.qualifier,
                              DEPLOY_BOOTSTRAP_ROLES, f"cdk deploy of the {env} stage from {settings.repository}")
            self.deploy_roles[env] = role
            CfnOutput(self, f"DeployRoleArn-{env}", value=role.role_arn,
                      description=f"Role the {env} environment's jobs assume")
        self.diff_role = self._role("Diff", DIFF_ROLE_NAME, f"repo:{settings.repository}:pull_request",
                                    settings.qualifier, DIFF_BOOTSTRAP_ROLES,
                                    f"cdk diff (read-only) on pull requests of {settings.repository}")
        CfnOutput(self, "DiffRoleArn", value=self.diff_role.role_arn, description="Role pull-request jobs assume")

    def _role(self, construct_id: str, name: str, subject: str, qualifier: str, kinds: Sequence[str],
              description: str) -> iam.Role:
        principal = iam.FederatedPrincipal(
            self.provider_arn,
            conditions={"StringEquals": {f"{GITHUB_OIDC_HOST}:aud": GITHUB_AUDIENCE,
                                         f"{GITHUB_OIDC_HOST}:sub": subject}},
            assume_role_action="sts:AssumeRoleWithWebIdentity",
        )
        statement = iam.PolicyStatement(sid="AssumeCdkBootstrapRoles", actions=["sts:AssumeRole"],
                                        resources=[bootstrap_role_arn(qualifier, k) for k in kinds])
        return iam.Role(self, construct_id, role_name=name, assumed_by=principal, description=description,
                        inline_policies={"cdk-bootstrap-roles": iam.PolicyDocument(statements=[statement])})
