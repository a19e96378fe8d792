"""Routing: every condition kind on topic, key, headers and body; all matches apply; unmatched policies."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bridge.records import decode_record
from bridge.routing import Router

from tests.helpers import kafka_record, make_config

DESTS = [{"name": n, "type": "sqs"} for n in ("qa", "qb", "qc", "spare")]


def route_of(match: dict[str, Any], record: dict[str, Any], unmatched: Any = "skip") -> tuple[str, ...]:
    config = make_config(destinations=DESTS, routes=[{"name": "rt", "match": match, "to": ["qa"]}],
                         unmatched=unmatched)
    return Router(config).route(decode_record(record)).destinations


def matched(match: dict[str, Any], **record: Any) -> bool:
    return route_of(match, kafka_record(**record)) == ("qa",)


@pytest.mark.parametrize(("match", "record", "expected"), [
    ({"topic": "orders"}, {"topic": "orders"}, True),
    ({"topic": "orders"}, {"topic": "payments"}, False),
    ({"topic": ["payments", "orders"]}, {"topic": "orders"}, True),
    ({"key": {"prefix": "vip-"}}, {"key": "vip-42"}, True),
    ({"key": {"prefix": "vip-"}}, {"key": "std-42"}, False),
    ({"key": {"exists": True}}, {"key": None}, False),
    ({"key": {"exists": False}}, {"key": None}, True),
    ({"key": "k"}, {"key": b"\xff\xfe"}, False),  # a key that is not UTF-8 never equals text
    ({"key": {"numeric": [">", 10]}}, {"key": "11"}, True),  # text fields parse as numbers
    ({"key": {"numeric": [">", 10]}}, {"key": "abc"}, False),
])
def test_topic_and_key_conditions(match: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    assert matched(match, **record) is expected


def test_repeated_header_matches_when_any_value_satisfies() -> None:
    headers = [("event-type", "OrderShipped"), ("event-type", "OrderPlaced")]

    assert matched({"headers": {"event-type": "OrderPlaced"}}, headers=headers)
    assert matched({"headers": {"event-type": "OrderShipped"}}, headers=headers)
    assert not matched({"headers": {"event-type": "OrderCancelled"}}, headers=headers)


@pytest.mark.parametrize(("condition", "headers", "expected"), [
    ({"exists": True}, [("tier", "gold")], True),
    ({"exists": True}, [], False),
    ({"exists": False}, [], True),
    ({"prefix": "go"}, [("tier", "gold")], True),
    ([{"prefix": "pl"}, "gold"], [("tier", "gold")], True),  # any_of mixes kinds
    ([{"prefix": "pl"}, "silver"], [("tier", "gold")], False),
    (1, [("tier", "1")], True),  # a number in YAML equals the header text "1"
    (True, [("tier", "true")], True),
    ({"numeric": [">=", 2, "<", 5]}, [("tier", "4.5")], True),
    ({"numeric": [">=", 2, "<", 5]}, [("tier", "5")], False),
    ("gold", [("tier", b"\xff")], False),  # non-UTF-8 header value never matches
])
def test_header_conditions(condition: Any, headers: list[tuple[str, Any]], expected: bool) -> None:
    assert matched({"headers": {"tier": condition}}, headers=headers) is expected


@pytest.mark.parametrize(("body", "value", "expected"), [
    ({"total": {"numeric": [">=", 1000]}}, '{"total": 1000}', True),
    ({"total": {"numeric": [">=", 1000]}}, '{"total": 999.99}', False),
    ({"total": {"numeric": [">", 0, "<=", 5]}}, '{"total": 5}', True),
    ({"total": {"numeric": [">", 0, "<=", 5]}}, '{"total": 0}', False),
    ({"total": {"numeric": ["=", 3]}}, '{"total": 3.0}', True),
    ({"total": {"numeric": [">", 0]}}, '{"total": "7"}', False),  # body strings are not numbers
    ({"total": {"numeric": [">", 0]}}, '{"total": true}', False),
    ({"customer.tier": "gold"}, '{"customer": {"tier": "gold"}}', True),
    ({"customer.tier": "gold"}, '{"customer": "gold"}', False),
    ({"items.1.sku": {"prefix": "SKU-"}}, '{"items": [{"sku": "x"}, {"sku": "SKU-9"}]}', True),
    ({"items.5.sku": {"exists": True}}, '{"items": []}', False),
    ({"flag": True}, '{"flag": true}', True),
    ({"flag": 1}, '{"flag": true}', False),  # JSON: true is not 1
    ({"count": 1}, '{"count": 1.0}', True),
    ({"note": {"exists": True}}, '{"note": null}', True),  # null is present
    ({"sku": {"exists": True}}, "not json", False),
    ({"sku": {"exists": False}}, "not json", True),
    ({"sku": {"exists": False}}, None, True),
])
def test_body_conditions(body: dict[str, Any], value: str | None, expected: bool) -> None:
    assert matched({"body": body}, value=value) is expected


def test_all_matching_routes_apply_and_destinations_are_deduplicated_in_order() -> None:
    config = make_config(destinations=DESTS, routes=[
        {"name": "r1", "match": {"topic": "orders"}, "to": ["qb", "qa"]},
        {"name": "r2", "match": {}, "to": ["qa", "qc"]},
        {"name": "r3", "match": {"topic": "payments"}, "to": ["spare"]},
    ])

    decision = Router(config).route(decode_record(kafka_record(topic="orders")))

    assert decision.action == "deliver"
    assert decision.routes == ("r1", "r2")
    assert decision.destinations == ("qb", "qa", "qc")


def test_body_is_parsed_once_per_record_however_many_routes_read_it() -> None:
    parsed: list[bytes] = []

    def counting_parse(value: bytes) -> Any:
        parsed.append(value)
        return json.loads(value)

    config = make_config(destinations=DESTS, routes=[
        {"name": f"r{i}", "match": {"body": {"total": {"numeric": [">", i]}}}, "to": ["qa"]} for i in range(5)
    ])

    decision = Router(config, parse=counting_parse).route(decode_record(kafka_record(value='{"total": 3}')))

    assert parsed == [b'{"total": 3}']
    assert decision.routes == ("r0", "r1", "r2")


@pytest.mark.parametrize(("unmatched", "action", "destinations"), [
    ("park", "park", ()),
    ("skip", "skip", ()),
    ({"action": "route", "to": ["spare"]}, "deliver", ("spare",)),
])
def test_unmatched_policies(unmatched: Any, action: str, destinations: tuple[str, ...]) -> None:
    config = make_config(destinations=DESTS, routes=[{"name": "rt", "match": {"topic": "payments"}, "to": ["qa"]}],
                         unmatched=unmatched)

    decision = Router(config).route(decode_record(kafka_record(topic="orders")))

    assert decision.action == action
    assert decision.destinations == destinations
