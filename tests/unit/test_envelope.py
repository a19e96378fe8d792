"""Outgoing messages: attributes and their cap, bodies, correlation ids, FIFO group and dedup ids, size."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
import uuid
from typing import Any

import pytest
from bridge import envelope
from bridge.config import MAX_MESSAGE_ATTRIBUTES, Destination
from bridge.envelope import (
    CORRELATION_NAMESPACE,
    billed_size,
    build_message,
    content_digest,
    correlation_id_for,
    dedup_id_for,
    group_id_for,
    message_attributes,
)
from bridge.records import decode_event, decode_record, utf8_or_none

from tests.helpers import kafka_record, load_event

SIG = "x-bridge-signature"


def record(**kw: Any) -> Any:
    return decode_record(kafka_record(**kw))


def test_attributes_are_reserved_then_header_attributes_with_last_value_of_repeated_header() -> None:
    rec = decode_event(load_event("headers_repeated_negative")).records[0]
    dest = Destination("out", "sqs", header_attributes=("event-type", "trace", "empty", "absent"))

    attrs = dict(message_attributes(rec, dest, "order-service", "cid-1", None, verified=True,
                                    message_id="order-service:m-1"))

    assert attrs == {"correlation-id": "cid-1", "record-id": "orders-0-42", "message-id": "order-service:m-1",
                     "producer": "order-service",
                     "event-type": "OrderPlaced"}  # trace is not UTF-8, empty is empty, absent is absent


def test_an_unverified_producer_never_takes_the_producer_attribute() -> None:
    rec = decode_event(load_event("headers_repeated_negative")).records[0]

    attrs = dict(message_attributes(rec, Destination("out", "sqs"), "order-service", "cid-1", None))

    assert "producer" not in attrs
    assert attrs["producer-unverified"] == "order-service"
    assert attrs["message-id"] == "orders-0-42"  # no signed id: the record id


def test_never_more_than_ten_attributes_even_if_the_config_check_is_bypassed() -> None:
    names = tuple(f"h{i}" for i in range(12))
    rec = record(headers=[(n, "v") for n in names])
    dest = Destination("out", "sqs", header_attributes=names)  # built directly: no config validation

    attrs = message_attributes(rec, dest, "p", "cid", "base64")

    assert len(attrs) == MAX_MESSAGE_ATTRIBUTES
    assert [n for n, _ in attrs[:5]] == ["correlation-id", "record-id", "message-id", "producer-unverified",
                                         "content-encoding"]


def test_header_value_sqs_would_refuse_is_left_out() -> None:
    rec = record(headers=[("event-type", "bad\u0000value")])

    attrs = dict(message_attributes(rec, Destination("o1", "sqs", header_attributes=("event-type",)), None, "c", None))

    assert "event-type" not in attrs


def test_correlation_id_comes_from_the_header_when_present() -> None:
    rec = decode_event(load_event("msk")).records[0]

    assert correlation_id_for(rec, "correlation-id") == "c0ffee00-0000-4000-8000-000000001001"


def test_generated_correlation_id_is_uuid5_of_the_record_id_so_redelivery_keeps_it() -> None:
    first = correlation_id_for(record(offset=7), "correlation-id")
    again = correlation_id_for(record(offset=7), "correlation-id")

    assert first == again == str(uuid.uuid5(CORRELATION_NAMESPACE, "orders-0-7"))
    assert correlation_id_for(record(offset=8), "correlation-id") != first


def test_dedup_id_is_sha256_of_position_destination_and_content() -> None:
    rec = record(partition=3, offset=99)

    dedup = dedup_id_for(rec, "fulfilment")

    assert dedup == hashlib.sha256(f"orders\x003\x0099\x00fulfilment\x00{content_digest(rec)}".encode()).hexdigest()
    assert dedup == dedup_id_for(record(partition=3, offset=99), "fulfilment")  # a redelivery
    assert dedup != dedup_id_for(record(partition=3, offset=99, value="other"), "fulfilment")
    assert dedup != dedup_id_for(rec, "payments-ledger")


def test_dedup_id_of_a_verified_record_is_its_message_id_at_any_offset() -> None:
    first, copy = record(partition=3, offset=99), record(partition=1, offset=7)

    assert dedup_id_for(first, "ledger", "payer:m-1") == dedup_id_for(copy, "ledger", "payer:m-1")
    assert dedup_id_for(first, "ledger", "payer:m-1") != dedup_id_for(first, "ledger", "payer:m-2")


@pytest.mark.parametrize(("source", "kw", "expected"), [
    ("key", {"key": "order-1"}, "order-1"),
    ("key", {"key": None}, "orders-2"),  # no key: topic-partition keeps Kafka's order
    ("topic", {}, "orders"),
    ("partition", {}, "orders-2"),
    ("header:tenant", {"headers": [("tenant", "acme")]}, "acme"),
    ("header:tenant", {}, "orders-2"),
    ("static:all", {}, "all"),
    ("key", {"key": "has space"}, hashlib.sha256(b"has space").hexdigest()),
    ("key", {"key": b"\xff\x00"}, hashlib.sha256(b"\xff\x00").hexdigest()),
    # SQS's MessageGroupId takes no newline; the pattern's `$` matched before a final one
    ("header:tenant", {"headers": [("tenant", "acme\n")]}, hashlib.sha256(b"acme\n").hexdigest()),
    ("key", {"key": "order-1\n"}, hashlib.sha256(b"order-1\n").hexdigest()),
])
def test_group_id_sources(source: str, kw: dict[str, Any], expected: str) -> None:
    dest = Destination("q1", "sqs", fifo=True, group_id=source)

    assert group_id_for(record(partition=2, **kw), dest) == expected


def test_fifo_message_has_group_and_dedup_ids_standard_message_has_none() -> None:
    rec = record(key="order-1")

    fifo = build_message(rec, Destination("q1", "sqs", fifo=True), producer=None, correlation_id="c",
                         signature_header=SIG)
    std = build_message(rec, Destination("q2", "sqs"), producer=None, correlation_id="c", signature_header=SIG)

    assert fifo.group_id == "order-1"
    assert fifo.dedup_id == dedup_id_for(rec, "q1")
    assert std.group_id is None
    assert std.dedup_id is None


@pytest.mark.parametrize(("value", "body", "encoding"), [
    ('{"a": 1}', '{"a": 1}', None),
    ("Zoë", "Zoë", None),
    (b"\xff\xfe", base64.b64encode(b"\xff\xfe").decode(), "base64"),
    ("nul\u0000inside", base64.b64encode(b"nul\x00inside").decode(), "base64"),  # SQS refuses U+0000
    (None, "null", "null"),
    (b"", "null", "empty"),
])
def test_raw_body_and_content_encoding(value: Any, body: str, encoding: str | None) -> None:
    message = build_message(record(value=value), Destination("q1", "sqs"), producer=None, correlation_id="c",
                            signature_header=SIG)

    assert message.body == body
    assert dict(message.attributes).get("content-encoding") == encoding


def test_envelope_body_carries_position_headers_and_parsed_value() -> None:
    rec = decode_event(load_event("headers_repeated_negative")).records[0]

    message = build_message(rec, Destination("q1", "sqs", body="envelope"), producer="p", correlation_id="c",
                            signature_header=SIG)

    doc = json.loads(message.body)
    assert doc["topic"] == "orders"
    assert doc["partition"] == 0
    assert doc["offset"] == 42
    assert doc["key"] == "order-3003"
    assert doc["value"] == {"total": 1}
    assert doc["headers"]["event-type"] == ["OrderShipped", "OrderPlaced"]
    assert doc["headers"]["trace"] == [base64.b64encode(bytes([0xFF, 0x80, 0x01, 0x7F])).decode()]
    assert doc["binary_headers"] == ["trace"]
    assert doc["correlation_id"] == "c"
    assert doc["producer"] == "p"
    assert "content-encoding" not in dict(message.attributes)


def test_envelope_headers_keep_every_value_in_record_order_and_leave_out_the_signature() -> None:
    # given a repeated header, a header with text and binary values, and the producer's signature
    rec = record(headers=[("h", "a"), ("sig-b", b"\xff"), ("h", "b"), (SIG, "deadbeef"), ("sig-b", "ok")])

    # when
    message = build_message(rec, Destination("q1", "sqs", body="envelope"), producer="p", correlation_id="c",
                            signature_header=SIG)

    # then
    doc = json.loads(message.body)
    assert doc["headers"] == {"h": ["a", "b"], "sig-b": ["/w==", base64.b64encode(b"ok").decode()]}
    assert doc["binary_headers"] == ["sig-b"]
    assert SIG not in message.body


def test_envelope_value_that_is_not_json_is_text() -> None:
    message = build_message(record(value="plain text"), Destination("q1", "sqs", body="envelope"), producer=None,
                            correlation_id="c", signature_header=SIG)

    assert json.loads(message.body)["value"] == "plain text"


def test_billed_size_counts_body_and_attribute_names_types_values() -> None:
    attrs = (("correlation-id", "abc"), ("é", "ü"))

    assert billed_size("héllo", attrs) == 6 + (14 + 6 + 3) + (2 + 6 + 2)


def test_message_size_is_its_billed_size() -> None:
    message = build_message(record(), Destination("q1", "sqs"), producer="p", correlation_id="c",
                            signature_header=SIG)

    assert message.size == billed_size(message.body, message.attributes)


def test_the_byte_check_agrees_with_the_sqs_character_rule_on_every_bmp_character() -> None:
    # given every BMP code point (surrogates cannot occur in valid UTF-8) and a few beyond
    code_points = [c for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF] + [0x10000, 0x1F600, 0x10FFFF]
    for c in code_points:
        text = f"a{chr(c)}b"
        # then the fast checks agree with the documented regex
        expected = envelope._SQS_FORBIDDEN.search(text) is None
        assert envelope.sendable_utf8(text.encode("utf-8")) is expected, hex(c)
        assert envelope.sendable_text(text) is expected, hex(c)


# The rule as SQS documents it (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF), written as the
# accepted set: bridge.envelope writes the rejected set instead, which compiles ~12x cheaper at cold start.
SQS_ACCEPTS_DOCUMENTED = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def test_the_forbidden_character_class_is_the_documented_rule_on_every_code_point() -> None:
    # given every code point U+0000-U+10FFFF (surrogates included: a str can hold them), in one string
    every = "".join(map(chr, range(0x110000)))
    # then the envelope's class finds exactly the characters the documented rule rejects, in order
    assert envelope._SQS_FORBIDDEN.findall(every) == SQS_ACCEPTS_DOCUMENTED.findall(every)
    # and the same on strings around the edges of each range, alone, inside text and at either end
    edges = [0x0, 0x8, 0x9, 0xA, 0xB, 0xC, 0xD, 0xE, 0x1F, 0x20, 0x7F, 0x85, 0xD7FF, 0xD800, 0xDBFF, 0xDC00,
             0xDFFF, 0xE000, 0xFFFD, 0xFFFE, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF]
    rng = random.Random(10)
    texts = [""] + [f"{p}{chr(c)}{q}" for c in edges for p, q in (("", ""), ("a", "b"), ("x" * 300, ""), ("", "é" * 9))]
    texts += ["".join(chr(rng.choice(edges)) for _ in range(rng.randrange(1, 12))) for _ in range(2_000)]
    for text in texts:
        for found, expected in ((envelope._SQS_FORBIDDEN.search(text), SQS_ACCEPTS_DOCUMENTED.search(text)),
                                (envelope._SQS_FORBIDDEN.match(text), SQS_ACCEPTS_DOCUMENTED.match(text))):
            assert (found and found.span()) == (expected and expected.span()), ascii(text)
        assert envelope.sendable_text(text) is (SQS_ACCEPTS_DOCUMENTED.search(text) is None), ascii(text)


def adversarial_values() -> list[bytes]:
    """Bytes that sit on every edge of the raw-or-base64 rule, each alone and inside printable text."""
    edges = [bytes([b]) for b in range(256)]  # every byte value: controls, 0x7F, lone continuation/lead bytes
    edges += [
        "\ufffe".encode(), "\uffff".encode(), "\ufffd".encode(), "\ud7ff".encode(), "\ue000".encode(),
        "\U00010000".encode(), "\U0010ffff".encode(), "é✓𝄞".encode(),
        b"\xed\xa0\x80", b"\xed\xbf\xbf",  # surrogates U+D800 / U+DFFF as UTF-8: not valid UTF-8
        b"\xc0\x80", b"\xc1\xbf", b"\xe0\x80\x80", b"\xf0\x80\x80\x80",  # overlong forms
        b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",  # beyond U+10FFFF
        b"\xef\xbf", b"\xef", b"\xe2\x9c", b"\xf0\x9d\x84",  # cut short
        b"\xef\xbf\xbe\xef\xbf\xbf", b"\xef\xbf\xbd\xef\xbf\xbe",
    ]
    out = [b""]
    for edge in edges:
        out += [edge, b"a" + edge + b"b", b"x" * 40 + edge + b"y" * 40, edge * 3]
    return out


def random_values(seed: int, count: int) -> list[bytes]:
    rng = random.Random(seed)
    pool = "ab {}\":\t\n\r\x00\x01\x1f\x7f\x85é✓\ud7ff\ue000\ufffd\ufffe\uffff𝄞\U0010ffff"
    out = []
    for _ in range(count):
        if rng.random() < 0.5:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64))))
        else:
            out.append("".join(rng.choice(pool) for _ in range(rng.randrange(1, 64))).encode())
    return out


def sqs_takes_raw(value: bytes) -> bool:
    """The documented rule, from its definition: non-empty UTF-8 whose every character SQS accepts."""
    text = utf8_or_none(value)
    return bool(text) and envelope._SQS_FORBIDDEN.search(text) is None


def test_the_raw_or_base64_decision_is_the_sqs_character_rule_for_any_bytes() -> None:
    # given every byte value and the UTF-8 edge cases (noncharacters, surrogates, overlongs, too large, cut
    # short), alone and inside text, and random bytes and random text around them
    values = adversarial_values() + random_values(10, 3000)
    factory = envelope.MessageFactory(Destination("out", "sqs"), SIG)
    for value in values:
        expected = sqs_takes_raw(value)
        # then both paths' byte checks give the rule's answer: the general path (raw_body, sendable_utf8) and
        # the planning fast path (plain_message)
        body, encoding = envelope.raw_body(value)
        assert (encoding is None) is expected, value
        fast = factory.plain_message(value, "t-0-1", "c", {}, None)
        assert (fast.body, dict(fast.attributes).get("content-encoding")) == (body, encoding), value
        if utf8_or_none(value) is not None:
            assert envelope.sendable_utf8(value) is (envelope._SQS_FORBIDDEN.search(value.decode()) is None), value


def test_control_free_answers_for_a_run_of_values_what_the_byte_check_answers_for_each() -> None:
    # given runs of values, each clean or holding one byte of the edge cases, at any place in the run
    rng = random.Random(11)
    pool = adversarial_values() + random_values(12, 500)
    for _ in range(2000):
        values = rng.sample(pool, rng.randrange(0, 8))
        # then the run is control-free exactly when no value of it has a control byte (0x7F and the
        # noncharacters are not control bytes; tab, LF and CR are allowed)
        expected = all(v.translate(None, envelope._ASCII_CONTROL) == v for v in values)
        assert envelope.control_free(values) is expected, values
