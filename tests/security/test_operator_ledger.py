"""The operators' grant on the checkpoint table: `bridge redrive`'s ledger items, not the bridge's progress.

Forged progress makes the function skip records (lose them); read progress tells which records reached
which destination. The stack grants the roles in `settings.operator_role_arns` BatchGetItem and
BatchWriteItem on the ledger's partition keys only, and the table's key only through DynamoDB. These
tests evaluate the synthesized table and key policies for requests an operator role could make with no
identity policy of its own (what the stack grants, and nothing the account adds), and show that the same
checks catch a wildcard grant.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bridge.adapters.dynamodb import REDRIVE_LEDGER_DOCUMENT_PREFIX, REDRIVE_LEDGER_RECORD_PREFIX
from bridge.checkpoints import SHARD_OFFSETS, shard_of
from bridge.records import KafkaRecord

from tests.infra.conftest import Synth
from tests.security.policy import REGION, PolicyWorld, as_list, insider

LEDGER_KEYS = [f"{REDRIVE_LEDGER_DOCUMENT_PREFIX}{'ab' * 32}", f"{REDRIVE_LEDGER_RECORD_PREFIX}orders-0-17@1767225600"]
# Progress shards of topics chosen to look like the ledger (a Kafka topic name has no "/").
PROGRESS_KEYS = ["orders-0/0", "outage/batch-1", "redriven-0/0", "redriven-record-3/1", "redriven.record-0/0"]
VIA_DYNAMODB = {"kms:ViaService": f"dynamodb.{REGION}.amazonaws.com"}


def _world(synth: Synth, data: dict[str, Any] | None = None) -> tuple[PolicyWorld, str, str, str]:
    data = data or synth.data
    world = PolicyWorld(data)
    (table_id,) = world.ids("AWS::DynamoDB::Table")
    key_id = data["Resources"][table_id]["Properties"]["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0]
    (operator,) = synth.config.settings.operator_role_arns
    return world, world.arn(table_id), world.arn(key_id), operator


def _refused(world: PolicyWorld, operator: str, table: str, key: str) -> list[str]:
    """The requests on the bridge's progress an operator role must be refused; returns those allowed."""
    allowed = []
    for action in ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"):
        for keys in ([k] for k in PROGRESS_KEYS):
            if world.decide(operator, action, table, identity=[], context={"dynamodb:LeadingKeys": keys}):
                allowed.append(f"{action} {keys}")
        mixed = [*LEDGER_KEYS, PROGRESS_KEYS[0]]  # one progress key hidden among ledger keys
        if world.decide(operator, action, table, identity=[], context={"dynamodb:LeadingKeys": mixed}):
            allowed.append(f"{action} {mixed}")
    # calls that carry no partition key, or that the ledger never makes
    for action in ("dynamodb:Scan", "dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem",
                   "dynamodb:UpdateItem", "dynamodb:PartiQLSelect", "dynamodb:DeleteTable", "dynamodb:BatchWriteItem"):
        if world.decide(operator, action, table, identity=[]):
            allowed.append(f"{action} without partition keys")
    for action in ("dynamodb:Query", "dynamodb:GetItem", "dynamodb:PutItem"):
        if world.decide(operator, action, table, identity=[], context={"dynamodb:LeadingKeys": [PROGRESS_KEYS[0]]}):
            allowed.append(f"{action} {PROGRESS_KEYS[0]}")
    # the table's key outside DynamoDB (decrypting an exported item, say)
    for context in ({}, {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}):
        if world.decide(operator, "kms:Decrypt", key, identity=[], context=context):
            allowed.append(f"kms:Decrypt {context or 'directly'}")
    return allowed


@pytest.mark.attack("an operator role reads or forges the bridge's checkpoint items through its ledger grant",
                    outcome="denied by policy",
                    how="synth: table and key policies evaluated for operator requests (tests/security/policy.py)")
def test_an_operator_role_may_use_the_ledger_but_not_the_bridges_progress(provisioned: Synth) -> None:
    world, table, key, operator = _world(provisioned)
    # the ledger works with the operator role as it is: what the stack grants is enough
    for action in ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"):
        assert world.decide(operator, action, table, identity=[], context={"dynamodb:LeadingKeys": LEDGER_KEYS})
    for action in ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"):
        assert world.decide(operator, action, key, identity=[], context=VIA_DYNAMODB)
    # and nothing of the bridge's progress
    assert _refused(world, operator, table, key) == []
    # nor does the grant reach anyone else
    assert not world.decide(insider(), "dynamodb:BatchWriteItem", table, identity=[],
                            context={"dynamodb:LeadingKeys": LEDGER_KEYS})


def _wildcard(statement: dict[str, Any]) -> None:
    statement["Action"] = "dynamodb:*"
    statement.pop("Condition")


def _without_null_test(statement: dict[str, Any]) -> None:
    statement["Condition"].pop("Null")


@pytest.mark.attack("the same checks against a wildcard or a keyless operator grant on the checkpoint table",
                    outcome="denied by policy",
                    how="synth: the table policy widened (dynamodb:* unconditioned; no Null test) is caught")
@pytest.mark.parametrize(("widen", "leaks"), [
    (_wildcard, ["dynamodb:BatchWriteItem ['orders-0/0']", "dynamodb:Scan without partition keys",
                 "kms:Decrypt directly"]),
    # ForAllValues alone is true for a request without partition keys
    (_without_null_test, ["dynamodb:BatchWriteItem without partition keys"]),
], ids=["wildcard", "no-null-test"])
def test_the_checks_catch_a_widened_grant(provisioned: Synth, widen: Any, leaks: list[str]) -> None:
    data: dict[str, Any] = copy.deepcopy(provisioned.data)
    (table,) = (r for r in data["Resources"].values() if r["Type"] == "AWS::DynamoDB::Table")
    for statement in as_list(table["Properties"]["ResourcePolicy"]["PolicyDocument"]["Statement"]):
        widen(statement)
    if widen is _wildcard:
        for resource in data["Resources"].values():
            for statement in resource.get("Properties", {}).get("KeyPolicy", {}).get("Statement", []):
                if statement.get("Sid") == "OperatorsRedriveLedgerViaDynamoDb":
                    statement.pop("Condition")
    world, table_arn, key, operator = _world(provisioned, data)
    allowed = _refused(world, operator, table_arn, key)
    assert set(leaks) <= set(allowed), allowed


def test_no_progress_shard_can_take_a_ledger_key() -> None:
    """The grant's prefixes hold apart from the function's shards for any topic name Kafka allows."""
    for topic in ("redriven", "redriven-record", "redriven.record", "redriven_record", "r" * 249):
        for partition, offset in ((0, 0), (7, 5 * SHARD_OFFSETS)):
            shard = shard_of(KafkaRecord(topic, partition, offset, 0, "CREATE_TIME", None, b"", (), {}))
            assert shard is not None
            assert not shard.startswith((REDRIVE_LEDGER_DOCUMENT_PREFIX, REDRIVE_LEDGER_RECORD_PREFIX)), shard
