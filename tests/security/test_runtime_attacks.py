"""Attacks on signed-only destinations, run through the whole Bridge (decode, attribute, route, verify,
build, deliver, park) over in-memory ports: each must leave the signed-only queue untouched and park
the record with the reason an operator reads."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import BridgeConfig
from bridge.service import Bridge

from bridge_local import redrive as redrive_tool
from tests.helpers import FakeKeys, FakeSender, header, kafka_event, kafka_record, make_config, signed_record

PRINCIPAL = "arn:aws:iam::123456789012:role/{}"
KEYS = {"payer": b"payer-key-0123456789", "refunder": b"refunder-key-0123456789",
        "shipper": b"shipper-key-0123456789"}
LEDGER, OPEN = "ledger", "open"
MESSAGE_ID_HEADER = "x-bridge-message-id"


def trust_config() -> BridgeConfig:
    """payer is trusted by ledger; refunder may write payments too but is not trusted; shipper writes
    orders and payments (so a copy of its records onto orders would verify if the topic were not signed)."""
    return make_config(
        producers=[
            {"name": "payer", "topics": ["payments", "orders"], "aws_principal": PRINCIPAL.format("payer"),
             "signing": True},
            {"name": "refunder", "topics": ["payments"], "aws_principal": PRINCIPAL.format("refunder"),
             "signing": True},
            {"name": "shipper", "topics": ["orders"], "aws_principal": PRINCIPAL.format("shipper"),
             "signing": True},
        ],
        destinations=[{"name": LEDGER, "type": "sqs", "fifo": True, "accept_from": ["payer"]},
                      {"name": OPEN, "type": "sqs"}],
        routes=[{"name": "payments", "match": {"topic": "payments"}, "to": [LEDGER, OPEN]},
                {"name": "orders", "match": {"topic": "orders"}, "to": [LEDGER]}],
    )


def genuine(producer: str = "payer", topic: str = "payments", offset: int = 0, *,
            secret: bytes | None = None, message_id: str = "m-1") -> dict[str, Any]:
    return signed_record(secret or KEYS[producer], producer, topic, offset=offset, key="pay-1",
                         value='{"amount": 5}',
                         headers=[("event-type", "PaymentCaptured"), ("route", "a"), ("route", "b"),
                                  (MESSAGE_ID_HEADER, message_id)])


@pytest.fixture
def bridge(make_bridge: Callable[..., Bridge], keys: FakeKeys) -> Bridge:
    keys.keys.update(KEYS)
    return make_bridge(trust_config())


def run(bridge: Bridge, sqs: FakeSender, *records: dict[str, Any]) -> tuple[list[Any], list[dict[str, Any]]]:
    """Messages that reached the ledger, and the parked documents."""
    bridge.handle(kafka_event(list(records)))
    parked = [json.loads(m.body) for m in sqs.sent.get(bridge.dlq.name, [])]
    return list(sqs.sent.get(LEDGER, [])), parked


def reasons(parked: list[dict[str, Any]], destination: str | None = LEDGER) -> list[str]:
    return [p["reason"] for p in parked if p["destination"] == destination]


def test_genuine_record_reaches_the_signed_only_queue(bridge: Bridge, sqs: FakeSender) -> None:
    # the control case: without it, every attack below could "hold" because nothing is ever delivered
    delivered, parked = run(bridge, sqs, genuine())

    assert len(delivered) == 1
    assert parked == []


@pytest.mark.attack("unsigned record claiming a trusted producer", outcome="parked: unsigned",
                    how="runtime: Bridge over in-memory ports")
def test_unsigned_record(bridge: Bridge, sqs: FakeSender) -> None:
    rec = kafka_record(topic="payments", headers=[("x-bridge-producer", "payer")])

    delivered, parked = run(bridge, sqs, rec)

    assert delivered == []
    assert reasons(parked) == ["unsigned"]


@pytest.mark.attack("record signed with a made-up key", outcome="parked: invalid_signature",
                    how="runtime: Bridge over in-memory ports")
def test_forged_signature(bridge: Bridge, sqs: FakeSender) -> None:
    delivered, parked = run(bridge, sqs, genuine(secret=b"guessed-key"))

    assert delivered == []
    assert reasons(parked) == ["invalid_signature"]


@pytest.mark.attack("co-producer signs with its own key but claims the trusted producer",
                    outcome="parked: invalid_signature", how="runtime: Bridge over in-memory ports")
def test_co_producer_key(bridge: Bridge, sqs: FakeSender) -> None:
    delivered, parked = run(bridge, sqs, genuine("payer", secret=KEYS["refunder"]))

    assert delivered == []
    assert reasons(parked) == ["invalid_signature"]


@pytest.mark.attack("co-producer signs correctly as itself", outcome="parked: untrusted_producer",
                    how="runtime: Bridge over in-memory ports")
def test_untrusted_co_producer(bridge: Bridge, sqs: FakeSender) -> None:
    delivered, parked = run(bridge, sqs, genuine("refunder"))

    assert delivered == []
    assert reasons(parked) == ["untrusted_producer"]


@pytest.mark.attack("signed record copied onto another topic", outcome="parked: invalid_signature",
                    how="runtime: Bridge over in-memory ports")
def test_cross_topic_copy(bridge: Bridge, sqs: FakeSender) -> None:
    rec = genuine("payer", "payments")
    rec["topic"] = "orders"  # payer may write orders, so only the signed topic tells the copy apart

    delivered, parked = run(bridge, sqs, rec)

    assert delivered == []
    assert reasons(parked) == ["invalid_signature"]


def _set_value(rec: dict[str, Any]) -> None:
    rec["value"] = base64.b64encode(b'{"amount": 5000}').decode()


def _set_key(rec: dict[str, Any]) -> None:
    rec["key"] = base64.b64encode(b"pay-2").decode()


def _drop_key(rec: dict[str, Any]) -> None:
    del rec["key"]


def _set_timestamp(rec: dict[str, Any]) -> None:
    rec["timestamp"] += 1


def _set_header(rec: dict[str, Any]) -> None:
    rec["headers"][0] = header("event-type", "PaymentRefunded")


def _add_header(rec: dict[str, Any]) -> None:
    rec["headers"].insert(0, header("correlation-id", "attacker-chosen"))


def _drop_header(rec: dict[str, Any]) -> None:
    rec["headers"].pop(0)


def _reorder_headers(rec: dict[str, Any]) -> None:
    rec["headers"][1], rec["headers"][2] = rec["headers"][2], rec["headers"][1]


@pytest.mark.attack("tampered signed record", outcome="parked: invalid_signature",
                    how="runtime: Bridge over in-memory ports")
@pytest.mark.parametrize("tamper", [_set_value, _set_key, _drop_key, _set_timestamp, _set_header, _add_header,
                                    _drop_header, _reorder_headers],
                         ids=lambda f: f.__name__.lstrip("_"))
def test_tampered_record(bridge: Bridge, sqs: FakeSender, tamper: Callable[[dict[str, Any]], None]) -> None:
    rec = genuine()
    tamper(rec)

    delivered, parked = run(bridge, sqs, rec)

    assert delivered == []
    assert reasons(parked) == ["invalid_signature"]


@pytest.mark.attack("record claiming a producer that is not configured", outcome="parked: producer_not_allowed",
                    how="runtime: Bridge over in-memory ports")
@pytest.mark.parametrize("claim", ["mallory", "shipper"], ids=["unknown", "not-allowed-on-topic"])
def test_unknown_producer(bridge: Bridge, sqs: FakeSender, claim: str) -> None:
    rec = genuine()
    rec["headers"] = [h for h in rec["headers"] if "x-bridge-producer" not in h] + [header("x-bridge-producer",
                                                                                            claim)]

    delivered, parked = run(bridge, sqs, rec)

    assert delivered == []
    assert reasons(parked, None) == ["producer_not_allowed"]
    assert claim not in json.dumps(parked[0]["detail"]) or claim == "shipper"


@pytest.mark.attack("forged record redriven from the bridge DLQ", outcome="parked: invalid_signature",
                    how="runtime: bridge redrive tool -> Bridge, in-memory DLQ")
def test_redrive_of_forged_record(bridge: Bridge, sqs: FakeSender) -> None:
    # given a forged record parked once
    _, parked = run(bridge, sqs, genuine(secret=b"guessed-key"))
    messages = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": json.dumps(p)} for i, p in enumerate(parked)]
    sqs.sent.clear()

    # when an operator redrives everything parked
    class Dlq:
        name = bridge.dlq.name

        def __init__(self) -> None:
            self.pending = copy.deepcopy(messages)
            self.deleted: list[str] = []

        def receive(self, visibility_seconds: int) -> list[dict[str, Any]]:
            out, self.pending = self.pending, []
            return out

        def hold(self, receipt_handles: Any, visibility_seconds: int) -> None:
            return None

        def delete(self, receipt_handles: Any) -> int:
            self.deleted += list(receipt_handles)
            return len(receipt_handles)

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        return bridge.handle(event).result()

    options = redrive_tool.RedriveOptions(batch_size=10, visibility_seconds=60)
    redrive_tool.redrive(Dlq(), lambda uri: {}, invoke, options)

    # then it is verified again and parked again, never delivered
    assert sqs.sent.get(LEDGER, []) == []
    assert reasons([json.loads(m.body) for m in sqs.sent[bridge.dlq.name]]) == ["invalid_signature"]
