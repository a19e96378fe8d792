"""Decoding Lambda's Kafka events: signed header bytes, repeated names, nulls, broken records."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bridge.records import (
    InvalidEventError,
    decode_event,
    decode_headers,
    decode_record,
    is_kafka_event,
    last_header_values,
)

from tests.helpers import kafka_record, load_event


def test_msk_event_decodes_every_record_with_key_value_and_headers() -> None:
    batch = decode_event(load_event("msk"))

    assert batch.event_source == "aws:kafka"
    assert batch.event_source_arn
    assert batch.event_source_arn.startswith("arn:aws:kafka:")
    assert [r.record_id for r in batch.records] == ["orders-0-15", "orders-0-16", "orders-1-7", "inventory-0-3"]
    first = batch.records[0]
    assert first.key == b"order-1001"
    assert json.loads(first.value or b"") == {"order_id": "order-1001", "total": 250.0}
    assert first.headers[0] == ("event-type", b"OrderPlaced")
    assert first.timestamp == 1767225600000
    assert first.timestamp_type == "CREATE_TIME"
    assert first.undecodable is None


def test_self_managed_event_is_a_kafka_event() -> None:
    batch = decode_event(load_event("self_managed"))

    assert batch.event_source == "SelfManagedKafka"
    assert batch.event_source_arn is None
    assert batch.records[0].record_id == "orders-0-100"


def test_aws_self_managed_kafka_event_source_of_sample_events_is_accepted_like_self_managed() -> None:
    # Powertools' and several runtimes' sample events say "aws:SelfManagedKafka"; Lambda sends "SelfManagedKafka"
    event = {**load_event("self_managed"), "eventSource": "aws:SelfManagedKafka"}

    assert is_kafka_event(event)
    batch = decode_event(event)
    assert batch.records[0].record_id == "orders-0-100"
    assert batch.records[0].undecodable is None


def test_absent_key_and_null_value_decode_to_none() -> None:
    null_key = decode_event(load_event("null_key")).records[0]
    null_value = decode_event(load_event("null_value")).records[0]

    assert "key" not in null_key.raw
    assert null_key.key is None
    assert null_value.value is None
    assert null_value.key == b"order-3002"


def test_negative_header_bytes_become_unsigned_and_repeated_names_are_kept_in_order() -> None:
    record = decode_event(load_event("headers_repeated_negative")).records[0]

    assert record.last_header("trace") == bytes([0xFF, 0x80, 0x01, 0x7F])
    assert record.header_values("event-type") == [b"OrderShipped", b"OrderPlaced"]
    assert record.last_header_text("event-type") == "OrderPlaced"
    assert record.last_header_text("trace") is None  # not UTF-8
    assert record.last_header("empty") == b""


def test_non_ascii_header_is_utf8_text() -> None:
    record = decode_event(load_event("non_ascii_header")).records[0]

    assert record.last_header_text("customer-name") == "Zoë Ünal 東京"
    assert record.key == "ordre-é".encode()


def test_schema_metadata_does_not_disturb_decoding() -> None:
    record = decode_event(load_event("schema_metadata")).records[0]

    assert record.undecodable is None
    assert record.raw["valueSchemaMetadata"] == {"dataFormat": "JSON", "schemaId": "5678"}


def test_broken_records_are_flagged_not_raised_and_keep_their_original_dict() -> None:
    event = load_event("undecodable")

    records = decode_event(event).records

    assert [r.undecodable is None for r in records] == [True, False, False]
    bad_value, bad_headers = records[1], records[2]
    assert bad_value.record_id == "orders-0-51"
    assert bad_value.raw == event["records"]["orders-0"][1]
    assert "Error" in (bad_value.undecodable or "")
    assert bad_headers.raw["headers"] == [{"event-type": "OrderPlaced"}]


@pytest.mark.parametrize("broken", [
    "not a dict",
    {"topic": "orders", "partition": 0},  # no offset
    {**kafka_record(offset=9), "headers": "nope"},
    {**kafka_record(offset=9), "headers": [{"h": [1, 999]}]},  # not a byte
    {**kafka_record(offset=9), "key": 12},
])
def test_any_malformed_record_is_undecodable(broken: object) -> None:
    record = decode_record(broken, "orders-3")

    assert record.undecodable
    assert record.topic == "orders"
    assert record.partition in (0, 3)


def test_console_test_event_is_rejected_with_one_line_that_says_what_to_send() -> None:
    event = {"key1": "value1", "key2": "value2", "key3": "value3"}

    with pytest.raises(InvalidEventError) as err:
        decode_event(event)

    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("This function expects a Kafka event-source event (eventSource aws:kafka or "
                              "SelfManagedKafka with a records map); got an object with keys key1, key2, key3.")
    assert "events/" in message


@pytest.mark.parametrize(("event", "expected"), [
    (load_event("msk"), True),
    (load_event("self_managed"), True),
    ({"eventSource": "aws:kafka"}, False),
    ({"eventSource": "aws:sqs", "records": {}}, False),
    ([], False),
    (None, False),
])
def test_is_kafka_event(event: object, expected: bool) -> None:
    assert is_kafka_event(event) is expected


@pytest.mark.parametrize(("values", "expected"), [
    ([104, 105], b"hi"),
    ([-1, -128, 0, 127], b"\xff\x80\x00\x7f"),  # signed Java bytes
    ([], b""),
    ([255], b"\xff"),
])
def test_header_byte_values_decode_signed_or_unsigned(values: list[int], expected: bytes) -> None:
    event = {"eventSource": "aws:kafka", "records": {"t-0": [
        {"topic": "t", "partition": 0, "offset": 0, "value": None, "headers": [{"h": values}]}]}}

    (record,) = decode_event(event).records

    assert record.undecodable is None
    assert record.headers == (("h", expected),)


@pytest.mark.parametrize("values", [[True], [1, False], [256], [-129], [1.0], ["a"], "ab"])
def test_header_values_that_are_not_bytes_make_the_record_undecodable(values: Any) -> None:
    event = {"eventSource": "aws:kafka", "records": {"t-0": [
        {"topic": "t", "partition": 0, "offset": 0, "value": None, "headers": [{"h": values}]}]}}

    (record,) = decode_event(event).records

    assert record.undecodable is not None
    assert "not a list of byte values" in record.undecodable


@pytest.mark.parametrize("headers", [
    None, [], [{"a": [104, 105]}], [{"a": [104]}, {"b": [1, 2]}, {"a": [106]}], [{"a": [-1, 65]}], [{"a": [0, 5]}],
    [{"a": [True, 2]}], [{"a": [2, True]}], [{"a": None}], [{"a": []}], [{"é": [104]}], [{"a": [256]}], [{"a": [2.5]}],
    [{"a": "text"}], [{"a": 3}], [{"a": {"2": 1}}], "not a list", [["a", [104]]], [{"a": [104], "b": [105]}],
    [{"\ud800": [104]}], [{"a": [104]}, None], [{1: [104]}], [{b"a": [104]}], [{type("Name", (str,), {})("a"): [104]}],
    [{"a": (104,)}], [{"a": [0]}], [{"a": {}}], [{"a": False}],
    [{}], [{"a": [104]}, {}], ["a"], [["a"]], [[0]], [{"a": [104]}, "x"], [{"a": [104]}, [104]], [""], [b"a"],
    [{"a": [104]}, {"a": [105]}], [{"a": [104], "a2": [1]}], [{"": [104]}], [{"a": [2, 255]}, {"b": [1]}],
])
def test_last_header_values_is_decode_headers_as_a_dict_with_the_same_errors(headers: Any) -> None:
    try:
        expected: Any = dict(decode_headers(headers))
    except (TypeError, ValueError) as exc:
        expected = type(exc)
    try:
        got: Any = last_header_values(headers)
    except (TypeError, ValueError) as exc:
        got = type(exc)
    assert got == expected


@pytest.mark.parametrize("field", ["topic", "partition", "offset", "timestamp", "timestampType"])
@pytest.mark.parametrize("change", ["missing", None, "7", 7, 7.0, True])
def test_decode_event_reads_a_record_as_decode_record_does_whatever_its_position_fields_hold(
        field: str, change: Any) -> None:
    # given a record whose position field is missing or of any JSON type
    raw: dict[str, Any] = {"topic": "t", "partition": 1, "offset": 2, "timestamp": 3, "timestampType": "CREATE_TIME",
                           "key": "aw==", "value": "dg==", "headers": [{"h": [104]}]}
    if change == "missing":
        del raw[field]
    else:
        raw[field] = change

    # when decode_event reads it (its inline path) and decode_record reads it alone
    (inline,) = decode_event({"eventSource": "aws:kafka", "records": {"t-1": [dict(raw)]}}).records
    alone = decode_record(dict(raw), "t-1")

    # then both give the same record, lazy or not
    assert (inline.topic, inline.partition, inline.offset, inline.timestamp, inline.timestamp_type, inline.is_lazy,
            inline.undecodable, inline.key, inline.value, inline.headers) == (
        alone.topic, alone.partition, alone.offset, alone.timestamp, alone.timestamp_type, alone.is_lazy,
        alone.undecodable, alone.key, alone.value, alone.headers)
