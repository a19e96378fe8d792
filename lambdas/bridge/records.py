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
from dataclasses import field
from typing import Any

from bridge.frozen import frozen

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


# A lazy record's field that is decoded from `raw` when read (`is_lazy`: its `_value` is this).
UNREAD: Any = object()


class KafkaRecord:
    """One Kafka record as the bridge sees it. `raw` is the dict exactly as Lambda delivered it.

    A record from `decode_event` is lazy: it holds its position and `raw`, and `key`, `value` and
    `headers` are decoded from `raw` each time they are read, never kept. The event holds every value
    (base64) for the whole invocation already; keeping a decoded copy of each next to it would double
    the memory of a large batch. Whoever reads them more than once takes `decoded()`: a record with
    all three decoded once, to drop when done (the bridge plans each record on one and lets it go).
    `undecodable` (why decoding failed, None for a good record) is known after the first decode.
    A record built with its fields (tests, the local tools) is already decoded. Treat both as frozen.
    """

    __slots__ = (
        "_headers",
        "_key",
        "_record_id",
        "_undecodable",
        "_value",
        "offset",
        "partition",
        "raw",
        "timestamp",
        "timestamp_type",
        "topic",
    )

    topic: str
    partition: int
    offset: int
    timestamp: int
    timestamp_type: str
    raw: Mapping[str, Any]

    def __init__(self, topic: str, partition: int, offset: int, timestamp: int, timestamp_type: str,
                 key: bytes | None, value: bytes | None, headers: tuple[tuple[str, bytes], ...],
                 raw: Mapping[str, Any], undecodable: str | None = None) -> None:
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.timestamp = timestamp
        self.timestamp_type = timestamp_type
        self.raw = raw
        self._key = key
        self._value = value
        self._headers = headers
        self._undecodable = undecodable
        self._record_id: str | None = None

    @property
    def key(self) -> bytes | None:
        return self._key if self._key is not UNREAD else self.decoded()._key

    @property
    def value(self) -> bytes | None:
        return self._value if self._value is not UNREAD else self.decoded()._value

    @property
    def headers(self) -> tuple[tuple[str, bytes], ...]:
        if self._headers is not UNREAD:
            return self._headers
        return self.decoded()._headers

    @property
    def undecodable(self) -> str | None:
        """Why the record could not be decoded; None for a good record."""
        if self._undecodable is UNREAD:
            self.decoded()
        return self._undecodable

    @property
    def is_lazy(self) -> bool:
        """True when key, value and headers are decoded on each read, not held by the record."""
        return self._value is UNREAD

    @property
    def record_id(self) -> str:
        """`{topic}-{partition}-{offset}`: unique per record within a cluster."""
        return self._record_id or f"{self.topic}-{self.partition}-{self.offset}"

    def decoded(self) -> KafkaRecord:
        """This record with key, value and headers decoded (itself when it already is); a record that
        cannot be decoded comes back with `undecodable` set and no key, value or headers."""
        if self._value is not UNREAD:
            return self
        raw = self.raw
        a2b = binascii.a2b_base64
        view = KafkaRecord.__new__(KafkaRecord)
        view.topic, view.partition, view.offset = self.topic, self.partition, self.offset
        view.timestamp, view.timestamp_type, view.raw = self.timestamp, self.timestamp_type, raw
        view._record_id = f"{self.topic}-{self.partition}-{self.offset}"
        try:
            key = raw.get("key")
            view._key = None if key is None else a2b(key, strict_mode=True) if type(key) is str else _b64(key, "key")
            value = raw.get("value")
            view._value = (None if value is None else a2b(value, strict_mode=True) if type(value) is str
                           else _b64(value, "value"))
            headers = raw.get("headers")
            view._headers = () if headers is None else decode_headers(headers)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            view._key = view._value = None
            view._headers = ()
            view._undecodable = self._undecodable = f"{type(exc).__name__}: {exc}"[:500]
            return view
        view._undecodable = self._undecodable = None
        return view

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

    def _fields(self) -> tuple[Any, ...]:
        return (self.topic, self.partition, self.offset, self.timestamp, self.timestamp_type, self.key,
                self.value, self.headers, self.undecodable)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, KafkaRecord) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"KafkaRecord(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, "
                f"timestamp={self.timestamp}, timestamp_type={self.timestamp_type!r}, key={self.key!r}, "
                f"value={self.value!r}, headers={self.headers!r}, undecodable={self.undecodable!r})")


# An entry of `KafkaBatch.items`: a record's dict exactly as the event holds it, whose position `decode_event`
# checked (an exact dict whose topic, partition and offset are an exact str and ints), or a KafkaRecord for
# anything else. `record_of` makes the KafkaRecord of either (the timestamp fields read as `_decode` reads them).
Entry = dict[str, Any] | KafkaRecord
# A run of records of one topic and partition, in `items` order: (topic, partition, their offsets).
Run = tuple[str, int, list[int]]


@frozen
class KafkaBatch:
    """A decoded event: every record in delivery order (per partition, partitions as delivered).

    `items` holds each record as an `Entry`: a record whose dict has a well-typed position stays that dict,
    with no KafkaRecord made for it, because the fast path (bridge.fast_path) reads the dict and sends a
    plain record's messages without one. `records` is the same records as KafkaRecords, made on first
    read and then kept (lazy records: see KafkaRecord). `runs`: every record's position, a run of neighbours
    with the same topic and partition at a time (a run ends where either is not == to the record's before
    it), as `decode_event` read them; bridge.audit.batch_id_of_runs makes the batch id of them."""

    event_source: str
    event_source_arn: str | None
    items: tuple[Entry, ...]
    runs: tuple[Run, ...] = field(compare=False, repr=False)
    redrive: Redrive | None = None  # set for a redrive invocation (the event's `bridgeRedrive` map)
    bootstrap_servers: str | None = None  # the event's `bootstrapServers` (comma-separated host:port)
    _records: tuple[KafkaRecord, ...] | None = field(default=None, init=False, compare=False, repr=False)

    @property
    def records(self) -> tuple[KafkaRecord, ...]:
        """Every record as a KafkaRecord, in `items` order (made once, on first read)."""
        made = self._records
        if made is None:
            made = tuple(map(record_of, self.items))
            object.__setattr__(self, "_records", made)
        return made


def record_of(entry: Entry) -> KafkaRecord:
    """The KafkaRecord of a `KafkaBatch.items` entry: for a dict, the lazy record `decode_record` makes of it (a
    new one on each call: equal, not identical); a KafkaRecord is itself."""
    if type(entry) is not dict:
        return entry  # type: ignore[return-value]
    # the positions were checked by decode_event, as `_decode` checks them
    return _lazy_record(entry, entry["topic"], entry["partition"], entry["offset"])


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
    items: list[Entry] = []
    append = items.append
    runs: list[Run] = []
    run_topic: Any = None
    run_partition: Any = None
    offsets: list[int] = []
    for partition_key, entries in event["records"].items():
        for item in entries if isinstance(entries, list) else [entries]:
            # `_decode`'s position checks inline for what parsed JSON holds (exact dict, str and int), without its
            # calls: such a record stays its dict (`record_of` makes its lazy KafkaRecord, timestamp included, when
            # one is needed); anything else, and every error, goes through decode_record.
            if type(item) is dict:
                try:  # subscripts, not get(): Lambda's records always carry all three
                    topic, partition, offset = item["topic"], item["partition"], item["offset"]
                except KeyError:
                    topic = None
                if type(topic) is str and type(partition) is int and type(offset) is int:
                    append(item)
                    if partition != run_partition or topic != run_topic:
                        run_topic, run_partition, offsets = topic, partition, []
                        runs.append((topic, partition, offsets))
                    offsets.append(offset)
                    continue
            record = decode_record(item, str(partition_key))
            append(record)
            topic, partition = record.topic, record.partition
            if partition != run_partition or topic != run_topic:
                run_topic, run_partition, offsets = topic, partition, []
                runs.append((topic, partition, offsets))
            offsets.append(record.offset)
    arn = event.get("eventSourceArn")
    servers = event.get("bootstrapServers")
    return KafkaBatch(str(event["eventSource"]), arn if isinstance(arn, str) else None, tuple(items), tuple(runs),
                      redrive, servers if isinstance(servers, str) else None)


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
    """A lazy record: its position checked now, its key, value and headers when first decoded."""
    # `type(...) is dict` first: the event is parsed JSON, and an ABC isinstance costs more than the rest
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise TypeError(f"record is a {type(raw).__name__}, not an object")
    return _lazy_record(raw, _require_str(raw, "topic"), _require_int(raw, "partition"), _require_int(raw, "offset"))


def _lazy_record(raw: Mapping[str, Any], topic: str, partition: int, offset: int) -> KafkaRecord:
    """A KafkaRecord of an event's record whose positions are checked: key, value and headers decoded on first
    read. Lambda's records always carry both timestamp fields; an odd one comes out as `_int_or`/`str` make it."""
    record = KafkaRecord.__new__(KafkaRecord)
    record.topic, record.partition, record.offset = topic, partition, offset
    timestamp = raw.get("timestamp", 0)
    record.timestamp = timestamp if type(timestamp) is int else _int_or(raw, "timestamp", 0)
    timestamp_type = raw.get("timestampType", "")
    record.timestamp_type = timestamp_type if type(timestamp_type) is str else str(timestamp_type)
    record.raw = raw
    record._key = record._value = record._headers = record._undecodable = UNREAD
    record._record_id = None
    return record


def _b64(data: Any, what: str) -> bytes | None:
    if data is None:
        return None
    if not isinstance(data, str):
        raise TypeError(f"{what} is a {type(data).__name__}, not base64 text")
    # strict_mode rejects what b64decode(validate=True) rejects, without its regex pass over the input
    return binascii.a2b_base64(data, strict_mode=True)


def decode_headers(raw: Any) -> tuple[tuple[str, bytes], ...]:
    """A record's `headers` list as (name, value) pairs in record order (None: no headers); TypeError or
    ValueError when it is not a list of {name: [byte values] | null} objects."""
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
            if values is None:  # a header with a null value (Kafka allows it) decodes to b""
                out.append((text, b""))
                continue
            try:
                data = bytes(values)  # C speed for the common case: a list of ints in 0..255
            except (TypeError, ValueError):
                data = _header_bytes(text, values)  # negative (signed Java) bytes, or not bytes at all
            else:
                # bytes() takes True as 1 and any iterable of ints (a dict's keys, ...); we do not. Only
                # a 0 or 1 byte can hide a bool, so the check of every value's type runs only then.
                if type(values) is not list or ((0 in data or 1 in data)
                                                and set(map(type, values)) != _INT_ONLY):
                    data = _header_bytes(text, values)
            out.append((text, data))
    return tuple(out)


_INT_ONLY = {int}
_isascii = str.isascii


def last_header_values(raw: Any) -> dict[str, bytes]:
    """`dict(decode_headers(raw))`, each header's last value by name, with the same errors: a tight loop for
    what a Kafka client's headers look like as parsed JSON (one name per entry, names in ASCII, values in
    2..255), and `decode_headers` for anything else (null or signed values, a byte that could hide a bool,
    an entry of several names or none, errors)."""
    if type(raw) is list:
        last: dict[str, bytes] = {}
        try:
            for entry in raw:
                # one name per entry, without an items view and its iterator: `name, = entry` raises
                # ValueError for none or several, and a str or list entry fails `entry[name]` (TypeError) or
                # the type check, which leaves it to decode_headers
                (name,) = entry
                values = entry[name]
                # _isascii: str.isascii, which refuses a name that is not a str (TypeError)
                if type(values) is list and _isascii(name):
                    data = bytes(values)
                    if 0 not in data and 1 not in data:  # an int is a memchr; b"\x00" in data costs 7x more
                        last[name] = data
                        continue
                break
            else:
                return last
        except (TypeError, ValueError, KeyError, IndexError):
            pass
    return dict(decode_headers(raw))


def _header_bytes(name: str, values: Any) -> bytes:
    """A header's signed Java byte values as bytes (-1 is 0xFF); ValueError when they are not bytes."""
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
    if type(v) is not str and not isinstance(v, str):
        raise TypeError(f"{name} is not a string")
    return v


def _require_int(raw: Mapping[str, Any], name: str) -> int:
    v = raw[name]
    if type(v) is not int and (isinstance(v, bool) or not isinstance(v, int)):
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
