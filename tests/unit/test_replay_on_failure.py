"""`bridge redrive --on-failure`: the mapping's S3 on-failure objects are replayed into the bridge, and
with checkpoints only what the failed batch did not deliver goes out."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bridge.parking import ParkingFailedError

from bridge_local.replay import event_of, replay_on_failure
from tests.helpers import FakeCheckpoints, FakeSender, MemoryOnFailureObjects, kafka_event, kafka_record
from tests.unit.test_checkpoints import DLQ, Switch, bridge_with, two_queue_config


def on_failure_document(event: dict[str, Any], *, as_string: bool = False) -> dict[str, Any]:
    """The shape Lambda writes to an S3 on-failure destination (payload: the whole invocation)."""
    return {"version": "1.0", "requestContext": {"condition": "RetryAttemptsExhausted"},
            "responseContext": {"functionError": "Unhandled"},
            "payload": json.dumps(event) if as_string else event}


def test_replay_sends_only_what_the_failed_batch_did_not_deliver() -> None:
    # given: a batch that failed every retry because the bridge DLQ was down, after delivering to "out"
    flaky, dlq_down = Switch("flaky"), Switch(DLQ)
    sqs = FakeSender(reject=lambda t, m: flaky(t, m) or dlq_down(t, m))
    bridge = bridge_with(two_queue_config(), sqs, FakeCheckpoints())
    event = kafka_event([kafka_record("orders", 0, i, value=json.dumps({"n": i})) for i in range(12)])
    for _ in range(3):  # the mapping's attempts
        with pytest.raises(ParkingFailedError):
            bridge.handle(event)
    objects = MemoryOnFailureObjects({"on-failure/orders-0/1.json": on_failure_document(event, as_string=True)})

    # when: the DLQ is back and the on-failure object is replayed; "flaky" has recovered too
    dlq_down.on = False
    flaky.on = False
    report = replay_on_failure(objects, lambda e: bridge.handle(e).result())

    # then: "out" got each record once; "flaky" got the 12 it missed; the object is gone
    assert len(sqs.sent["out"]) == 12
    assert len(sqs.sent["flaky"]) == 12
    assert report.replayed == 1
    assert report.already_done == 12
    assert objects.docs == {}


def test_objects_without_a_kafka_event_are_skipped_and_kept() -> None:
    objects = MemoryOnFailureObjects({"a.json": {"payload": {"hello": "world"}}, "b.json": ["not", "an", "object"]})
    report = replay_on_failure(objects, lambda e: {"summary": {}})
    assert [k for k, _ in report.skipped] == ["a.json", "b.json"]
    assert sorted(objects.docs) == ["a.json", "b.json"]


def test_a_failed_replay_keeps_the_object() -> None:
    objects = MemoryOnFailureObjects({"a.json": on_failure_document(kafka_event([kafka_record()]))})

    def fail(_event: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("still down")

    report = replay_on_failure(objects, fail)
    assert report.failed == [("a.json", "RuntimeError: still down")]
    assert list(objects.docs) == ["a.json"]


def test_event_of_names_what_is_missing() -> None:
    with pytest.raises(ValueError, match="no Kafka event"):
        event_of({"payload": None})
    with pytest.raises(ValueError, match="records"):
        event_of({"payload": {"eventSource": "aws:kafka"}})
