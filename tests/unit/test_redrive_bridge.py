"""The bridge on redrive events: `bridgeRedrive` restricts a record to the destinations it was parked for."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from bridge import handler
from bridge.audit import batch_id_for
from bridge.records import REDRIVE_KEY, InvalidRedriveError, decode_event, parse_redrive
from bridge.routing import RoutingDecision, restrict_to_redrive
from bridge.service import Bridge

from tests.helpers import FakeSender, audit_events, kafka_event, kafka_record, parked_docs

BuildBridge = Callable[..., Bridge]
DLQ = "orders-bridge-dev-bridge-dlq"
AUDIT = "orders-bridge-dev-audit"


def order_placed(offset: int = 7, total: float = 20.0, event_type: str = "OrderPlaced") -> dict[str, Any]:
    """An order dev.yaml routes to fulfilment and order-events (fraud-review too from a total of 1000)."""
    return kafka_record(topic="orders", offset=offset, key=f"order-{offset}",
                        value=json.dumps({"order_id": f"order-{offset}", "total": total}),
                        headers=[("event-type", event_type)])


def redrive_event(records: list[dict[str, Any]], redrive: dict[str, Any]) -> dict[str, Any]:
    return {**kafka_event(records), REDRIVE_KEY: redrive}


# --- the restriction, as a pure function -------------------------------------------------------


def test_restrict_keeps_listed_destinations_still_routed_and_names_the_rest() -> None:
    decision = RoutingDecision("deliver", ("order-lifecycle",), ("fulfilment", "order-events"))

    restricted, not_routed = restrict_to_redrive(decision, ("order-events", "fraud-review"))

    assert restricted == RoutingDecision("deliver", ("order-lifecycle",), ("order-events",))
    assert not_routed == ("fraud-review",)


def test_restrict_of_a_record_no_route_matches_any_more_delivers_nowhere() -> None:
    restricted, not_routed = restrict_to_redrive(RoutingDecision("park"), ("fulfilment",))

    assert restricted.destinations == ()
    assert not_routed == ("fulfilment",)


# --- the bridge --------------------------------------------------------------------------------


def test_record_listed_with_destinations_goes_only_there(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    # given: a record that reached fulfilment and was parked for order-events
    event = redrive_event([order_placed(7)], {"orders-0-7": ["order-events"]})

    # when
    report = make_bridge().handle(event)

    # then: order-events gets it, fulfilment gets no duplicate, the audit event says redrive
    assert report.summary["delivered"] == {"order-events": 1}
    assert report.summary["parked"] == {}
    assert report.summary["routes"] == {"order-lifecycle": 1}
    assert sqs.calls_to("fulfilment") == []
    assert [m.record_id for m in sns.sent["order-events"]] == ["orders-0-7"]
    (audit,) = audit_events(sns, AUDIT)
    assert audit["redrive"] is True
    assert audit["delivered"] == {"order-events": 1}


def test_null_routes_normally_and_unlisted_records_are_handled_normally(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    event = redrive_event([order_placed(7), order_placed(8)], {"orders-0-7": None})

    report = make_bridge().handle(event)

    assert report.summary["delivered"] == {"fulfilment": 2, "order-events": 2}
    assert report.summary["redrive"] is True


def test_listed_destination_no_route_selects_any_more_is_parked_unroutable_for_it(
    make_bridge: BuildBridge, sqs: FakeSender, sns: FakeSender,
) -> None:
    # given: parked for fraud-review and order-events; the total (20) no longer makes it high-value
    event = redrive_event([order_placed(7)], {"orders-0-7": ["fraud-review", "order-events"]})

    # when
    report = make_bridge().handle(event)

    # then: delivered where still routed; parked again (not dropped) for the destination that is not
    assert report.summary["delivered"] == {"order-events": 1}
    assert report.summary["parked"] == {"unroutable": 1}
    (doc,) = parked_docs(sqs, DLQ)
    assert (doc["reason"], doc["destination"], doc["route"]) == ("unroutable", "fraud-review", None)
    assert "redrive" in doc["detail"]
    assert sqs.calls_to("fraud-review") == []


def test_listed_record_that_no_route_matches_is_parked_once_per_listed_destination(
    make_bridge: BuildBridge, sqs: FakeSender,
) -> None:
    event = redrive_event([order_placed(9, event_type="OrderShipped")], {"orders-0-9": ["fulfilment"]})

    report = make_bridge().handle(event)

    assert report.summary["delivered"] == {}
    assert [(d["reason"], d["destination"]) for d in parked_docs(sqs, DLQ)] == [("unroutable", "fulfilment")]


def test_trust_checks_still_apply_to_a_redriven_record(make_bridge: BuildBridge, sqs: FakeSender) -> None:
    unsigned = kafka_record(topic="payments", offset=3, key="p1", value=b'{"amount": 10}')
    event = redrive_event([unsigned], {"payments-0-3": ["payments-ledger"]})

    report = make_bridge().handle(event)

    assert report.summary["delivered"] == {}
    assert report.summary["parked"] == {"unsigned": 1}


def test_ordinary_batches_say_redrive_false_and_redrive_batches_get_their_own_batch_id(
    make_bridge: BuildBridge, sns: FakeSender,
) -> None:
    records = [order_placed(7)]
    plain = make_bridge().handle(kafka_event(records))
    again = make_bridge().handle(redrive_event(records, {"orders-0-7": None}))

    assert plain.summary["redrive"] is False
    assert plain.batch_id != again.batch_id  # audit consumers must not take the replay for a redelivery
    decoded = decode_event(kafka_event(records)).records
    assert again.batch_id == batch_id_for(decoded, redrive=True)


# --- the key's shape ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "problem"), [
    (["orders-0-7"], "must be an object"),
    ({"orders-0-7": []}, "got an empty list"),
    ({"orders-0-7": "order-events"}, "non-empty list of destination names or null"),
    ({"orders-0-7": ["order-events", 3]}, "non-empty list of destination names or null"),
    ({"orders-seven": None}, "is not a record id"),
])
def test_malformed_redrive_key_raises_one_line_naming_the_problem(value: Any, problem: str) -> None:
    event = redrive_event([order_placed(7)], value)

    with pytest.raises(InvalidRedriveError) as caught:
        handler.lambda_handler(event, None)  # before any environment or client is needed

    message = str(caught.value)
    assert problem in message
    assert REDRIVE_KEY in message
    assert "\n" not in message


def test_redrive_key_parses_to_ordered_destinations_without_repeats() -> None:
    event = redrive_event([], {"orders-0-7": ["b", "a", "b"], "orders-0-8": None, "bad-topic--1--1": None})

    assert parse_redrive(event) == {"orders-0-7": ("b", "a"), "orders-0-8": None, "bad-topic--1--1": None}
    assert parse_redrive(kafka_event([])) is None
