"""The signature scheme (bridge.signatures) as a producer in any language must reproduce it, and the
local producer and test events that sign with it."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from bridge.records import decode_event
from bridge.signatures import canonical_string, sign_record, verify_record
from bridge.trust import TrustPolicy

from bridge_local.events import KafkaRecord, PlainRecord, build_event, records_from_event, to_kafka_records
from bridge_local.producer import finalize, produce
from bridge_local.testevents import PLACEHOLDER_KEY, generate, resign_event
from tests.helpers import dev_config

SIG = "x-bridge-signature"
SECRET = b"payment-service-key"
Headers = list[tuple[str, bytes | None]]


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fields(headers: Headers, timestamp: int = 1767225600000) -> dict[str, Any]:
    return {"producer": "payment-service", "topic": "payments", "timestamp": timestamp, "key": b"p1",
            "value": b"{}", "headers": headers, "signature_header": SIG}


BASE: Headers = [("event-type", b"PaymentCaptured"), ("x-bridge-producer", b"payment-service")]


def verifies(signed_over: Headers, received: Headers, timestamp: int = 1767225600000) -> bool:
    signature = sign_record(SECRET, **fields(signed_over))
    return verify_record((SECRET,), signature, **fields(received, timestamp))


def test_canonical_string_is_the_documented_example_byte_for_byte() -> None:
    canonical = canonical_string(**fields(list(reversed(BASE))))

    assert canonical == "\n".join([
        "v1", "payment-service", "payments", "1767225600000", h(b"p1"), h(b"{}"),
        f"6576656e742d74797065 {h(b'PaymentCaptured')}",
        f"782d6272696467652d70726f6475636572 {h(b'payment-service')}",
    ]).encode("utf-8")
    assert sign_record(SECRET, **fields(BASE)) == "v1=" + hmac.new(SECRET, canonical, hashlib.sha256).hexdigest()


def test_untouched_record_verifies() -> None:
    assert verifies(BASE, BASE)


def test_changed_header_value_is_rejected() -> None:
    assert not verifies(BASE, [("event-type", b"PaymentRefunded"), BASE[1]])


def test_added_header_is_rejected() -> None:
    assert not verifies(BASE, [*BASE, ("correlation-id", b"attacker-chosen")])


def test_removed_header_is_rejected() -> None:
    assert not verifies(BASE, BASE[1:])


def test_changed_timestamp_is_rejected() -> None:
    assert not verifies(BASE, BASE, timestamp=1767225600001)


def test_reordering_repeated_headers_is_rejected_but_order_across_names_is_not_signed() -> None:
    repeated: Headers = [("route", b"a"), ("route", b"b"), *BASE]

    assert not verifies(repeated, [("route", b"b"), ("route", b"a"), *BASE])
    assert verifies(repeated, [*reversed(BASE), ("route", b"a"), ("route", b"b")])


def test_null_header_value_differs_from_empty() -> None:
    assert not verifies([*BASE, ("flag", None)], [*BASE, ("flag", b"")])
    assert verifies([*BASE, ("flag", None)], [*BASE, ("flag", None)])


def test_signature_header_is_not_signed_so_a_producer_signs_before_adding_it() -> None:
    signature = sign_record(SECRET, **fields(BASE))

    assert verify_record((SECRET,), signature, **fields([*BASE, (SIG, signature.encode())]))
    assert verify_record((SECRET,), signature, **fields([(SIG, b"v1=stale"), *BASE, (SIG, signature.encode())]))
    # only the exact name: another case is an ordinary header, and signed
    assert not verifies(BASE, [*BASE, ("X-Bridge-Signature", b"x")])


def test_header_name_cannot_be_shaped_to_forge_other_lines() -> None:
    # a name with a newline is hex-encoded, so it cannot pose as two header lines
    assert not verifies([("a", b"1"), ("b", b"2")], [(f"a {h(b'1')}\nb", b"2")])


def test_any_of_several_keys_verifies_and_unknown_schemes_do_not() -> None:
    signature = sign_record(b"previous-key", **fields(BASE))

    assert verify_record((SECRET, b"previous-key"), signature, **fields(BASE))
    assert not verify_record((SECRET,), signature, **fields(BASE))
    assert not verify_record((b"previous-key",), "v2=" + signature[3:], **fields(BASE))


# --- callers that sign ---------------------------------------------------------------------------


class _CapturingProducer:
    """Stands in for confluent-kafka's Producer: keeps what `produce` was called with."""

    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []

    def produce(self, **kwargs: Any) -> None:
        self.produced.append(kwargs)

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0


def test_local_producer_sends_the_timestamp_it_signed() -> None:
    # given
    config = dev_config()
    plain = PlainRecord("payments", b"p1", b'{"amount": 1}', (("event-type", b"PaymentCaptured"),),
                        "payment-service", True)
    client = _CapturingProducer()
    # when
    produce(config, "unused:9092", [plain], lambda _p: SECRET, client=client)
    # then
    (sent,) = client.produced
    headers = [(n, v) for n, v in sent["headers"]]
    signature = dict(headers)[SIG].decode()
    assert isinstance(sent["timestamp"], int)
    assert sent["timestamp"] > 1_700_000_000_000
    assert verify_record((SECRET,), signature, producer="payment-service", topic="payments",
                         timestamp=sent["timestamp"], key=sent["key"], value=sent["value"], headers=headers,
                         signature_header=SIG)
    assert not verify_record((SECRET,), signature, producer="payment-service", topic="payments",
                             timestamp=sent["timestamp"] + 1, key=sent["key"], value=sent["value"],
                             headers=headers, signature_header=SIG)


def test_finalize_signs_at_the_given_time_and_ignores_a_file_timestamp() -> None:
    plain = PlainRecord("payments", b"p1", b"{}", (), "payment-service", True, timestamp=1)

    final = finalize(dev_config(), plain, lambda _p: SECRET, now_ms=1767225600123)

    assert final.timestamp == 1767225600123


@pytest.mark.parametrize("name", ["route-payments", "fail-untrusted-producer"])
def test_generated_events_verify_with_the_placeholder_key_and_resign_with_the_real_one(name: str) -> None:
    # given
    config = dev_config()
    (event,) = [g.event for g in generate(config) if g.name == name]
    # when
    resigned = resign_event(config, event, lambda _p: b"the-real-key")
    # then
    (record,) = records_from_event(event)
    assert resigned == 1
    assert _verifies(record, b"the-real-key")
    assert not _verifies(record, PLACEHOLDER_KEY)


def test_forged_test_event_stays_forged_when_resigned() -> None:
    config = dev_config()
    (event,) = [g.event for g in generate(config) if g.name == "fail-invalid-signature"]

    assert resign_event(config, event, lambda _p: b"the-real-key") == 0


def _verifies(record: KafkaRecord, key: bytes) -> bool:
    headers = dict(record.headers)
    signature = (headers[SIG] or b"").decode()
    producer = (headers["x-bridge-producer"] or b"").decode()
    return verify_record((key,), signature, producer=producer, topic=record.topic, timestamp=record.timestamp,
                         key=record.key, value=record.value, headers=record.headers, signature_header=SIG)


def test_a_locally_produced_signed_record_with_a_null_header_verifies_in_the_bridge() -> None:
    # given: a signed payment carrying a header with a null value, as the local producer finalizes it
    config = dev_config()
    plain = PlainRecord("payments", b"p1", b'{"amount": 1}', (("trace", None), ("event-type", b"PaymentCaptured")),
                        "payment-service", True)
    final = finalize(config, plain, lambda _p: SECRET, now_ms=1767225600123)
    # when: it travels as Lambda's event and through the bridge's decoder and trust policy
    event = build_event(to_kafka_records([final]), config.source.cluster_arn, "127.0.0.1:9092")
    assert records_from_event(event)[0].headers[0] == ("trace", None)
    record = decode_event(event).records[0]
    verdict = TrustPolicy(config, _OneKey(SECRET)).attribute(record).admit(config.destination("payments-ledger"))
    # then
    assert verdict is None


class _OneKey:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        return (self.key,)
