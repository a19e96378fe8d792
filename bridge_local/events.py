"""Kafka records and the Lambda event that carries them, exactly as the event-source mapping builds it.

`build_event` is shared by the poller (records read from the broker) and `bridge make-event`
(records written by hand as JSON). Shape:

    {"eventSource": "aws:kafka", "eventSourceArn": <cluster ARN>, "bootstrapServers": "host:port",
     "records": {"<topic>-<partition>": [{"topic", "partition", "offset", "timestamp",
                 "timestampType": "CREATE_TIME", "key": <base64, absent when null>,
                 "value": <base64 or null>, "headers": [{"<name>": [signed bytes -128..127]}]}]}}

Self-managed Kafka sends `"eventSource": "SelfManagedKafka"` and no `eventSourceArn` (there is no
cluster ARN). A repeated header name stays as separate entries, in order.

Plain records (make-event input, `bridge produce --file`) are JSON objects:

    {"topic": "orders", "key": "o-1" | null, "value": <string | any JSON | null>,
     "value_base64": "<bytes>" (instead of value, for binary), "key_base64": "<bytes>",
     "headers": {"name": "v" | ["v1", "v2"]} | [["name", "v"], ...],
     "partition": 0, "offset": 42, "timestamp": 1767225600000,     (make-event only, optional)
     "producer": "payment-service", "sign": true}                 (produce: as whom; sign defaults to true)

A `value` that is not a string is written as compact JSON.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.records import KAFKA_EVENT_SOURCES

MSK_EVENT_SOURCE = "aws:kafka"
SELF_MANAGED_EVENT_SOURCE = "SelfManagedKafka"


class EventFileError(ValueError):
    """A records or event file is malformed; the message says which file, where, and what is wrong."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    """One Kafka record with its bytes as the broker holds them."""

    topic: str
    partition: int
    offset: int
    timestamp: int  # milliseconds since the epoch
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_type: str = "CREATE_TIME"
    # set when the local mapping decoded the value with a schema (bridge_local.schemas), as Lambda does
    value_schema_metadata: tuple[tuple[str, str], ...] = ()

    @property
    def record_id(self) -> str:
        return f"{self.topic}-{self.partition}-{self.offset}"


@dataclass(frozen=True, slots=True)
class PlainRecord:
    """A record to produce or to put in an event: bytes plus who produces it and whether to sign."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()
    producer: str | None = None
    sign: bool = False
    partition: int | None = None
    offset: int | None = None
    timestamp: int | None = None
    note: str = ""  # what the record is for (scenario bookkeeping); never sent
    forged: bool = False  # sign with a wrong key (demo of invalid_signature)


def signed_bytes(data: bytes) -> list[int]:
    """Bytes as Java's signed byte values, the way Lambda writes header values."""
    return [b - 256 if b > 127 else b for b in data]


def unsigned_bytes(values: Sequence[int]) -> bytes:
    """Inverse of `signed_bytes`."""
    return bytes(v & 0xFF for v in values)


def event_record(record: KafkaRecord) -> dict[str, Any]:
    """One record in Lambda's Kafka event shape."""
    out: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "timestampType": record.timestamp_type,
    }
    if record.key is not None:
        out["key"] = base64.b64encode(record.key).decode("ascii")
    out["value"] = None if record.value is None else base64.b64encode(record.value).decode("ascii")
    # a null header value stays null (the handler's decoder and the signature spec keep it apart
    # from an empty value)
    out["headers"] = [{name: None if value is None else signed_bytes(value)} for name, value in record.headers]
    if record.value_schema_metadata:
        out["valueSchemaMetadata"] = dict(record.value_schema_metadata)
    return out


def build_event(records: Iterable[KafkaRecord], cluster_arn: str | None, bootstrap: str,
                event_source: str = MSK_EVENT_SOURCE) -> dict[str, Any]:
    """Lambda's Kafka event for `records`, grouped by `<topic>-<partition>` in offset order.

    `cluster_arn` is left out for self-managed Kafka, as Lambda does.
    """
    grouped: dict[str, list[KafkaRecord]] = defaultdict(list)
    for r in records:
        grouped[f"{r.topic}-{r.partition}"].append(r)
    event: dict[str, Any] = {"eventSource": event_source}
    if event_source == MSK_EVENT_SOURCE:
        event["eventSourceArn"] = cluster_arn
    event["bootstrapServers"] = bootstrap
    event["records"] = {tp: [event_record(r) for r in sorted(rs, key=lambda r: r.offset)]
                        for tp, rs in grouped.items()}
    return event


def record_ids(event: Mapping[str, Any]) -> set[str]:
    """`topic-partition-offset` of every record, without decoding (works on broken records too)."""
    return {f"{r.get('topic')}-{r.get('partition')}-{r.get('offset')}"
            for items in (event.get("records") or {}).values() for r in items if isinstance(r, Mapping)}


def records_from_event(event: Mapping[str, Any]) -> list[KafkaRecord]:
    """The records of a Lambda Kafka event, decoded (used to re-sign and to count)."""
    out = []
    for tp, items in (event.get("records") or {}).items():
        for i, r in enumerate(items):
            where = f"records[{tp!r}][{i}]"
            try:
                headers = tuple((n, None if v is None else unsigned_bytes(v))
                                for h in r.get("headers", []) for n, v in h.items())
                out.append(KafkaRecord(
                    r["topic"], int(r["partition"]), int(r["offset"]), int(r.get("timestamp", 0)),
                    base64.b64decode(r["key"], validate=True) if r.get("key") is not None else None,
                    base64.b64decode(r["value"], validate=True) if r.get("value") is not None else None,
                    headers, r.get("timestampType", "CREATE_TIME")))
            except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as exc:
                raise EventFileError(f"{where}: {type(exc).__name__}: {exc}") from None
    return out


# --- plain records ------------------------------------------------------------------------------


def _bytes_field(obj: Mapping[str, Any], name: str, where: str) -> bytes | None:
    b64 = obj.get(f"{name}_base64")
    if b64 is not None:
        try:
            return base64.b64decode(b64, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise EventFileError(f"{where}.{name}_base64: not valid base64") from None
    raw = obj.get(name)
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.encode("utf-8")
    return json.dumps(raw, separators=(",", ":")).encode("utf-8")


def _headers_field(raw: Any, where: str) -> tuple[tuple[str, bytes | None], ...]:
    if raw is None:
        return ()
    pairs: list[tuple[str, Any]] = []
    if isinstance(raw, Mapping):
        for k, v in raw.items():
            pairs.extend((k, item) for item in v) if isinstance(v, list) else pairs.append((k, v))
    elif isinstance(raw, list):
        for i, item in enumerate(raw):
            if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
                raise EventFileError(f"{where}.headers[{i}]: expected [\"name\", \"value\"]")
            pairs.append((item[0], item[1]))
    else:
        raise EventFileError(f"{where}.headers: expected an object {{name: value}} or a list of [name, value]")
    out: list[tuple[str, bytes | None]] = []
    for k, v in pairs:
        if v is not None and not isinstance(v, str):
            raise EventFileError(f"{where}.headers.{k}: header values are strings (or null), not {type(v).__name__}")
        out.append((str(k), None if v is None else v.encode("utf-8")))
    return tuple(out)


def plain_record(obj: Any, where: str) -> PlainRecord:
    """Validate one plain record object; errors name `where` (file:line)."""
    if not isinstance(obj, Mapping):
        raise EventFileError(f"{where}: expected a JSON object with at least \"topic\", got {type(obj).__name__}")
    topic = obj.get("topic")
    if not isinstance(topic, str) or not topic:
        raise EventFileError(f"{where}: \"topic\" is required (a Kafka topic name)")
    known = {"topic", "key", "key_base64", "value", "value_base64", "headers", "producer", "sign", "partition",
             "offset", "timestamp", "note"}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise EventFileError(f"{where}: unknown field(s) {unknown}; allowed: {sorted(known)}")
    for k in ("partition", "offset", "timestamp"):
        if obj.get(k) is not None and (not isinstance(obj[k], int) or isinstance(obj[k], bool) or obj[k] < 0):
            raise EventFileError(f"{where}.{k}: must be a whole number >= 0")
    return PlainRecord(topic, _bytes_field(obj, "key", where), _bytes_field(obj, "value", where),
                       # signed unless the record says "sign": false: a file of records for a signing
                       # producer (or `produce --file --producer P`) should not park them all as unsigned
                       _headers_field(obj.get("headers"), where), obj.get("producer"), bool(obj.get("sign", True)),
                       obj.get("partition"), obj.get("offset"), obj.get("timestamp"), str(obj.get("note", "")))


def load_plain_records(path: Path) -> list[PlainRecord]:
    """Records from a `.jsonl` file (one object a line) or a `.json` file (an array of objects)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EventFileError(f"{path}: cannot read ({exc.strerror})") from None
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EventFileError(f"{path}:{n}: not valid JSON ({exc.msg} at column {exc.colno})") from None
            out.append(plain_record(obj, f"{path}:{n}"))
        return out
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventFileError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None
    if isinstance(data, Mapping) and "records" in data and isinstance(data["records"], list):
        data = data["records"]
    if not isinstance(data, list):
        raise EventFileError(f"{path}: expected a JSON array of records (or .jsonl, one record a line)")
    return [plain_record(obj, f"{path}: record [{i}]") for i, obj in enumerate(data)]


def to_kafka_records(plain: Iterable[PlainRecord], now_ms: int | None = None) -> list[KafkaRecord]:
    """Give plain records partitions and offsets (per topic-partition, counting from 0) for an event."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    next_offset: dict[tuple[str, int], int] = defaultdict(int)
    out = []
    for p in plain:
        partition = p.partition or 0
        offset = p.offset if p.offset is not None else next_offset[(p.topic, partition)]
        next_offset[(p.topic, partition)] = offset + 1
        out.append(KafkaRecord(p.topic, partition, offset, p.timestamp or now, p.key, p.value, p.headers))
    return out


def load_event_file(path: Path) -> dict[str, Any]:
    """Read and check a Lambda Kafka test event; EventFileError says what is wrong and where."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise EventFileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        event = json.loads(text)
    except json.JSONDecodeError as exc:
        raise EventFileError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg}).{_EVENT_HINT}") from None
    check_event(event, str(path))
    return dict(event)


_EVENT_HINT = (" Fix: pass a Lambda Kafka test event such as events/route-payments.json, or build one with "
               "bridge make-event")


def check_event(event: Any, where: str) -> None:
    """Structural checks of a Kafka event, with the JSON path of the first problem."""
    if not isinstance(event, Mapping):
        raise EventFileError(f"{where}: the event must be a JSON object")
    src = event.get("eventSource")
    if src is None:
        raise EventFileError(f"{where}: no eventSource field, so this is not a Lambda Kafka event.{_EVENT_HINT}")
    if src not in KAFKA_EVENT_SOURCES:
        raise EventFileError(f"{where}: eventSource is {src!r}; a Kafka event has \"aws:kafka\" or "
                             "\"SelfManagedKafka\" (\"aws:SelfManagedKafka\" is taken too)")
    records = event.get("records")
    if not isinstance(records, Mapping):
        raise EventFileError(f"{where}: \"records\" must be an object {{\"<topic>-<partition>\": [records]}}")
    for tp, items in records.items():
        if not isinstance(items, list):
            raise EventFileError(f"{where}: records[{tp!r}] must be a list")
        for i, r in enumerate(items):
            p = f"{where}: records[{tp!r}][{i}]"
            if not isinstance(r, Mapping):
                raise EventFileError(f"{p}: must be an object")
            for k in ("topic", "partition", "offset"):
                if k not in r:
                    raise EventFileError(f"{p}: missing \"{k}\"")
            if f"{r['topic']}-{r['partition']}" != tp:
                raise EventFileError(f"{p}: topic/partition {r['topic']}-{r['partition']} does not match the "
                                     f"group key {tp!r}")
            # key/value are not checked as base64 here: an event with a broken value is a legitimate
            # test of the handler's decoder (it parks the record as undecodable).
            headers = r.get("headers", [])
            if not isinstance(headers, list):
                raise EventFileError(f"{p}.headers: must be a list of {{name: [byte values]}}")
            for j, h in enumerate(headers):
                if not isinstance(h, Mapping) or not all(
                        v is None or (isinstance(v, list) and all(isinstance(b, int) and -128 <= b <= 127 for b in v))
                        for v in h.values()):
                    raise EventFileError(f"{p}.headers[{j}]: must be {{name: [signed bytes -128..127]}} "
                                         "(or {name: null} for a null value)")
