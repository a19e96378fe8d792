"""`bridge replay`'s permissions: the operators get every call for every DLQ it takes, no one else does, and the
send grant opens no way into a queue that takes only signed records.

Every call is evaluated against the synthesized resource and key policies (tests/security/policy.py) for an
operator role with no identity policy of its own, as in test_operator_redrive.py.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bridge_local.dlq_replay import ReplaySource, replay_sources
from tests.infra.conftest import Synth
from tests.security.policy import REGION, PolicyWorld, insider

VIA_SQS = {"kms:ViaService": f"sqs.{REGION}.amazonaws.com"}

Call = tuple[str, str, dict[str, Any]]


def _queue_key(world: PolicyWorld, synth: Synth) -> str:
    dlq = world.by_name("AWS::SQS::Queue", synth.config.bridge_dlq_name)
    return world.arn(synth.data["Resources"][dlq]["Properties"]["KmsMasterKeyId"]["Fn::GetAtt"][0])


def _replay_calls(world: PolicyWorld, synth: Synth, source: ReplaySource) -> list[Call]:
    """Every (action, resource, context) `bridge replay --from <source>` makes in AWS mode."""
    dlq = world.arn(world.by_name("AWS::SQS::Queue", source.dlq))
    target = world.arn(world.by_name("AWS::SQS::Queue", source.target))
    key = _queue_key(world, synth)
    return [("sqs:GetQueueUrl", dlq, {}), ("sqs:GetQueueAttributes", dlq, {}), ("sqs:ReceiveMessage", dlq, {}),
            ("kms:Decrypt", key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": dlq}),
            ("sqs:GetQueueUrl", target, {}), ("sqs:SendMessage", target, {}),
            ("kms:GenerateDataKey", key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": target}),
            ("kms:Decrypt", key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": target}),
            ("sqs:DeleteMessage", dlq, {}), ("sqs:ChangeMessageVisibility", dlq, {})]


def _sources(synth: Synth) -> list[ReplaySource]:
    return [s for s in replay_sources(synth.config) if not s.signed_only]


def _beyond(world: PolicyWorld, synth: Synth) -> list[Call]:
    """What an operator could try with the replay grants beyond the command."""
    config = synth.config
    (signed_only,) = {s.target for s in replay_sources(config) if s.signed_only}
    ledger = world.arn(world.by_name("AWS::SQS::Queue", signed_only))
    key = _queue_key(world, synth)
    source = _sources(synth)[0]
    dlq = world.arn(world.by_name("AWS::SQS::Queue", source.dlq))
    target = world.arn(world.by_name("AWS::SQS::Queue", source.target))
    return [
        ("sqs:SendMessage", ledger, {}),  # unsigned messages into a queue that takes only signed records
        ("kms:GenerateDataKey", key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": ledger}),
        ("sqs:SendMessage", dlq, {}),  # planting messages a later replay would move into the queue
        ("sqs:ReceiveMessage", target, {}), ("sqs:DeleteMessage", target, {}),  # the consumers' messages
        ("sqs:PurgeQueue", dlq, {}), ("sqs:SetQueueAttributes", target, {}),
        ("kms:GenerateDataKey", key, {}),  # the key outside SQS
        ("kms:Decrypt", key, {**VIA_SQS, "kms:EncryptionContext:aws:sqs:arn": ledger}),
    ]


@pytest.mark.attack("an operator role runs bridge replay on every DLQ but the bridge's, with no identity policy; "
                    "any other role tries the same",
                    outcome="denied by policy: only settings.operator_role_arns get the command's calls",
                    how="synth: queue and key policies evaluated (tests/security/policy.py)")
def test_operators_get_every_call_of_bridge_replay_for_every_dlq_and_no_one_else_does(provisioned: Synth) -> None:
    world = PolicyWorld(provisioned.data)
    (operator,) = provisioned.config.settings.operator_role_arns
    sources = _sources(provisioned)
    assert {s.kind for s in sources} == {"queue", "subscription"}
    for source in sources:
        calls = _replay_calls(world, provisioned, source)
        refused = [(a, r) for a, r, c in calls if not world.decide(operator, a, r, identity=[], context=c)]
        assert refused == [], source.dlq
        granted = [(a, r) for a, r, c in calls if world.decide(insider(), a, r, identity=[], context=c)]
        assert granted == [], source.dlq


@pytest.mark.attack("an operator role uses its replay grants to write unsigned messages into a signed-only queue, "
                    "plant messages in a DLQ, read or purge the consumers' queues",
                    outcome="denied by policy", how="synth: the same policies, requests outside the grant")
def test_the_replay_grants_reach_nothing_beyond_the_command(provisioned: Synth) -> None:
    world = PolicyWorld(provisioned.data)
    (operator,) = provisioned.config.settings.operator_role_arns
    allowed = [(a, r) for a, r, c in _beyond(world, provisioned)
               if world.decide(operator, a, r, identity=[], context=c)]
    assert allowed == []


def test_the_checks_catch_a_replay_grant_into_a_signed_only_queue(provisioned: Synth) -> None:
    # given: the stack as it would be had the signed-only queue been made a replay target (its Deny exempting
    # the operators and an Allow naming them)
    data = copy.deepcopy(provisioned.data)
    world = PolicyWorld(data)
    (signed_only,) = {s.target for s in replay_sources(provisioned.config) if s.signed_only}
    ledger_id = world.by_name("AWS::SQS::Queue", signed_only)
    (operator,) = provisioned.config.settings.operator_role_arns
    for policy in data["Resources"].values():
        if policy["Type"] == "AWS::SQS::QueuePolicy" and policy["Properties"]["Queues"] == [{"Ref": ledger_id}]:
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                if statement["Effect"] == "Deny" and "ArnNotEquals" in statement.get("Condition", {}):
                    principals = statement["Condition"]["ArnNotEquals"].setdefault("aws:PrincipalArn", [])
                    statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] = [*principals, operator]
            policy["Properties"]["PolicyDocument"]["Statement"].append(
                {"Sid": "OperatorsReplayIntoThisQueue", "Effect": "Allow", "Principal": {"AWS": operator},
                 "Action": ["sqs:SendMessage"], "Resource": {"Fn::GetAtt": [ledger_id, "Arn"]}})
    widened = PolicyWorld(data)

    # then: the attack test above would see the unsigned send go through
    allowed = [a for a, r, c in _beyond(widened, provisioned) if widened.decide(operator, a, r, identity=[], context=c)]
    assert "sqs:SendMessage" in allowed


def test_without_the_replay_grants_the_operators_could_not_replay(provisioned: Synth) -> None:
    # given: the stack without the replay statements (as before `bridge replay`)
    data = copy.deepcopy(provisioned.data)
    for resource in data["Resources"].values():
        for key in ("PolicyDocument", "KeyPolicy"):
            doc = resource.get("Properties", {}).get(key)
            if isinstance(doc, dict) and "Statement" in doc:
                doc["Statement"] = [s for s in doc["Statement"] if not str(s.get("Sid", "")).startswith(
                    ("OperatorsReplay", "OperatorsReadTheReplayed", "OperatorsSendReplays"))]
    world = PolicyWorld(data)
    (operator,) = provisioned.config.settings.operator_role_arns
    source = _sources(provisioned)[0]

    # then: the sends and the DLQ reads are refused
    refused = {a for a, r, c in _replay_calls(world, provisioned, source)
               if not world.decide(operator, a, r, identity=[], context=c)}
    assert {"sqs:SendMessage", "sqs:ReceiveMessage", "kms:GenerateDataKey"} <= refused
