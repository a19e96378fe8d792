"""Decoding the Kafka event Lambda delivers (MSK and self-managed) into `KafkaRecord`s.

Lambda's event is `{"eventSource": "aws:kafka" | "SelfManagedKafka", "records": {"<topic>-<partition>":
[record, ...]}}`. In a record the key is base64 and absent when null, the value is base64 or null,
and headers are a list of single-key dicts `{name: [signed Java byte values]}` whose names may repeat.

A record that cannot be decoded does not fail the batch: it comes back with `undecodable` set (why)
and its original dict in `raw`, so the bridge can park it with the bytes Lambda delivered.

A redrive invocation (`bridge redrive`) is the same event plus one top-level key,
`"bridgeRedrive": {"<topic>-<partition>-<offset>": ["destination", ...] | null}`: which parked
records it replays and for which destinations (see bridge.routing.restrict_to_redrive). Its shape is
checked here, before any record is touched; a wrong shape raises `InvalidRedriveError`.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# "aws:SelfManagedKafka" is what Powertools' and several runtimes' sample events carry for self-managed
# Kafka; Lambda itself sends "SelfManagedKafka". Both mean the same event shape.
KAFKA_EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka", "aws:SelfManagedKafka")
SELF_MANAGED_EVENT_SOURCES = KAFKA_EVENT_SOURCES[1:]
REDRIVE_KEY = "bridgeRedrive"
# `{topic}-{partition}-{offset}`; -1 is what an undecodable record without a position gets.
_RECORD_ID = re.compile(r".+-(?:-1|\d+)-(?:-1|\d+)")

# record id -> the destinations to redeliver it to, or None: route it normally
Redrive = Mapping[str, tuple[str, ...] | None]


class InvalidEventError(ValueError):
    """The event is not a Kafka event-source event; the message is one line that says what to send."""


class ForeignEventError(InvalidEventError):
    """A Kafka event that does not come from this bridge's source (another cluster's ARN, other
    bootstrap servers); the message is one line naming both."""


class InvalidRedriveError(InvalidEventError):
    """The event's `bridgeRedrive` key has the wrong shape; the message is one line naming the problem."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One Kafka record as the bridge sees it. `raw` is the dict exactly as Lambda delivered it."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)
    undecodable: str | None = None  # why decoding failed; None for a good record

    @property
    def record_id(self) -> str:
        """`{topic}-{partition}-{offset}`: unique per record within a cluster."""
        return f"{self.topic}-{self.partition}-{self.offset}"

    def header_values(self, name: str) -> list[bytes]:
        """Every value of a header, in record order (Kafka header names may repeat)."""
        return [v for n, v in self.headers if n == name]

    def last_header(self, name: str) -> bytes | None:
        """The last value of a header, which is the one Kafka clients treat as current."""
        for n, v in reversed(self.headers):
            if n == name:
                return v
        return None

    def last_header_text(self, name: str) -> str | None:
        """The last value of a header as text, or None when absent or not valid UTF-8."""
        value = self.last_header(name)
        return utf8_or_none(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class KafkaBatch:
    """A decoded event: every record in delivery order (per partition, partitions as delivered)."""

    event_source: str
    event_source_arn: str | None
    records: tuple[KafkaRecord, ...]
    redrive: Redrive | None = None  # set for a redrive invocation (the event's `bridgeRedrive` map)
    bootstrap_servers: str | None = None  # the event's `bootstrapServers` (comma-separated host:port)


def utf8_or_none(data: bytes) -> str | None:
    """The bytes as text, or None when they are not valid UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def is_kafka_event(event: object) -> bool:
    """True for an event from a Kafka event-source mapping (MSK or self-managed)."""
    return (
        isinstance(event, Mapping)
        and event.get("eventSource") in KAFKA_EVENT_SOURCES
        and isinstance(event.get("records"), Mapping)
    )


def describe_invalid_event(event: object) -> str:
    """The one-line explanation raised for an event that is not a Kafka event."""
    if isinstance(event, Mapping):
        keys = ", ".join(str(k) for k in list(event)[:8]) or "no keys"
        got = f"an object with keys {keys}"
        if event.get("eventSource") in KAFKA_EVENT_SOURCES:
            got = f"eventSource {event.get('eventSource')} but no records map"
    else:
        got = f"a {type(event).__name__}"
    return (
        "This function expects a Kafka event-source event (eventSource aws:kafka or SelfManagedKafka "
        f"with a records map); got {got}. Use a test event from events/ (for example events/msk.json) "
        "or invoke it through the event-source mapping."
    )


def parse_redrive(event: Mapping[str, Any]) -> Redrive | None:
    """The event's `bridgeRedrive` map, or None when the key is absent; InvalidRedriveError on a bad shape.

    Destination lists keep their order without repeats; an empty list is refused (a record to be
    redelivered nowhere is a mistake in whatever built the event, not a request).
    """
    if REDRIVE_KEY not in event:
        return None
    value = event[REDRIVE_KEY]
    if not isinstance(value, Mapping):
        raise InvalidRedriveError(
            f"{REDRIVE_KEY} must be an object mapping record ids (topic-partition-offset) to a list of "
            f"destination names or null; got a {type(value).__name__}")
    out: dict[str, tuple[str, ...] | None] = {}
    for record_id, destinations in value.items():
        if not isinstance(record_id, str) or not _RECORD_ID.fullmatch(record_id):
            raise InvalidRedriveError(f"{REDRIVE_KEY} key {str(record_id)[:120]!r} is not a record id of the "
                                      "form <topic>-<partition>-<offset>")
        if destinations is None:
            out[record_id] = None
        elif (isinstance(destinations, list) and destinations
              and all(isinstance(d, str) and d for d in destinations)):
            out[record_id] = tuple(dict.fromkeys(destinations))
        else:
            got = "an empty list" if destinations == [] else f"{str(destinations)[:80]!r}"
            raise InvalidRedriveError(f"{REDRIVE_KEY}[{record_id!r}] must be a non-empty list of destination "
                                      f"names or null; got {got}")
    return out


def decode_event(event: object) -> KafkaBatch:
    """Decode a Kafka event; raise InvalidEventError when it is not one (InvalidRedriveError when its
    `bridgeRedrive` key is malformed). Bad records never raise."""
    if not is_kafka_event(event):
        raise InvalidEventError(describe_invalid_event(event))
    assert isinstance(event, Mapping)
    redrive = parse_redrive(event)
    records: list[KafkaRecord] = []
    for partition_key, items in event["records"].items():
        for item in items if isinstance(items, list) else [items]:
            records.append(decode_record(item, str(partition_key)))
    arn = event.get("eventSourceArn")
    servers = event.get("bootstrapServers")
    return KafkaBatch(str(event["eventSource"]), arn if isinstance(arn, str) else None, tuple(records), redrive,
                      servers if isinstance(servers, str) else None)


def decode_record(raw: Any, partition_key: str = "") -> KafkaRecord:
    """Decode one record dict; a record that cannot be decoded comes back flagged `undecodable`."""
    try:
        return _decode(raw)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        topic, partition, offset = _best_effort_position(raw, partition_key)
        return KafkaRecord(
            topic=topic,
            partition=partition,
            offset=offset,
            timestamp=_int_or(raw, "timestamp", 0),
            timestamp_type=str(raw.get("timestampType", "")) if isinstance(raw, Mapping) else "",
            key=None,
            value=None,
            headers=(),
            raw=raw if isinstance(raw, Mapping) else {"record": raw},
            undecodable=f"{type(exc).__name__}: {exc}"[:500],
        )


def _decode(raw: Any) -> KafkaRecord:
    # `type(...) is dict` first: the event is parsed JSON, and an ABC isinstance costs more than the rest
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise TypeError(f"record is a {type(raw).__name__}, not an object")
    return KafkaRecord(
        topic=_require_str(raw, "topic"),
        partition=_require_int(raw, "partition"),
        offset=_require_int(raw, "offset"),
        timestamp=_int_or(raw, "timestamp", 0),
        timestamp_type=str(raw.get("timestampType", "")),
        key=_b64(raw.get("key"), "key"),
        value=_b64(raw.get("value"), "value"),
        headers=_headers(raw.get("headers")),
        raw=raw,
    )


def _b64(data: Any, what: str) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, str):
        raise TypeError(f"{what} is a {type(data).__name__}, not base64 text")
    # strict_mode rejects what b64decode(validate=True) rejects, without its regex pass over the input
    return binascii.a2b_base64(data, strict_mode=True)


def _headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TypeError("headers is not a list")
    out: list[tuple[str, bytes]] = []
    for entry in raw:
        if type(entry) is not dict and not isinstance(entry, Mapping):
            raise TypeError("a header entry is not an object")
        for name, values in entry.items():
            text = name if type(name) is str else str(name)
            if not text.isascii() and not _encodes_as_utf8(text):
                # JSON can carry a lone surrogate that no Kafka client could have produced; signing and
                # attributes need the name's UTF-8 bytes, so the record is parked, not the batch failed
                raise ValueError("a header name is not valid UTF-8")
            # a header with a null value (Kafka allows it) decodes to b""
            out.append((text, b"" if values is None else _header_bytes(text, values)))
    return tuple(out)


_INT_ONLY = {int}


def _header_bytes(name: str, values: Any) -> bytes:
    """A header's signed Java byte values as bytes: -1 is 0xFF."""
    if type(values) is list:
        try:
            data = bytes(values)  # C speed for the common case: every value an int in 0..255
        except (TypeError, ValueError):
            pass
        else:
            if not values or set(map(type, values)) == _INT_ONLY:  # bytes() takes True as 1; we do not
                return data
    if not isinstance(values, list) or not all(
        isinstance(b, int) and not isinstance(b, bool) and -128 <= b <= 255 for b in values
    ):
        raise ValueError(f"header {name!r} is not a list of byte values")
    return bytes(b & 0xFF for b in values)


def _encodes_as_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require_str(raw: Mapping[str, Any], name: str) -> str:
    v = raw[name]
    if not isinstance(v, str):
        raise TypeError(f"{name} is not a string")
    return v


def _require_int(raw: Mapping[str, Any], name: str) -> int:
    v = raw[name]
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"{name} is not an integer")
    return v


def _int_or(raw: Any, name: str, default: int) -> int:
    v = raw.get(name) if isinstance(raw, Mapping) else None
    return v if isinstance(v, int) and not isinstance(v, bool) else default


def _best_effort_position(raw: Any, partition_key: str) -> tuple[str, int, int]:
    """Topic, partition and offset of a broken record, from the record or its `topic-partition` key."""
    key_topic, _, key_part = partition_key.rpartition("-")
    topic = raw.get("topic") if isinstance(raw, Mapping) else None
    partition = _int_or(raw, "partition", int(key_part) if key_part.isdigit() else -1)
    return (
        topic if isinstance(topic, str) and topic else key_topic or "unknown",
        partition,
        _int_or(raw, "offset", -1),
    )
