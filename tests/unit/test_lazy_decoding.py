"""Lazy decoding: a batch keeps no decoded copy of its values, and each value is decoded once.

Structural checks, not timings: which objects hold decoded bytes after the batch, and how many times
the base64 decoder ran on each value."""

from __future__ import annotations

import binascii
from collections import Counter
from typing import Any

import pytest
from bridge.records import decode_event
from bridge.service import Bridge

from tests.helpers import FakeKeys, FakeSender, FakeStore, kafka_event, kafka_record, make_config, make_settings

DLQ = "test-bridge-dev-bridge-dlq"


def two_destinations_bridge() -> tuple[Bridge, FakeSender]:
    """Every record to a raw-body queue and an envelope queue: both read the value, key and headers."""
    config = make_config(
        destinations=[{"name": "raw", "type": "sqs", "header_attributes": ["tenant"]},
                      {"name": "env", "type": "sqs", "body": "envelope"}],
        routes=[{"name": "all", "match": {}, "to": ["raw", "env"]}])
    sqs = FakeSender()
    return Bridge(config, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                  signing_keys=FakeKeys({})), sqs


def records(n: int) -> list[dict[str, Any]]:
    return [kafka_record(partition=i % 2, offset=i, key=f"k{i}", value=f'{{"n": {i}}}',
                         headers=[("tenant", "acme"), ("correlation-id", f"cid-{i}")]) for i in range(n)]


def test_a_decoded_batch_holds_positions_only_until_something_reads_a_value() -> None:
    batch = decode_event(kafka_event(records(5)))

    assert all(r.is_lazy for r in batch.records)
    first = batch.records[0]
    assert first.value == b'{"n": 0}'  # decoded on read ...
    assert first.is_lazy  # ... and not kept
    view = first.decoded()
    assert not view.is_lazy
    assert view.value == b'{"n": 0}'
    assert view.key == b"k0"
    assert view.headers == (("tenant", b"acme"), ("correlation-id", b"cid-0"))


def test_after_a_batch_no_record_keeps_its_decoded_key_value_or_headers() -> None:
    bridge, _ = two_destinations_bridge()
    batch = decode_event(kafka_event(records(40)))

    report = bridge.process(batch)

    assert report.summary["delivered"] == {"raw": 40, "env": 40}
    assert all(r.is_lazy for r in batch.records)  # the views planning used are gone with it
    assert all(p.record.is_lazy for p in report.parked)


def test_each_value_and_key_is_base64_decoded_once_for_two_destinations(monkeypatch: pytest.MonkeyPatch) -> None:
    bridge, sqs = two_destinations_bridge()
    event = kafka_event(records(30))
    decoded: Counter[str] = Counter()
    real = binascii.a2b_base64

    def counting(data: Any, *args: Any, **kwargs: Any) -> bytes:
        decoded[data] += 1
        return real(data, *args, **kwargs)

    monkeypatch.setattr(binascii, "a2b_base64", counting)
    bridge.handle(event)

    raw = [r for rs in event["records"].values() for r in rs]
    assert {decoded[r["value"]] for r in raw} == {1}
    assert {decoded[r["key"]] for r in raw} == {1}
    assert len(sqs.sent["raw"]) == len(sqs.sent["env"]) == 30


def test_a_record_whose_value_is_not_base64_is_parked_undecodable_with_the_bytes_lambda_delivered() -> None:
    bridge, sqs = two_destinations_bridge()
    broken = {**kafka_record(offset=7), "value": "not base64!"}
    event = kafka_event([*records(3), broken])

    report = bridge.handle(event)

    assert report.summary["parked"] == {"undecodable": 1}
    (park,) = report.parked
    assert park.record.record_id == "orders-0-7"
    assert park.record.raw["value"] == "not base64!"
    assert "Error" in (park.record.undecodable or "")
    assert len(sqs.sent["raw"]) == 3
