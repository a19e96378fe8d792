"""The Bridge end to end over in-memory ports, including the must-show scenarios (a), (b), (c)."""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import MAX_BATCH_ENTRIES, SNS_DEFAULT_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES, BridgeConfig
from bridge.delivery import SendCallError
from bridge.parking import ParkingFailedError
from bridge.records import InvalidEventError
from bridge.service import Bridge

from tests.helpers import (
    FakeKeys,
    FakeSender,
    FakeStore,
    audit_events,
    kafka_event,
    kafka_record,
    load_event,
    make_config,
    make_settings,
    parked_docs,
    signed_record,
)

BuildBridge = Callable[..., Bridge]
DLQ = "orders-bridge-dev-bridge-dlq"
AUDIT = "orders-bridge-dev-audit"


def one_queue_config(**overrides: Any) -> BridgeConfig:
    return make_config(destinations=[{"name": "orders-out", "type": "sqs"}],
                       routes=[{"name": "all-orders", "match": {"topic": "orders"}, "to": ["orders-out"]}],
                       **overrides)


def orders(n: int, size: int = 50) -> list[dict[str, Any]]:
    return [kafka_record(partition=i % 3, offset=i, key=f"order-{i}", value=json.dumps({"i": i, "pad": "x" * size}),
                         headers=[("event-type", "OrderPlaced")]) for i in range(n)]


# --- the dev config on the canonical MSK event ---------------------------------------------------


def test_msk_event_is_routed_by_header_and_body_per_the_dev_config(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    report = make_bridge().handle(load_event("msk"))

    s = report.summary
    assert s["records"] == 4
    # OrderPlaced x2 -> fulfilment + order-events; total >= 1000 -> fraud-review; quantity 4 -> stock-alerts
    assert s["delivered"] == {"fulfilment": 2, "order-events": 2, "fraud-review": 1, "stock-alerts": 1}
    assert s["parked"] == {"unroutable": 1}  # OrderShipped with total 12 matches no route
    assert s["routes"] == {"order-lifecycle": 2, "high-value-orders": 1, "low-stock": 1}
    assert s["producers"] == {}  # nothing here went to a destination that verifies signatures
    assert s["producers_unverified"] == {"order-service": 3, "inventory-service": 1}
    assert s["partitions"] == {"orders-0": [15, 16], "orders-1": [7, 7], "inventory-0": [3, 3]}
    assert report.result() == {"batchItemFailures": [], "summary": s}
    (fulfilment_batch,) = sqs.calls_to("fulfilment")
    assert [m.group_id for m in fulfilment_batch] == ["order-1001", "order-1002"]
    envelope = json.loads(sqs.sent["fraud-review"][0].body)
    assert envelope["value"]["total"] == 4200
    assert envelope["headers"] == {"event-type": ["OrderPlaced"]}
    assert [d["reason"] for d in parked_docs(sqs, DLQ)] == ["unroutable"]
    (audit,) = audit_events(sns, AUDIT)
    assert audit["type"] == "bridge.batch"
    assert audit["delivered"] == s["delivered"]


def test_signed_payment_reaches_the_ledger_and_forged_one_is_parked(
    make_bridge: BuildBridge, sqs: FakeSender, keys: FakeKeys,
) -> None:
    keys.keys["payment-service"] = b"k1"
    value = '{"amount": 10}'
    good = signed_record(b"k1", "payment-service", "payments", offset=1, key="p1", value=value)
    forged = signed_record(b"guess", "payment-service", "payments", offset=2, key="p1", value=value)
    unsigned = kafka_record(topic="payments", offset=3, key="p1", value=value)

    report = make_bridge().handle(kafka_event([good, forged, unsigned]))

    assert report.summary["delivered"] == {"payments-ledger": 1}
    assert report.summary["parked"] == {"invalid_signature": 1, "unsigned": 1}
    docs = {d["record_id"]: d for d in parked_docs(sqs, DLQ)}
    assert docs["payments-0-2"]["destination"] == "payments-ledger"
    assert docs["payments-0-2"]["route"] == "payments"
    assert set(keys.fetched) == {"payment-service"}  # only the key the check needs (TrustPolicy caches it)


def test_envelope_has_every_header_value_but_not_the_signature_header(
    make_bridge: BuildBridge, sqs: FakeSender,
) -> None:
    # given a renamed signature header and an envelope destination (no accept_from: nothing verified)
    config = make_config(destinations=[{"name": "out", "type": "sqs", "body": "envelope"}],
                         settings={"signature_header": "x-sig"})
    rec = kafka_record(offset=1, headers=[("tag", "a"), ("x-sig", "v1=00ff"), ("tag", "b")])

    # when
    report = make_bridge(config).handle(kafka_event([rec]))

    # then
    assert report.summary["delivered"] == {"out": 1}
    envelope = json.loads(sqs.sent["out"][0].body)
    assert envelope["headers"] == {"tag": ["a", "b"]}


def test_record_parked_for_one_destination_still_reaches_the_others(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    config = make_config(
        producers=[{"name": "payer", "topics": ["orders"], "aws_principal": "arn:aws:iam::123456789012:role/p",
                    "signing": True}],
        destinations=[{"name": "ledger", "type": "sqs", "accept_from": ["payer"]}, {"name": "feed", "type": "sqs"}],
        routes=[{"name": "all", "match": {}, "to": ["ledger", "feed"]}])

    report = make_bridge(config).handle(kafka_event([kafka_record()]))

    assert report.summary["delivered"] == {"feed": 1}
    assert report.summary["parked"] == {"unsigned": 1}


def test_undecodable_records_are_parked_with_the_record_as_delivered(
    make_bridge: BuildBridge, sqs: FakeSender,
) -> None:
    event = load_event("undecodable")

    report = make_bridge().handle(event)

    assert report.summary["records"] == 3
    assert report.summary["parked"] == {"undecodable": 2}
    docs = {d["record_id"]: d for d in parked_docs(sqs, DLQ)}
    assert docs["orders-0-51"]["record"] == event["records"]["orders-0"][1]
    assert docs["orders-0-52"]["record"] == event["records"]["orders-0"][2]
    assert docs["orders-0-51"]["event_source_arn"] == event["eventSourceArn"]


def test_unmatched_skip_is_counted_not_parked(make_bridge: BuildBridge, sqs: FakeSender) -> None:
    config = one_queue_config(unmatched="skip")

    report = make_bridge(config).handle(kafka_event([kafka_record(topic="payments")]))

    assert report.summary["skipped"] == 1
    assert report.summary["parked"] == {}
    assert parked_docs(sqs, "test-bridge-dev-bridge-dlq") == []


def test_non_kafka_event_raises_invalid_event(make_bridge: BuildBridge) -> None:
    with pytest.raises(InvalidEventError):
        make_bridge().handle({"key1": "value1"})


def test_parking_failure_fails_the_invocation(store: FakeStore, keys: FakeKeys) -> None:
    sqs = FakeSender(reject=lambda t, m: ("InternalError", False))
    bridge = Bridge(one_queue_config(), _settings(), sqs=sqs, sns=FakeSender(), parking_store=store,
                    signing_keys=keys, sleep=lambda s: None)

    with pytest.raises(ParkingFailedError, match="could not be parked"):
        bridge.handle(kafka_event([kafka_record()]))


def test_audit_publish_failure_is_reported_not_raised(store: FakeStore, keys: FakeKeys, sqs: FakeSender) -> None:
    sns = FakeSender(call_errors=[SendCallError("Throttled")] * 4)
    bridge = Bridge(one_queue_config(), _settings(), sqs=sqs, sns=sns, parking_store=store, signing_keys=keys,
                    sleep=lambda s: None)

    report = bridge.handle(kafka_event([kafka_record()]))

    assert report.audit_error == "Throttled"
    assert report.summary["delivered"] == {"orders-out": 1}
    assert len(sns.calls) == 4  # max_delivery_attempts


def test_too_large_for_the_dlq_goes_to_s3_with_a_pointer(
    make_bridge: BuildBridge, sqs: FakeSender, store: FakeStore,
) -> None:
    config = make_config(destinations=[{"name": "feed", "type": "sns"}],
                         routes=[{"name": "all", "match": {}, "to": ["feed"]}])
    big = kafka_record(offset=77, value="v" * 900_000)  # base64 in the parked record: ~1.2 MB

    report = make_bridge(config).handle(kafka_event([big]))

    assert report.summary["parked"] == {"too_large": 1}
    (doc,) = parked_docs(sqs, "test-bridge-dev-bridge-dlq")
    assert "record" not in doc
    key = doc["record_s3_uri"].removeprefix("s3://fake-bucket/")
    assert re.fullmatch(r"parked/orders/0/77-feed-too_large-[0-9a-f]{12}\.json", key)
    full = json.loads(store.objects[key])
    assert base64.b64decode(full["record"]["value"]) == b"v" * 900_000


# --- must-show (a): 100 records, exactly one cannot be delivered ---------------------------------


def test_must_show_a_batch_of_100_with_one_rejected_entry_delivers_99_and_parks_1(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    # given: the queue rejects one entry by the sender's fault
    sqs.reject = lambda t, m: ("InvalidParameterValue", True) if (t.name, m.record_id) == ("orders-out",
                                                                                           "orders-1-37") else None
    # when
    report = make_bridge(one_queue_config()).handle(kafka_event(orders(100)))
    # then
    assert report.summary["delivered"] == {"orders-out": 99}
    assert report.summary["parked"] == {"delivery_failed": 1}
    (doc,) = parked_docs(sqs, "test-bridge-dev-bridge-dlq")
    assert doc["reason"] == "delivery_failed"
    assert doc["record_id"] == "orders-1-37"
    assert doc["detail"].startswith("InvalidParameterValue")
    assert doc["record"] == kafka_event(orders(100))["records"]["orders-1"][12]
    (audit,) = audit_events(sns, "test-bridge-dev-audit")
    assert (audit["records"], audit["delivered"], audit["parked"]) == (100, {"orders-out": 99},
                                                                       {"delivery_failed": 1})
    assert len(audit["correlation_ids"]) == 100
    assert audit["correlation_ids_truncated"] is False
    print(f"\nmust-show (a, fakes): delivered={audit['delivered']} parked={audit['parked']}")


def test_must_show_a_variant_one_record_too_large_for_sns(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    config = make_config(destinations=[{"name": "feed", "type": "sns"}],
                         routes=[{"name": "all", "match": {}, "to": ["feed"]}])
    records = orders(100)
    records[50] = kafka_record(partition=2, offset=50, value="x" * (SNS_DEFAULT_MAX_MESSAGE_BYTES + 1))

    report = make_bridge(config).handle(kafka_event(records))

    assert report.summary["delivered"] == {"feed": 99}
    assert report.summary["parked"] == {"too_large": 1}
    assert [d["reason"] for d in parked_docs(sqs, "test-bridge-dev-bridge-dlq")] == ["too_large"]
    (audit,) = audit_events(sns, "test-bridge-dev-audit")
    assert (audit["delivered"], audit["parked"]) == ({"feed": 99}, {"too_large": 1})


# --- must-show (b): the number of SendMessageBatch calls is the minimum the limits allow ----------


def minimum_calls(sizes: list[int], max_bytes: int) -> int:
    """Independent of bridge.packing: the lower bound from both limits (sizes here are uniform)."""
    per_call = min(MAX_BATCH_ENTRIES, max_bytes // sizes[0])
    return math.ceil(len(sizes) / per_call)


@pytest.mark.parametrize(("value_bytes", "label"), [(100, "small"), (300 * 1024, "300 KiB")])
def test_must_show_b_1000_records_use_the_minimum_number_of_send_message_batch_calls(
    make_bridge: BuildBridge, sqs: FakeSender, value_bytes: int, label: str,
) -> None:
    # offsets 1000-1999 keep every record id, hence every message, the same size
    records = [kafka_record(partition=0, offset=1000 + i, key=f"k{i:04d}", value="v" * value_bytes)
               for i in range(1000)]
    bridge = make_bridge(one_queue_config())

    report = bridge.handle(kafka_event(records))

    sizes = [m.size for m in sqs.sent["orders-out"]]
    assert len(sizes) == 1000
    assert len(set(sizes)) == 1
    expected = minimum_calls(sizes, SQS_MAX_MESSAGE_BYTES)
    calls = len(sqs.calls_to("orders-out"))
    assert calls == expected
    assert report.summary["delivered"] == {"orders-out": 1000}
    print(f"\nmust-show (b, {label}): 1000 records of {sizes[0]} billed bytes -> {calls} SendMessageBatch calls "
          f"(minimum {expected})")


# --- must-show (c): a redelivered FIFO batch has identical MessageDeduplicationIds ---------------


def test_must_show_c_redelivered_fifo_batch_produces_identical_dedup_ids(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    event = load_event("msk")
    bridge = make_bridge()

    bridge.handle(event)
    first = [(m.dedup_id, m.group_id, m.correlation_id) for m in sqs.sent["fulfilment"]]
    sqs.sent.clear()
    make_bridge().handle(load_event("msk"))  # a fresh instance: a redelivery after a cold start
    second = [(m.dedup_id, m.group_id, m.correlation_id) for m in sqs.sent["fulfilment"]]

    assert first == second
    assert len(first) == 2
    assert all(d and len(d) == 64 for d, _, _ in first)
    audits = audit_events(sns, AUDIT)
    assert audits[0]["batch_id"] == audits[1]["batch_id"]


def _settings() -> Any:
    return make_settings()
