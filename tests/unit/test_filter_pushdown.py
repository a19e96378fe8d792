"""Filter pushdown: the routes of a topic as Lambda filter patterns that never drop a routed record."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from bridge.config import BridgeConfig, ConfigError
from bridge.filter_pushdown import MAX_FILTERS, admits, topic_filters
from bridge.records import KafkaRecord
from bridge.routing import Router

from tests.helpers import MSK_ARN, make_config

ROUTES: list[dict[str, Any]] = [
    {"name": "placed", "match": {"topic": "orders", "body": {"type": "OrderPlaced", "region": {"prefix": "EU-"}}},
     "to": ["out"]},
    {"name": "refunds", "match": {"topic": "orders", "body": {"type": ["RefundIssued", "RefundFailed"],
                                                             "customer.vip": True}}, "to": ["out"]},
    # numeric, exists and list indexes stay in the function: the pattern keeps only `type`
    {"name": "big", "match": {"topic": "orders", "body": {"type": {"prefix": "Big"}, "total": {"numeric": [">", 5]},
                                                         "note": {"exists": True}, "items.0.sku": "A"}},
     "to": ["out"]},
    {"name": "payments", "match": {"topic": "payments", "headers": {"event-type": "Paid"}}, "to": ["out"]},
]


def pushdown_config(routes: list[dict[str, Any]] | None = None) -> BridgeConfig:
    source = {"kind": "msk", "cluster_arn": MSK_ARN, "topics": ["orders", "payments", "inventory"],
              "consumer_group_id": "test-bridge", "filter_pushdown": True}
    return make_config(routes=routes or ROUTES, unmatched={"action": "skip"}, source=source)


def test_generated_filters_per_topic() -> None:
    config = pushdown_config()
    orders = topic_filters(config, "orders")
    print("\n" + "\n".join(f"{t}: {topic_filters(config, t).reason}\n  " +
                           "\n  ".join(topic_filters(config, t).criteria()) for t in config.source.topics))
    assert orders.criteria() == [
        '{"value":{"region":[{"prefix":"EU-"}],"type":["OrderPlaced"]}}',
        '{"value":{"customer":{"vip":[true]},"type":["RefundIssued","RefundFailed"]}}',
        '{"value":{"type":[{"prefix":"Big"}]}}',
    ]
    # a header route can select any value: payments gets no filter; no route reads inventory
    assert topic_filters(config, "payments").patterns == ()
    assert "route payments" in topic_filters(config, "payments").reason
    assert topic_filters(config, "inventory").patterns == ()


@pytest.mark.parametrize(("routes", "reason"), [
    ([{"name": "by-key", "match": {"topic": "orders", "key": {"prefix": "A"}}, "to": ["out"]}], "route by-key"),
    ([{"name": "by-total", "match": {"body": {"total": {"numeric": [">", 1]}}}, "to": ["out"]}], "route by-total"),
    ([{"name": "all", "match": {}, "to": ["out"]}], "route all"),
    ([{"name": f"route-{i}", "match": {"body": {"type": f"T{i}"}}, "to": ["out"]} for i in range(MAX_FILTERS + 1)],
     f"a mapping takes {MAX_FILTERS}"),
])
def test_no_filter_when_a_route_could_select_anything_or_too_many(routes: list[dict[str, Any]],
                                                                  reason: str) -> None:
    filters = topic_filters(pushdown_config(routes), "orders")
    assert filters.patterns == ()
    assert reason in filters.reason


def test_pushdown_is_off_unless_asked_and_refused_when_unmatched_records_must_be_parked() -> None:
    assert topic_filters(make_config(routes=ROUTES, unmatched={"action": "skip"}), "orders").patterns == ()
    with pytest.raises(ConfigError) as info:
        make_config(routes=ROUTES, unmatched={"action": "park"},
                    source={"kind": "msk", "cluster_arn": MSK_ARN, "topics": ["orders", "payments"],
                            "consumer_group_id": "g", "filter_pushdown": True})
    (problem,) = info.value.problems
    assert problem.startswith("source.filter_pushdown:")
    assert "unmatched.action is park" in problem


def _random_value(rng: random.Random) -> bytes:
    """Record values around the routes' fields: matching, near misses, lists, nulls, non-JSON."""
    pick = rng.random()
    if pick < 0.05:
        return b"not json"
    if pick < 0.08:
        return json.dumps(rng.choice(["OrderPlaced", 5, None, ["OrderPlaced"]])).encode()
    doc: dict[str, Any] = {}
    if rng.random() < 0.9:
        doc["type"] = rng.choice(["OrderPlaced", "RefundIssued", "RefundFailed", "BigOrder", "Big", "orderplaced",
                                  "Other", 7, True, None, ["OrderPlaced", "x"]])
    if rng.random() < 0.7:
        doc["region"] = rng.choice(["EU-west", "EU-", "US-east", "eu-west", ["EU-1"], 3])
    if rng.random() < 0.5:
        doc["customer"] = rng.choice([{"vip": True}, {"vip": False}, {"vip": "true"}, [{"vip": True}], {}, None])
    if rng.random() < 0.5:
        doc["total"] = rng.choice([1, 6, 5.5, 10_000_000_000, "9", None])
    if rng.random() < 0.5:
        doc["note"] = rng.choice(["x", None, {"a": 1}, []])
    if rng.random() < 0.5:
        doc["items"] = rng.choice([[{"sku": "A"}], [{"sku": "B"}, {"sku": "A"}], {"0": {"sku": "A"}}, []])
    return json.dumps(doc).encode()


def test_the_patterns_never_drop_a_record_a_route_would_deliver() -> None:
    # given 3,000 varied records on the orders topic
    config = pushdown_config()
    filters = topic_filters(config, "orders")
    router = Router(config)
    rng = random.Random(8)
    routed = admitted = dropped = 0
    for offset in range(3000):
        value = _random_value(rng)
        record = KafkaRecord("orders", 0, offset, 0, "CREATE_TIME", None, value, (), {})
        delivered = router.route(record).action == "deliver"
        kept = admits(filters, value)
        # then: everything the routes deliver passes the filter (the filter is a superset)
        assert kept or not delivered, f"the filter drops a routed record: {value!r}"
        routed += delivered
        admitted += kept
        dropped += not kept
    print(f"\n3000 records: {routed} routed, {admitted} handed to the function, {dropped} filtered out")
    assert dropped > 1000  # and it does filter
