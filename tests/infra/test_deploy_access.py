"""The deploy-access stack: who may assume the deploy roles (exactly), and what they may do (only assume
the CDK bootstrap roles of this account and region)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from bridge.config import ConfigError
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

import deploy_access_app
from infra.deploy_access import DeployAccessSettings
from infra.limits import check_assembly
from tests.infra.helpers import as_list

pytestmark = pytest.mark.infra

REPO = "example-org/kafka-bridge"
OIDC = "token.actions.githubusercontent.com"
EXISTING_PROVIDER = "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"


def _synth(tmp: Path, **context: str) -> dict[str, Any]:
    app = cdk.App(context={"github_repository": REPO, "environments": "dev,prod", **context}, outdir=str(tmp))
    deploy_access_app.build(app)
    check_assembly(app, app.synth())  # cdk-nag AwsSolutions runs in synth: a finding raises ValidationFailed
    report = json.loads((tmp / "validation-report.json").read_text(encoding="utf-8"))
    assert all(p["conclusion"] == "success" for p in report["pluginReports"]), report  # and nothing acknowledged
    data: dict[str, Any] = json.loads((tmp / "KafkaBridgeDeployAccess.template.json").read_text(encoding="utf-8"))
    data["__path__"] = str(tmp / "KafkaBridgeDeployAccess.template.json")
    return data


@pytest.fixture(scope="module")
def access(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth(tmp_path_factory.mktemp("access"))


def _roles(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["Properties"]["RoleName"]: r["Properties"] for r in data["Resources"].values()
            if r["Type"] == "AWS::IAM::Role"}


def _bootstrap_arn(qualifier: str, kind: str) -> dict[str, str]:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/cdk-{qualifier}-{kind}-"
                       "${AWS::AccountId}-${AWS::Region}"}


def test_creates_the_github_provider_for_the_sts_audience(access: dict[str, Any]) -> None:
    (provider,) = [r["Properties"] for r in access["Resources"].values() if r["Type"] == "AWS::IAM::OIDCProvider"]
    assert provider == {"Url": f"https://{OIDC}", "ClientIdList": ["sts.amazonaws.com"]}


@pytest.mark.parametrize(("role", "subject"), [
    ("KafkaBridgeDeploy-dev", f"repo:{REPO}:environment:dev"),
    ("KafkaBridgeDeploy-prod", f"repo:{REPO}:environment:prod"),
    ("KafkaBridgeDiff", f"repo:{REPO}:pull_request"),
])
def test_each_role_trusts_exactly_one_subject_with_string_equals(access: dict[str, Any], role: str,
                                                                  subject: str) -> None:
    provider_id = next(k for k, r in access["Resources"].items() if r["Type"] == "AWS::IAM::OIDCProvider")
    trust = _roles(access)[role]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [{
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Effect": "Allow",
        "Principal": {"Federated": {"Fn::GetAtt": [provider_id, "Arn"]}},
        "Condition": {"StringEquals": {f"{OIDC}:aud": "sts.amazonaws.com", f"{OIDC}:sub": subject}},
    }]


@pytest.mark.parametrize(("role", "kinds"), [
    ("KafkaBridgeDeploy-dev", ["deploy-role", "file-publishing-role", "lookup-role"]),
    ("KafkaBridgeDeploy-prod", ["deploy-role", "file-publishing-role", "lookup-role"]),
    ("KafkaBridgeDiff", ["lookup-role"]),
])
def test_each_role_may_only_assume_the_bootstrap_roles(access: dict[str, Any], role: str, kinds: list[str]) -> None:
    props = _roles(access)[role]
    (policy,) = props["Policies"]
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert statement == {"Sid": "AssumeCdkBootstrapRoles", "Action": "sts:AssumeRole", "Effect": "Allow",
                         "Resource": statement["Resource"]}
    assert as_list(statement["Resource"]) == [_bootstrap_arn("hnb659fds", k) for k in kinds]
    assert "ManagedPolicyArns" not in props
    # nothing else grants these roles anything
    others = [r for r in access["Resources"].values() if r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy")]
    assert others == []


def test_no_wildcard_action_or_resource_anywhere(access: dict[str, Any]) -> None:
    for props in _roles(access).values():
        for policy in props["Policies"]:
            for s in as_list(policy["PolicyDocument"]["Statement"]):
                assert all("*" not in a for a in as_list(s["Action"]))
                assert all("*" not in json.dumps(r) for r in as_list(s["Resource"]))


def test_an_existing_provider_is_reused_and_the_qualifier_is_used(tmp_path: Path) -> None:
    data = _synth(tmp_path, oidc_provider_arn=EXISTING_PROVIDER, bootstrap_qualifier="team42")
    assert not [r for r in data["Resources"].values() if r["Type"] == "AWS::IAM::OIDCProvider"]
    role = _roles(data)["KafkaBridgeDeploy-dev"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Federated": EXISTING_PROVIDER}
    assert _bootstrap_arn("team42", "deploy-role") in role["Policies"][0]["PolicyDocument"]["Statement"][0]["Resource"]


def test_cfn_lint_reports_nothing(access: dict[str, Any]) -> None:
    matches = lint_file(Path(access["__path__"]), ManualArgs(regions=["us-east-1"]))
    assert [str(m) for m in matches] == []


@pytest.mark.parametrize(("context", "field"), [
    ({"github_repository": "example-org/*"}, "context github_repository"),
    ({"github_repository": None}, "context github_repository"),
    ({"environments": "dev,Prod"}, "context environments"),
    ({"oidc_provider_arn": "arn:aws:iam::123456789012:oidc-provider/example.com"}, "context oidc_provider_arn"),
])
def test_bad_context_is_refused_naming_it(context: dict[str, Any], field: str) -> None:
    values = {"github_repository": REPO, "environments": "dev,prod", **context}
    with pytest.raises(ConfigError) as info:
        DeployAccessSettings.parse(values["github_repository"], values["environments"], None,
                                   values.get("oidc_provider_arn"))
    assert [p for p in info.value.problems if p.startswith(f"{field}:")]


ARABIC_INDIC_ACCOUNT = "".join(chr(0x0660 + int(c)) for c in "123456789012")


@pytest.mark.parametrize(("repository", "qualifier", "provider", "field"), [
    (REPO + "\n", None, None, "context github_repository"),
    (REPO, "hnb659fds\n", None, "context bootstrap_qualifier"),
    (REPO, None, EXISTING_PROVIDER + "\n", "context oidc_provider_arn"),
    (REPO, None, EXISTING_PROVIDER.replace("123456789012", ARABIC_INDIC_ACCOUNT), "context oidc_provider_arn"),
], ids=["repository-newline", "qualifier-newline", "provider-newline", "provider-arabic-indic-account"])
def test_a_context_value_is_matched_whole_and_in_ascii(repository: str, qualifier: str | None, provider: str | None,
                                                       field: str) -> None:
    # `$` matched before a trailing newline (which went into the trusted subject `repo:OWNER/REPO\n:...` or an
    # ARN), and `\d` took any Unicode digit
    with pytest.raises(ConfigError) as info:
        DeployAccessSettings.parse(repository, "dev,prod", qualifier, provider)
    assert [p.split(":")[0] for p in info.value.problems] == [field]


def test_the_same_context_values_without_the_newline_pass() -> None:
    settings = DeployAccessSettings.parse(REPO, "dev,prod", "hnb659fds", EXISTING_PROVIDER)
    assert (settings.repository, settings.qualifier, settings.oidc_provider_arn) == (REPO, "hnb659fds",
                                                                                     EXISTING_PROVIDER)
