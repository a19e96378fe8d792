"""Attacks on a plain topic, which planning's fast path takes (bridge.fast_path): routes on the topic only,
raw bodies on standard queues and topics, no accept_from. The fast path checks no trust itself; these
show that it still cannot be used to pass a claim unchecked or to look verified. Each runs the whole
Bridge, and the same event through the general path alone (`fast_path=False`) must give the same."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import BridgeConfig
from bridge.service import Bridge

from tests.helpers import PRODUCER_HEADER, FakeSender, kafka_event, kafka_record, make_config

PRINCIPAL = "arn:aws:iam::123456789012:role/{}"


def plain_config() -> BridgeConfig:
    """orders: one producer (order-service), so unclaimed records are attributed to it, unverified;
    payments: written by billing only. Every destination is plain."""
    return make_config(
        producers=[{"name": "order-service", "topics": ["orders"], "aws_principal": PRINCIPAL.format("o"),
                    "signing": True},
                   {"name": "billing", "topics": ["payments"], "aws_principal": PRINCIPAL.format("b")}],
        destinations=[{"name": "feed", "type": "sqs", "header_attributes": ["tenant"]}],
        routes=[{"name": "orders", "match": {"topic": "orders"}, "to": ["feed"]}],
    )


def run(make_bridge: Callable[..., Bridge], sqs: FakeSender, records: list[dict[str, Any]], *,
        fast_path: bool = True) -> tuple[list[Any], list[dict[str, Any]]]:
    bridge = make_bridge(plain_config(), fast_path=fast_path)
    assert bridge._plain_topic("orders") is not None  # the premise: orders is a plain topic
    bridge.handle(kafka_event(records))
    parked = [json.loads(m.body) for m in sqs.sent.get(bridge.dlq.name, [])]
    for doc in parked:
        doc.pop("parking_call")  # random per parking call
    return list(sqs.sent.get("feed", [])), parked


@pytest.mark.attack("record on a plain (fast-path) topic claiming a producer not allowed there",
                    outcome="parked: producer_not_allowed", how="runtime: Bridge over in-memory ports")
@pytest.mark.parametrize("claim", ["mallory", "billing"], ids=["unknown", "not-allowed-on-topic"])
def test_a_claim_on_a_plain_topic_is_checked(make_bridge: Callable[..., Bridge], sqs: FakeSender,
                                             claim: str) -> None:
    # given a record on orders claiming a producer that may not write it, between two plain records
    records = [kafka_record(offset=0), kafka_record(offset=1, headers=[(PRODUCER_HEADER, claim)]),
               kafka_record(offset=2)]

    delivered, parked = run(make_bridge, sqs, records)

    # then the claimed record is parked, not delivered as the topic's producer (or as anyone)
    assert [m.record_id for m in delivered] == ["orders-0-0", "orders-0-2"]
    assert [(p["record_id"], p["reason"]) for p in parked] == [("orders-0-1", "producer_not_allowed")]
    sqs.sent.clear()
    assert run(make_bridge, sqs, records, fast_path=False) == (delivered, parked)


@pytest.mark.attack("unsigned record on a plain (fast-path) topic posing as its signing producer",
                    outcome="marked unverified", how="runtime: Bridge over in-memory ports")
@pytest.mark.parametrize("claimed", [False, True], ids=["inferred", "claimed"])
def test_a_plain_topic_never_marks_its_producer_verified(make_bridge: Callable[..., Bridge], sqs: FakeSender,
                                                         claimed: bool) -> None:
    # given an unsigned record on orders, whose only producer signs, with or without a claim of it, and a
    # signature-looking header
    headers = [("x-bridge-signature", "v1=" + "0" * 64), ("x-bridge-message-id", "m-1")]
    if claimed:
        headers.append((PRODUCER_HEADER, "order-service"))
    records = [kafka_record(headers=headers)]

    delivered, parked = run(make_bridge, sqs, records)

    # then it is delivered attributed, but never as verified: no `producer` attribute, no signed message id
    (message,) = delivered
    attributes = dict(message.attributes)
    assert attributes["producer-unverified"] == "order-service"
    assert "producer" not in attributes
    assert attributes["message-id"] == "orders-0-0"
    assert parked == []
    sqs.sent.clear()
    assert run(make_bridge, sqs, records, fast_path=False) == (delivered, parked)
