"""Claim check: oversize messages go to S3 with a pointer in the extended client libraries' format."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from bridge.adapters.batching import batch_entries
from bridge.claim_check import POINTER_CLASS, claim_check_key, pointer_body
from bridge.config import (
    CLAIM_CHECK_SIZE_ATTRIBUTE,
    MAX_CLAIM_CHECK_HEADER_ATTRIBUTES,
    MAX_HEADER_ATTRIBUTES,
    BridgeConfig,
    ConfigError,
)
from bridge.parking import ObjectStoreError
from bridge.records import decode_event
from bridge.service import Bridge

from tests.helpers import FakeSender, FakeStore, kafka_event, kafka_record, make_config, parked_docs

BuildBridge = Callable[..., Bridge]
TWO_MIB = 2 * 1024 * 1024


def claim_check_config(**destination: Any) -> BridgeConfig:
    return make_config(
        destinations=[{"name": "big", "type": "sqs", "oversize": "claim-check", "header_attributes": ["event-type"],
                       **destination},
                      {"name": "small", "type": "sqs"}],
        routes=[{"name": "all", "match": {}, "to": ["big", "small"]}])


def big_record(offset: int = 7) -> dict[str, Any]:
    value = json.dumps({"order": offset, "blob": "x" * TWO_MIB})
    return kafka_record(offset=offset, key="order-7", value=value,
                        headers=[("event-type", "OrderPlaced"), ("correlation-id", "corr-7")])


class FailingStore:
    def put(self, key: str, body: bytes) -> str:
        raise ObjectStoreError(f"s3://claims/{key}: AccessDenied")


def test_a_2_mib_record_goes_to_s3_and_a_pointer_keeps_every_attribute(make_bridge: BuildBridge,
                                                                       sqs: FakeSender) -> None:
    # given a destination with oversize: claim-check and one without
    claims = FakeStore()
    bridge = make_bridge(claim_check_config(), claim_check_store=claims)
    event = kafka_event([big_record()])
    # when
    report = bridge.handle(event)
    # then: the claim-check destination got a pointer, the other one parked the record too_large
    assert report.summary["delivered"] == {"big": 1}
    assert report.summary["parked"] == {"too_large": 1}
    (message,) = sqs.sent["big"]
    (key, stored), = claims.objects.items()
    assert key == claim_check_key(decode_event(event).records[0], "big")
    assert key.startswith("claim-check/big/orders/0/7-")
    assert stored.decode("utf-8") == json.dumps({"order": 7, "blob": "x" * TWO_MIB})
    assert json.loads(message.body) == [POINTER_CLASS, {"s3BucketName": "fake-bucket", "s3Key": key}]
    attributes = dict(message.attributes)
    assert attributes[CLAIM_CHECK_SIZE_ATTRIBUTE] == str(len(stored))
    assert attributes["correlation-id"] == message.correlation_id == "corr-7"
    assert (attributes["record-id"], attributes["event-type"]) == ("orders-0-7", "OrderPlaced")
    assert len(attributes) <= 10
    assert message.size < 1024
    (parked,) = parked_docs(sqs, "test-bridge-dev-bridge-dlq")
    assert (parked["reason"], parked["destination"]) == ("too_large", "small")


def test_the_pointer_is_the_libraries_json_and_its_size_a_number(make_bridge: BuildBridge,
                                                                 sqs: FakeSender) -> None:
    assert pointer_body("b", "k") == '["software.amazon.payloadoffloading.PayloadS3Pointer", ' \
                                     '{"s3BucketName": "b", "s3Key": "k"}]'
    make_bridge(claim_check_config(), claim_check_store=FakeStore()).handle(kafka_event([big_record()]))
    (message,) = sqs.sent["big"]
    (entry,) = batch_entries([message], "MessageBody")
    assert entry["MessageAttributes"][CLAIM_CHECK_SIZE_ATTRIBUTE]["DataType"] == "Number"
    assert entry["MessageAttributes"]["correlation-id"]["DataType"] == "String"


def test_a_fifo_pointer_keeps_group_and_deduplication_ids_and_a_redelivery_reuses_the_object(
    make_bridge: BuildBridge, sqs: FakeSender,
) -> None:
    claims = FakeStore()
    bridge = make_bridge(claim_check_config(fifo=True), claim_check_store=claims)
    event = kafka_event([big_record()])
    bridge.handle(event)
    bridge.handle(event)  # Lambda redelivers the batch
    first, second = sqs.sent["big"]
    assert first.group_id == second.group_id == "order-7"
    assert first.dedup_id == second.dedup_id is not None
    assert first.body == second.body
    assert len(claims.objects) == 1


def test_s3_refusing_the_object_parks_the_record_for_redrive(make_bridge: BuildBridge, sqs: FakeSender) -> None:
    bridge = make_bridge(claim_check_config(), claim_check_store=FailingStore())
    report = bridge.handle(kafka_event([big_record()]))
    assert report.summary["parked"] == {"delivery_failed": 1, "too_large": 1}
    parked = {d["destination"]: d for d in parked_docs(sqs, "test-bridge-dev-bridge-dlq")}
    assert parked["big"]["reason"] == "delivery_failed"
    assert parked["big"]["detail"].startswith("claim check: s3://claims/claim-check/big/")


def test_small_messages_are_sent_as_they_are(make_bridge: BuildBridge, sqs: FakeSender) -> None:
    claims = FakeStore()
    make_bridge(claim_check_config(), claim_check_store=claims).handle(kafka_event([kafka_record()]))
    (message,) = sqs.sent["big"]
    assert message.body == '{"total": 1}'
    assert CLAIM_CHECK_SIZE_ATTRIBUTE not in dict(message.attributes)
    assert not claims.objects


def test_claim_check_leaves_room_for_the_size_attribute() -> None:
    headers = [f"h{i}" for i in range(MAX_HEADER_ATTRIBUTES)]
    assert MAX_CLAIM_CHECK_HEADER_ATTRIBUTES == MAX_HEADER_ATTRIBUTES - 1
    with pytest.raises(ConfigError) as info:
        claim_check_config(header_attributes=headers)
    (problem,) = info.value.problems
    assert problem.startswith("destinations[0].header_attributes:")
    assert "ExtendedPayloadSize" in problem


def test_claim_check_topic_needs_raw_delivery_to_its_queues() -> None:
    with pytest.raises(ConfigError) as info:
        make_config(destinations=[
            {"name": "events", "type": "sns", "oversize": "claim-check",
             "subscriptions": [{"queue": "copy", "raw_message_delivery": False}]},
            {"name": "copy", "type": "sqs"}],
            routes=[{"name": "all", "match": {}, "to": ["events"]}])
    (problem,) = info.value.problems
    assert problem.startswith("destinations[0].subscriptions:")
    assert "raw_message_delivery" in problem

