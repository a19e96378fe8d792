"""The operators' statements for `bridge redrive` (infra.constructs.operator_access): one resource each,
the operator roles as principals, and none without operators."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge.config import MAX_OPERATOR_ARN_LENGTH, BridgeConfig, ConfigError

from infra.config_document import config_from_document
from infra.constructs.messaging import CONSUMER_ACTIONS
from infra.constructs.operator_access import DLQ_ACTIONS
from tests.infra.conftest import Synth, _provisioned_edit, synthesize

SIDS = ("OperatorsRedrive", "OperatorsReadTheBridgeDlq", "OperatorsReadParkedRecords", "OperatorsListFailedBatches",
        "OperatorsRemoveReplayedFailedBatches", "OperatorsReadParkedRecordsViaS3")


def _by_sid(synth: Synth) -> dict[str, tuple[str, dict[str, Any]]]:
    """sid -> (logical id of the policy's resource or key, the statement) for the operators' statements."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for logical_id, resource in synth.data["Resources"].items():
        props = resource.get("Properties", {})
        for key in ("KeyPolicy", "PolicyDocument"):
            for statement in props.get(key, {}).get("Statement", []):
                if statement.get("Sid") in SIDS:
                    assert statement["Sid"] not in found, statement["Sid"]
                    found[statement["Sid"]] = (logical_id, statement)
    return found


def test_each_operator_statement_names_the_operator_roles_and_one_resource(provisioned: Synth) -> None:
    operators = list(provisioned.config.settings.operator_role_arns)
    found = _by_sid(provisioned)
    assert set(found) == set(SIDS)
    for _, statement in found.values():
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"AWS": operators[0] if len(operators) == 1 else operators}
    # the bridge DLQ's policy: the command's four calls on that queue
    dlq = provisioned.logical_id("AWS::SQS::Queue", QueueName=provisioned.config.bridge_dlq_name)
    policy_id, statement = found["OperatorsRedrive"]
    assert provisioned.data["Resources"][policy_id]["Properties"]["Queues"] == [{"Ref": dlq}]
    assert statement["Action"] == DLQ_ACTIONS
    assert statement["Resource"] == {"Fn::GetAtt": [dlq, "Arn"]}
    # the queue key: Decrypt only through SQS, only for the bridge DLQ's messages
    key_id, statement = found["OperatorsReadTheBridgeDlq"]
    assert provisioned.data["Resources"][dlq]["Properties"]["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    assert statement["Action"] == "kms:Decrypt"
    (sqs_arn,) = statement["Condition"]["ArnEquals"].values()
    assert provisioned.config.bridge_dlq_name in str(sqs_arn)
    assert set(statement["Condition"]["StringEquals"]) == {"kms:ViaService"}
    # the parking bucket: read objects, list and remove only the mapping's failed batches
    assert found["OperatorsReadParkedRecords"][1]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert found["OperatorsListFailedBatches"][1]["Condition"] == {"StringLike": {"s3:prefix": ["aws/lambda/*"]}}
    assert found["OperatorsRemoveReplayedFailedBatches"][1]["Action"] == "s3:DeleteObject"
    assert found["OperatorsRemoveReplayedFailedBatches"][1]["Resource"]["Fn::Join"][1][1] == "/aws/lambda/*"
    # the parking key through S3 only
    assert set(found["OperatorsReadParkedRecordsViaS3"][1]["Condition"]["StringEquals"]) == {"kms:ViaService"}


def test_each_operator_may_invoke_the_live_alias_and_nothing_else(provisioned: Synth) -> None:
    (alias,) = provisioned.resources("AWS::Lambda::Alias")
    permissions = [p["Properties"] for p in provisioned.resources("AWS::Lambda::Permission").values()
                   if str(p["Properties"]["Principal"]).startswith("arn:aws:iam::")]
    assert permissions == [{"Action": "lambda:InvokeFunction", "FunctionName": {"Ref": alias},
                            "Principal": arn} for arn in provisioned.config.settings.operator_role_arns]


def test_without_operators_the_stack_writes_none_of_it(dev: Synth) -> None:
    assert dev.config.settings.operator_role_arns == ()
    assert _by_sid(dev) == {}
    assert not any(str(p["Properties"]["Principal"]).startswith("arn:aws:iam::")
                   for p in dev.resources("AWS::Lambda::Permission").values())


def test_the_stack_grants_bridge_replay_exactly_the_dlqs_the_command_takes(provisioned: Synth) -> None:
    # given: what `bridge replay` reads from and writes to (the CLI's list, from the config model)
    from bridge_local.dlq_replay import replay_sources  # noqa: PLC0415 - the local tools' side of the contract

    config = provisioned.config
    wanted = {(s.dlq, s.target) for s in replay_sources(config) if not s.signed_only}
    signed_only = {s.target for s in replay_sources(config) if s.signed_only}
    assert signed_only  # the variant has a queue that takes only signed records: it must get no grant

    # then: each such DLQ's own policy grants the operators the reads, each target's the sends, nothing else does
    names = {k: q["Properties"]["QueueName"] for k, q in provisioned.resources("AWS::SQS::Queue").items()}
    granted: dict[str, set[str]] = {"OperatorsReplayFromThisDlq": set(), "OperatorsReplayIntoThisQueue": set()}
    for policy in provisioned.resources("AWS::SQS::QueuePolicy").values():
        (queue,) = policy["Properties"]["Queues"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement.get("Sid") in granted:
                assert statement["Resource"] == {"Fn::GetAtt": [queue["Ref"], "Arn"]}
                granted[statement["Sid"]].add(names[queue["Ref"]])
    assert granted["OperatorsReplayFromThisDlq"] == {dlq for dlq, _ in wanted}
    assert granted["OperatorsReplayIntoThisQueue"] == {target for _, target in wanted}
    assert not signed_only & granted["OperatorsReplayIntoThisQueue"]


def _bridge_dlq_deny(synth: Synth) -> dict[str, Any]:
    dlq = synth.logical_id("AWS::SQS::Queue", QueueName=synth.config.bridge_dlq_name)
    found = [s for p in synth.resources("AWS::SQS::QueuePolicy").values() if p["Properties"]["Queues"] == [{"Ref": dlq}]
             for s in p["Properties"]["PolicyDocument"]["Statement"] if s.get("Sid") == "OnlyTheOperatorsReceive"]
    assert len(found) == 1
    assert found[0]["Effect"] == "Deny"
    assert found[0]["Principal"] == {"AWS": "*"}
    assert found[0]["Action"] == CONSUMER_ACTIONS
    assert found[0]["Resource"] == {"Fn::GetAtt": [dlq, "Arn"]}
    return found[0]


def test_the_bridge_dlq_denies_taking_messages_to_all_but_the_operators(provisioned: Synth, dev: Synth) -> None:
    # with operators: every other principal is denied receive, delete, change visibility and purge
    statement = _bridge_dlq_deny(provisioned)
    assert statement["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn":
                                                       list(provisioned.config.settings.operator_role_arns)}}
    # without: no one (the bridge only sends there); an operator role in settings.operator_role_arns is the way in
    assert "Condition" not in _bridge_dlq_deny(dev)


def _cloudformation_schema(resource_type: str) -> dict[str, Any]:
    """CloudFormation's resource schema for `resource_type` (us-east-1), as cfn-lint bundles it."""
    spec = importlib.util.find_spec("cfnlint")
    assert spec is not None
    assert spec.origin is not None
    schemas = Path(spec.origin).parent / "data" / "schemas"
    digest = json.loads((schemas / "providers" / "us-east-1.json").read_text())[resource_type]
    schema: dict[str, Any] = json.loads((schemas / "resources" / f"{digest}.json").read_text())
    return schema


def _operator_arn(length: int) -> str:
    """A valid role ARN of `length` characters: a path of team folders and a 64-character name at most."""
    head = "arn:aws:iam::123456789012:role/"
    name = "bridge-operators"
    path = ("platform/" * 60)[: length - len(head) - len(name)]
    arn = head + path + name
    assert len(arn) == length
    return arn


def test_an_operator_role_longer_than_cloudformation_takes_as_a_lambda_principal_is_refused_at_validation(
        variant_document: Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]], tmp_path: Path) -> None:
    # given: CloudFormation's schema for AWS::Lambda::Permission, whose Principal each operator role is (the live
    # alias's invoke permission): at most 256 characters, where IAM allows role paths of 512 and botocore's lambda
    # model a Principal of 2,048
    principal = _cloudformation_schema("AWS::Lambda::Permission")["properties"]["Principal"]
    assert principal["maxLength"] == MAX_OPERATOR_ARN_LENGTH == 256

    def with_operator(arn: str) -> Callable[[dict[str, Any]], None]:
        def edit(doc: dict[str, Any]) -> None:
            _provisioned_edit(doc)
            doc["settings"]["operator_role_arns"] = [arn]
        return edit

    # when: one operator role is a character longer: refused at validation, naming the field and the fix
    with pytest.raises(ConfigError) as caught:
        BridgeConfig.from_dict(variant_document(with_operator(_operator_arn(principal["maxLength"] + 1))))
    (problem,) = caught.value.problems
    assert problem.startswith("settings.operator_role_arns: role arn:aws:iam::123456789012:role/")
    assert "is 257 characters long, more than the 256 CloudFormation takes as the Principal" in problem
    assert problem.endswith("Fix: use a role with a shorter path or name")

    # then: the longest accepted synthesizes a permission whose Principal fits the schema
    longest = _operator_arn(principal["maxLength"])
    synth = synthesize(config_from_document(variant_document(with_operator(longest)), "longest-operator"), tmp_path)
    principals = [p["Properties"]["Principal"] for p in synth.resources("AWS::Lambda::Permission").values()]
    assert longest in principals
    assert max(len(p) for p in principals if isinstance(p, str)) <= principal["maxLength"]
