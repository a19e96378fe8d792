"""Producers' signing keys: nobody else reads or replaces them, the KMS key decrypts each secret only for
its readers, keys rotate on a schedule, and a previous key stops verifying after its grace."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from bridge.adapters.secrets import SecretsManagerSigningKeys
from bridge.service import Bridge

from infra.constructs.signing_keys import KEY_CHANGING_ACTIONS, MANAGING_ACTIONS
from tests.helpers import FakeSender, kafka_event, signed_record
from tests.infra.conftest import Synth
from tests.security.conftest import OPERATOR_ROLE
from tests.security.policy import ACCOUNT, ADMIN_LIKE, REGION, PolicyWorld, insider
from tests.security.test_runtime_attacks import KEYS, LEDGER, reasons, trust_config


def secret_arn(w: PolicyWorld, synth: Synth, producer: str) -> str:
    return w.arn(w.by_name("AWS::SecretsManager::Secret", synth.config.signing_secret_name(producer)))


def role(w: PolicyWorld, synth: Synth, producer: str | None = None) -> str:
    return w.role_arn(w.role_id_by_description(f"producer {producer} of" if producer else
                                               f"Kafka bridge {synth.config.name}"))


@pytest.mark.attack("another producer (or any insider with secretsmanager:* on *) reads a producer's key",
                    outcome="denied by policy", how="secret resource policy evaluated")
def test_only_its_producer_and_the_bridge_read_a_key(dev: Synth) -> None:
    w = PolicyWorld(dev.data)
    payments = secret_arn(w, dev, "payment-service")

    assert w.decide(role(w, dev, "payment-service"), "secretsmanager:GetSecretValue", payments)
    assert w.decide(role(w, dev), "secretsmanager:GetSecretValue", payments)
    for intruder in (role(w, dev, "refund-service"), role(w, dev, "order-service"), insider()):
        decision = w.decide(intruder, "secretsmanager:GetSecretValue", payments, identity=ADMIN_LIKE)
        assert decision.why.startswith("explicit deny"), intruder


@pytest.mark.attack("insider puts a signing key of their own (or restages an old one)", outcome="denied by policy",
                    how="secret resource policy evaluated (operators and the rotation function may)")
def test_only_rotation_and_operators_change_a_key(hardened: Synth) -> None:
    w = PolicyWorld(hardened.data)
    payments = secret_arn(w, hardened, "payment-service")
    rotation = w.role_arn(w.role_id_by_description("signing-key rotation"))

    for action in ("secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"):
        assert w.decide(rotation, action, payments)
        assert w.decide(OPERATOR_ROLE, action, payments, identity=ADMIN_LIKE)
        for intruder in (insider(), role(w, hardened, "payment-service")):
            assert w.decide(intruder, action, payments, identity=ADMIN_LIKE).why.startswith("explicit deny")


DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
# What CloudFormation calls Secrets Manager as: a session of the stack's service role ("If you specify a service
# role, CloudFormation uses that role's credentials", CloudFormation User Guide, "CloudFormation service role");
# CloudTrail shows it as this assumed-role ARN, and IAM's aws:PrincipalArn for it is the role's ARN.
DEPLOYER_SESSION = (f"arn:aws:sts::{ACCOUNT}:assumed-role/cdk-hnb659fds-cfn-exec-role-{ACCOUNT}-{REGION}"
                    "/AWSCloudFormation")


def test_the_secrets_name_the_execution_role_the_cdk_cli_hands_cloudformation(hardened: Synth) -> None:
    # given: the role `cdk deploy` passes CloudFormation as the stack's service role (RoleARN): the cloud
    # assembly's cloudFormationExecutionRoleArn for this stack
    manifest = json.loads((hardened.template_path.parent / "manifest.json").read_text(encoding="utf-8"))
    (stack,) = [a for a in manifest["artifacts"].values() if a.get("type") == "aws:cloudformation:stack"
                and a["properties"]["templateFile"] == hardened.template_path.name]
    execution_role = stack["properties"]["cloudFormationExecutionRoleArn"]
    assert execution_role == ("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/cdk-hnb659fds-cfn-exec-role-"
                              "${AWS::AccountId}-${AWS::Region}")

    # then: every secret policy's Deny exempts exactly that role's ARN (a role ARN, which is what aws:PrincipalArn
    # holds for its sessions), never a session ARN
    policies = hardened.resources("AWS::SecretsManager::ResourcePolicy").values()
    assert policies
    for policy in policies:
        for statement in policy["Properties"]["ResourcePolicy"]["Statement"]:
            if statement["Sid"] in ("OnlyRotationAndOperatorsChangeTheKey", "OnlyTheDeployerManages"):
                assert {"Fn::Sub": execution_role} in statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"]


@pytest.mark.attack("a session of another role with secretsmanager:* on *, even one named AWSCloudFormation, "
                    "rotates, replaces or deletes a signing secret",
                    outcome="denied by policy: only the execution role's sessions (CloudFormation's calls) pass",
                    how="secret resource policy evaluated for role sessions, aws:PrincipalArn as IAM documents it")
def test_cloudformations_session_may_make_every_write_it_deploys_with(hardened: Synth) -> None:
    w = PolicyWorld(hardened.data)
    payments = secret_arn(w, hardened, "payment-service")
    for action in sorted(set(KEY_CHANGING_ACTIONS) | set(MANAGING_ACTIONS)):
        assert w.decide(DEPLOYER_SESSION, action, payments, identity=ADMIN_LIKE), action
        # a session of any other role with the same identity policy is denied
        other = f"arn:aws:sts::{ACCOUNT}:assumed-role/some-team-role/AWSCloudFormation"
        assert w.decide(other, action, payments, identity=ADMIN_LIKE).why.startswith("explicit deny"), action


@pytest.mark.attack("insider or producer with secretsmanager:* on * rotates a signing key now, points its rotation at "
                    "a function of their own, cancels rotation, updates the value, or deletes the secret, lifts its "
                    "policy, replicates it to another region or account, retags it",
                    outcome="denied by policy: the key's changes to the rotation function, the operators and "
                            "CloudFormation's execution role; the rest to CloudFormation's execution role",
                    how="secret resource policy evaluated for every write action in botocore's secretsmanager model")
def test_every_write_to_a_signing_secret_is_denied_to_all_but_the_named_roles(hardened: Synth) -> None:
    w = PolicyWorld(hardened.data)
    payments = secret_arn(w, hardened, "payment-service")
    intruders = (insider(), role(w, hardened, "payment-service"), role(w, hardened, "refund-service"),
                 role(w, hardened))
    # every operation of botocore's model that changes an existing secret (all but reads and CreateSecret)
    model = botocore.session.get_session().get_service_model("secretsmanager")
    writes = {f"secretsmanager:{op}" for op in model.operation_names
              if not op.startswith(("Get", "Describe", "List", "BatchGet", "Validate")) and op != "CreateSecret"}
    assert writes == set(KEY_CHANGING_ACTIONS) | set(MANAGING_ACTIONS)

    for action in sorted(writes):
        for intruder in intruders:
            decision = w.decide(intruder, action, payments, identity=ADMIN_LIKE)
            assert decision.why.startswith("explicit deny"), f"{intruder} {action}: {decision.why}"
        assert w.decide(DEPLOYER, action, payments, identity=ADMIN_LIKE), action  # CloudFormation deploys it
        # the operators may rotate, cancel or replace a key (revoking it), and nothing else
        assert bool(w.decide(OPERATOR_ROLE, action, payments, identity=ADMIN_LIKE)) == (action in KEY_CHANGING_ACTIONS)


@pytest.mark.attack("producer decrypts another producer's secret with the shared KMS key",
                    outcome="denied by policy", how="identity policy evaluated with kms:EncryptionContext:SecretARN")
def test_the_kms_key_decrypts_only_the_callers_own_secret(dev: Synth) -> None:
    w = PolicyWorld(dev.data)
    (key,) = [k for k in w.ids("AWS::KMS::Key") if "signing secrets" in
              w.resources[k]["Properties"].get("Description", "")]
    own, other = secret_arn(w, dev, "refund-service"), secret_arn(w, dev, "payment-service")
    refund = role(w, dev, "refund-service")

    via = {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}

    assert w.decide(refund, "kms:Decrypt", w.arn(key), context={"kms:EncryptionContext:SecretARN": own, **via})
    assert not w.decide(refund, "kms:Decrypt", w.arn(key),
                        context={"kms:EncryptionContext:SecretARN": other, **via})
    assert not w.decide(refund, "kms:Decrypt", w.arn(key), context=via)


@pytest.mark.attack("insider with kms:* on * decrypts a copied signing-secret ciphertext directly",
                    outcome="denied by policy", how="key policy evaluated (kms:ViaService, encryption context)")
def test_the_signing_key_decrypts_only_through_secrets_manager(dev: Synth) -> None:
    w = PolicyWorld(dev.data)
    (key,) = [k for k in w.ids("AWS::KMS::Key") if "signing secrets" in
              w.resources[k]["Properties"].get("Description", "")]
    secret = {"kms:EncryptionContext:SecretARN": secret_arn(w, dev, "payment-service")}

    for context in (secret, {"kms:ViaService": "secretsmanager.us-east-1.amazonaws.com"}):
        decision = w.decide(insider(), "kms:Decrypt", w.arn(key), identity=ADMIN_LIKE, context=context)
        assert decision.why.startswith("explicit deny"), context


def test_every_signing_key_rotates_on_the_configured_schedule(dev: Synth) -> None:
    schedules = dev.resources("AWS::SecretsManager::RotationSchedule").values()
    days = dev.config.settings.signing_key_rotation_days

    assert len(schedules) == sum(p.signing for p in dev.config.producers)
    assert {s["Properties"]["RotationRules"]["AutomaticallyAfterDays"] for s in schedules} == {days}


@pytest.mark.attack("record signed with a rotated-out (or revoked) key after the grace",
                    outcome="parked: invalid_signature", how="runtime: Bridge over the Secrets Manager adapter "
                    "(botocore Stubber)")
@pytest.mark.parametrize(("age", "expected"), [(timedelta(hours=1), []), (timedelta(days=2), ["invalid_signature"])],
                         ids=["within-grace", "after-grace"])
def test_previous_key_expires(make_bridge: Callable[..., Bridge], sqs: FakeSender, age: timedelta,
                              expected: list[str]) -> None:
    rotated = datetime(2026, 1, 1, tzinfo=UTC) - age  # the bridge's clock says 2026-01-01
    client = boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    cfg = trust_config()
    with Stubber(client) as stub:
        stub.add_response("get_secret_value", {"SecretString": "brand-new-key", "CreatedDate": rotated},
                          {"SecretId": cfg.signing_secret_name("payer"), "VersionStage": "AWSCURRENT"})
        if not expected:
            stub.add_response("get_secret_value", {"SecretString": KEYS["payer"].decode()},
                              {"SecretId": cfg.signing_secret_name("payer"), "VersionStage": "AWSPREVIOUS"})
        keys = SecretsManagerSigningKeys(client, cfg, clock=lambda: datetime(2026, 1, 1, tzinfo=UTC))
        bridge = make_bridge(cfg, signing_keys=keys)

        bridge.handle(kafka_event([signed_record(KEYS["payer"], "payer", "payments")]))

    parked: list[dict[str, Any]] = [json.loads(m.body) for m in sqs.sent.get(bridge.dlq.name, [])]
    assert reasons(parked) == expected
    assert len(sqs.sent.get(LEDGER, [])) == (0 if expected else 1)
