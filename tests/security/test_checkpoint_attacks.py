"""Attacks through what issue 11 added: replayed on-failure objects and the checkpoint table.

A planted on-failure object is replayed like a Kafka batch, so every record in it is verified again;
forged progress in the checkpoint table would make the bridge skip (lose) records, so no principal but
the bridge role may write the table."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from bridge.service import Bridge

from bridge_local.replay import replay_on_failure
from tests.helpers import FakeKeys, FakeSender, MemoryOnFailureObjects, kafka_event
from tests.infra.conftest import Synth
from tests.infra.helpers import as_list, iam_statements
from tests.security.test_runtime_attacks import KEYS, LEDGER, genuine, trust_config


@pytest.mark.attack("forged record planted as an S3 on-failure object and replayed",
                    outcome="parked: invalid_signature",
                    how="runtime: bridge redrive --on-failure -> Bridge, in-memory bucket")
def test_planted_on_failure_object_is_verified_like_any_batch(make_bridge: Callable[..., Bridge], keys: FakeKeys,
                                                               sqs: FakeSender) -> None:
    keys.keys.update(KEYS)
    bridge = make_bridge(trust_config())
    # given an object in the parking bucket that claims to be a failed batch of the payer's records
    forged = genuine(secret=b"guessed-key")
    objects = MemoryOnFailureObjects({"aws/lambda/x.json": {"requestContext": {"condition": "RetryAttemptsExhausted"},
                                             "payload": kafka_event([forged])}})

    # when the operator replays the on-failure objects
    replay_on_failure(objects, lambda e: bridge.handle(e).result())

    # then the record is verified like any other and parked, never delivered to the signed-only queue
    assert sqs.sent.get(LEDGER, []) == []
    assert [json.loads(m.body)["reason"] for m in sqs.sent[bridge.dlq.name]] == ["invalid_signature"]


@pytest.mark.attack("forged progress written to the checkpoint table (records would be skipped)",
                    outcome="denied by policy",
                    how="synth: only the bridge role is granted dynamodb actions, on the table alone")
def test_no_principal_but_the_bridge_role_may_write_checkpoints(provisioned: Synth) -> None:
    table_id = next(iter(provisioned.resources("AWS::DynamoDB::Table")))
    writers = {role for role, s in iam_statements(provisioned.data)
               if any(a.startswith("dynamodb:") or a == "*" for a in as_list(s["Action"]))}
    assert len(writers) == 1
    (writer,) = writers
    assert provisioned.data["Resources"][writer]["Properties"]["AssumeRolePolicyDocument"]["Statement"][0][
        "Principal"] == {"Service": "lambda.amazonaws.com"}
    assert all(as_list(s["Resource"]) == [{"Fn::GetAtt": [table_id, "Arn"]}]
               for _, s in iam_statements(provisioned.data) if any(a.startswith("dynamodb:")
                                                                    for a in as_list(s["Action"])))
