"""Producer attribution and signatures: each parking reason, and keys fetched only when needed."""

from __future__ import annotations

from typing import Any

import pytest
from bridge.config import BridgeConfig
from bridge.records import decode_record
from bridge.signatures import sign_record
from bridge.trust import TrustPolicy

from tests.helpers import FakeKeys, kafka_record, make_config

KEYS = {"payer": b"payer-secret", "shipper": b"shipper-secret"}


def config() -> BridgeConfig:
    principal = "arn:aws:iam::123456789012:role/{}"
    return make_config(
        producers=[
            {"name": "payer", "topics": ["payments"], "aws_principal": principal.format("payer"), "signing": True},
            {"name": "shipper", "topics": ["payments", "orders"], "aws_principal": principal.format("s"),
             "signing": True},
            {"name": "stocker", "topics": ["inventory"], "aws_principal": principal.format("stocker")},
        ],
        destinations=[{"name": "ledger", "type": "sqs", "accept_from": ["payer"]}, {"name": "open", "type": "sqs"}],
        routes=[{"name": "all", "match": {}, "to": ["ledger", "open"]}],
    )


def signed(producer: str, topic: str = "payments", *, secret: bytes | None = None) -> dict[str, Any]:
    """A record signed by `producer` (with its key unless `secret` is given)."""
    sig = sign_record(secret or KEYS[producer], producer, topic, b"p-1", b'{"amount": 5}')
    return kafka_record(topic=topic, key="p-1", value='{"amount": 5}',
                        headers=[("x-bridge-producer", producer), ("x-bridge-signature", sig)])


def check(raw: dict[str, Any], keys: FakeKeys | None = None) -> tuple[str | None, Any, Any]:
    cfg = config()
    trust = TrustPolicy(cfg, keys or FakeKeys(dict(KEYS))).attribute(decode_record(raw))
    ledger = trust.admit(cfg.destination("ledger"))
    return trust.producer, trust.rejection, ledger


def test_valid_signature_from_listed_producer_is_admitted() -> None:
    producer, rejection, ledger = check(signed("payer"))

    assert (producer, rejection, ledger) == ("payer", None, None)


def test_missing_signature_is_unsigned() -> None:
    rec = kafka_record(topic="payments", headers=[("x-bridge-producer", "payer")])

    _, _, ledger = check(rec)

    assert ledger.reason == "unsigned"


def test_wrong_key_is_invalid_signature() -> None:
    _, _, ledger = check(signed("payer", secret=b"stolen-or-stale"))

    assert ledger.reason == "invalid_signature"


def test_signature_copied_to_another_topic_is_invalid() -> None:
    rec = signed("shipper", topic="payments")
    rec["topic"] = "orders"

    _, _, ledger = check(rec)

    assert ledger.reason == "invalid_signature"


def test_valid_signature_from_producer_not_in_accept_from_is_untrusted() -> None:
    _, rejection, ledger = check(signed("shipper"))

    assert rejection is None
    assert ledger.reason == "untrusted_producer"


@pytest.mark.parametrize(("claim", "topic"), [("mallory", "payments"), ("stocker", "payments"),
                                              ("payer", "orders")])
def test_claim_of_unknown_producer_or_not_on_topic_is_producer_not_allowed(claim: str, topic: str) -> None:
    rec = kafka_record(topic=topic, headers=[("x-bridge-producer", claim)])

    _, rejection, _ = check(rec)

    assert rejection.reason == "producer_not_allowed"


def test_unclaimed_record_is_attributed_to_the_only_producer_of_its_topic_but_not_trusted() -> None:
    producer, rejection, ledger = check(kafka_record(topic="inventory"))

    assert producer == "stocker"
    assert rejection is None
    assert ledger.reason == "unsigned"  # attribution alone never passes accept_from


def test_unclaimed_record_on_a_topic_with_two_producers_has_no_producer() -> None:
    producer, _, _ = check(kafka_record(topic="payments"))

    assert producer is None


def test_keys_are_fetched_only_for_destinations_with_accept_from_and_once_per_record() -> None:
    cfg = config()
    keys = FakeKeys(dict(KEYS))
    trust = TrustPolicy(cfg, keys).attribute(decode_record(signed("payer")))

    assert trust.admit(cfg.destination("open")) is None
    assert keys.fetched == []
    trust.admit(cfg.destination("ledger"))
    trust.admit(cfg.destination("ledger"))
    assert keys.fetched == ["payer"]


def test_unavailable_key_parks_under_its_own_reason_with_the_cause() -> None:
    _, _, ledger = check(signed("payer"), keys=FakeKeys({}))

    assert ledger.reason == "signing_key_unavailable"
    assert "unavailable" in ledger.detail
