"""`bridge redrive`'s permissions: what the stack grants the roles in `settings.operator_role_arns`, and only them.

Every call the command makes in AWS mode (infra.constructs.operator_access lists them) is evaluated against
the synthesized resource and key policies for an operator role that has no identity policy of its own:
the stack's grants must be enough. The same requests from a role the config does not name, and requests
an operator could try beyond the command's needs (another queue's messages through the shared queue key,
parked objects deleted, the function's unpublished code invoked), must get nothing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import MAX_OPERATOR_ROLES, BridgeConfig, ConfigError

from tests.infra.conftest import Synth
from tests.security.policy import ACCOUNT, REGION, PolicyWorld, insider

VIA_SQS = {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}
VIA_S3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}


def _calls(synth: Synth) -> tuple[PolicyWorld, list[tuple[str, str, dict[str, Any]]]]:
    """Every (action, resource ARN, request context) `bridge redrive` makes, DLQ replay and --on-failure."""
    world = PolicyWorld(synth.data)
    config = synth.config
    dlq = world.arn(world.by_name("AWS::SQS::Queue", config.bridge_dlq_name))
    queue_key = world.arn(synth.data["Resources"][world.by_name("AWS::SQS::Queue", config.bridge_dlq_name)]
                          ["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0])
    (bucket_id,) = [k for k in world.ids("AWS::S3::Bucket") if "ParkingBucket" in k]
    bucket = world.arn(bucket_id)
    parking_key = world.arn(synth.data["Resources"][bucket_id]["Properties"]["BucketEncryption"]
                            ["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
                            ["KMSMasterKeyID"]["Fn::GetAtt"][0])
    (alias_id,) = world.ids("AWS::Lambda::Alias")
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("sqs:ReceiveMessage", dlq, {}), ("sqs:ChangeMessageVisibility", dlq, {}), ("sqs:DeleteMessage", dlq, {}),
        ("sqs:GetQueueAttributes", dlq, {}),
        ("kms:Decrypt", queue_key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": dlq}),
        ("s3:GetObject", f"{bucket}/parked/orders/0/17-analytics-too_large-ab12.json", {}),
        ("s3:ListBucket", bucket, {"s3:prefix": "aws/lambda/"}),
        ("s3:GetObject", f"{bucket}/aws/lambda/esm-1/2026/12/02/obj", {}),
        ("s3:DeleteObject", f"{bucket}/aws/lambda/esm-1/2026/12/02/obj", {}),
        ("kms:Decrypt", parking_key, VIA_S3),
        ("lambda:InvokeFunction", world.arn(alias_id), {}),
    ]
    return world, calls


def _beyond(world: PolicyWorld, synth: Synth) -> list[tuple[str, str, dict[str, Any]]]:
    """Requests beyond what the command needs, each of which the operators' grants must not reach."""
    _, calls = _calls(synth)
    dlq = calls[0][1]
    queue_key = calls[4][1]
    bucket = calls[6][1]
    alias = calls[-1][1]
    destination = next(world.arn(k) for k in world.ids("AWS::SQS::Queue") if world.arn(k) != dlq
                       and not world.resolver.name_of(k).removesuffix(".fifo").endswith("dlq"))
    # a queue `bridge replay` never sends to (it takes only signed records), so the operators hold no key grant
    # for its messages either (test_operator_replay.py covers the replay targets)
    (signed_only,) = [d.physical_name(synth.config.prefix) for d in synth.config.destinations if d.accept_from]
    ledger = world.arn(world.by_name("AWS::SQS::Queue", signed_only))
    return [
        ("sqs:ReceiveMessage", destination, {}), ("sqs:PurgeQueue", dlq, {}), ("sqs:SendMessage", dlq, {}),
        ("sqs:SetQueueAttributes", dlq, {}),
        ("kms:Decrypt", queue_key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": ledger}),
        ("kms:Decrypt", queue_key, {}), ("kms:Decrypt", calls[9][1], {}),
        ("s3:DeleteObject", f"{bucket}/parked/orders/0/17-analytics-too_large-ab12.json", {}),
        ("s3:PutObject", f"{bucket}/aws/lambda/forged", {}),
        ("s3:ListBucket", bucket, {"s3:prefix": "parked/"}), ("s3:ListBucket", bucket, {}),
        ("lambda:InvokeFunction", alias.rsplit(":", 1)[0], {}),  # the function itself ($LATEST)
        ("lambda:UpdateFunctionCode", alias, {}),
    ]


@pytest.mark.attack("an operator role runs bridge redrive with no identity policy; any other role tries the same",
                    outcome="denied by policy: only settings.operator_role_arns get the command's calls",
                    how="synth: DLQ, key, bucket and alias policies evaluated (tests/security/policy.py)")
def test_operators_get_every_call_of_bridge_redrive_and_no_one_else_does(provisioned: Synth) -> None:
    world, calls = _calls(provisioned)
    (operator,) = provisioned.config.settings.operator_role_arns
    # the operator's role as it is: the stack's resource and key policies grant every call
    refused = [(a, r) for a, r, c in calls if not world.decide(operator, a, r, identity=[], context=c)]
    assert refused == []
    # a role the config does not name gets none of it from the stack
    granted = [(a, r) for a, r, c in calls if world.decide(insider(), a, r, identity=[], context=c)]
    assert granted == []


@pytest.mark.attack("an operator role uses its redrive grants beyond the command (other queues through the shared "
                    "key, parked objects deleted, $LATEST invoked, DLQ purged)",
                    outcome="denied by policy", how="synth: the same policies, requests outside the grant")
def test_the_operators_grants_reach_nothing_beyond_the_command(provisioned: Synth) -> None:
    world, _ = _calls(provisioned)
    (operator,) = provisioned.config.settings.operator_role_arns
    allowed = [(a, r, c) for a, r, c in _beyond(world, provisioned)
               if world.decide(operator, a, r, identity=[], context=c)]
    assert allowed == []


def test_a_stack_without_operators_grants_redrive_to_no_one(dev: Synth) -> None:
    assert dev.config.settings.operator_role_arns == ()
    world, calls = _calls(dev)
    granted = [(a, r) for a, r, c in calls if world.decide(insider(), a, r, identity=[], context=c)]
    assert granted == []
    assert not world.ids("AWS::Lambda::Permission") or all(
        not p["Properties"]["Principal"].startswith("arn:aws:iam::")
        for p in dev.resources("AWS::Lambda::Permission").values())


@pytest.mark.attack("a wildcard, a whole account or an assumed-role session in settings.operator_role_arns",
                    outcome="refused at synth", how="config validation, one line")
@pytest.mark.parametrize("arn", [
    "*", f"arn:aws:iam::{ACCOUNT}:root", ACCOUNT, f"arn:aws:iam::{ACCOUNT}:role/*", "arn:aws:iam::*:role/ops",
    f"arn:aws:iam::{ACCOUNT}:role/ops-*", f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/alice",
    f"arn:aws:iam::{ACCOUNT}:user/alice"])
def test_an_operator_principal_wider_than_a_role_is_refused(
        variant_document: Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]], arn: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("settings", {})["operator_role_arns"] = [arn]

    with pytest.raises(ConfigError) as caught:
        BridgeConfig.from_dict(variant_document(edit))
    (problem,) = caught.value.problems
    assert problem.startswith("settings.operator_role_arns[0]")
    assert "Fix:" in problem


def test_more_operator_roles_than_the_policies_can_name_are_refused(
        variant_document: Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("settings", {})["operator_role_arns"] = [
            f"arn:aws:iam::{ACCOUNT}:role/ops-{i}" for i in range(MAX_OPERATOR_ROLES + 1)]

    with pytest.raises(ConfigError) as caught:
        BridgeConfig.from_dict(variant_document(edit))
    (problem,) = caught.value.problems
    assert problem.startswith(f"settings.operator_role_arns: lists {MAX_OPERATOR_ROLES + 1} roles")


def _statements(data: dict[str, Any], sid: str) -> list[dict[str, Any]]:
    found = [s for r in data["Resources"].values() for key in ("KeyPolicy", "PolicyDocument")
             for s in r.get("Properties", {}).get(key, {}).get("Statement", []) if s.get("Sid") == sid]
    assert found, sid
    return found


@pytest.mark.parametrize(("sid", "leak"), [
    ("OperatorsReadTheBridgeDlq", "kms:Decrypt"),  # any queue's messages through the shared queue key
    ("OperatorsListFailedBatches", "s3:ListBucket"),  # every parked object's name
], ids=["queue-key-without-encryption-context", "list-without-prefix"])
def test_the_checks_catch_a_widened_operator_grant(provisioned: Synth, sid: str, leak: str) -> None:
    data = copy.deepcopy(provisioned.data)
    for statement in _statements(data, sid):
        statement["Condition"] = {k: v for k, v in statement["Condition"].items() if k == "StringEquals"
                                  and "kms:ViaService" in v} or None
        if statement["Condition"] is None:
            del statement["Condition"]
    widened = Synth(provisioned.config, data, provisioned.template, provisioned.template_path,
                    provisioned.nag_report, provisioned.package_dir)
    world, _ = _calls(widened)
    (operator,) = provisioned.config.settings.operator_role_arns
    allowed = [a for a, r, c in _beyond(world, widened) if world.decide(operator, a, r, identity=[], context=c)]
    assert leak in allowed, allowed
