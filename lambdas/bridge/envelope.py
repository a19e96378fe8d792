"""Outgoing messages: body, attributes, correlation id, FIFO group and deduplication ids, billed size.

The formats are the contract's (docs/runtime-contract.md "Outgoing messages"). Everything here is
deterministic in the record, so a redelivered record produces the same message: the same
correlation id (uuid5 of the record id when no header carries one) and, on FIFO destinations, the
same MessageDeduplicationId, which lets SQS drop the duplicate within its 5-minute window.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Collection
from dataclasses import field
from typing import Any

from bridge.config import (
    CLAIM_CHECK_SIZE_ATTRIBUTE,
    FIFO_DEDUP_ID_MAX,
    MAX_MESSAGE_ATTRIBUTES,
    UNVERIFIED_PRODUCER_ATTRIBUTE,
    Destination,
)
from bridge.frozen import lean
from bridge.records import KafkaRecord, utf8_or_none

# Fixed namespace for generated correlation ids: uuid5(namespace, record id) never changes.
CORRELATION_NAMESPACE = uuid.UUID("6f1c3a52-8d0e-5b7a-9c44-2b1e0d6a7f31")
ATTRIBUTE_TYPE = "String"
# Characters of a correlation id taken from its header; a longer one is replaced by the generated id.
MAX_CORRELATION_ID = 256
# The one attribute with another type: the claim-check pointer's size, a Number as the extended
# client libraries write it.
NUMBER_ATTRIBUTES = frozenset({CLAIM_CHECK_SIZE_ATTRIBUTE})

# Characters SQS accepts in bodies and attribute values (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD
# #x10000-#x10FFFF); valid UTF-8 such as NUL is still rejected by SendMessage. Written as the class of the
# characters it rejects (the rest of U+0000-U+10FFFF), not as the negated class of those it accepts: the
# same set, but re's compiler fills its table one accepted code point at a time in Python (~63,000 of
# them, 53 M instructions, about 10 ms of every cold start) where this one has ~2,100.
# tests/unit/test_envelope.py compares the two over every code point.
_SQS_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# The same rule on UTF-8 bytes, checked in C rather than by a regex over every character (about
# 3x faster on large values): no ASCII control byte but tab, LF and CR, and no U+FFFE / U+FFFF.
_ASCII_CONTROL = bytes(b for b in range(32) if b not in (9, 10, 13))
# The control bytes moved to 0x80 and every other byte kept: `data.translate(_CONTROL_MOVED) == data` is
# true exactly when no byte of `data` is one of them. Mapping without deleting is bytes.translate's
# simpler loop, and when nothing changed it hands back the object itself, so `==` compares two pointers:
# about a third fewer instructions than deleting the control bytes and comparing lengths.
_CONTROL_MOVED = bytes(0x80 if b in _ASCII_CONTROL else b for b in range(256))
_NONCHARACTERS = (b"\xef\xbf\xbe", b"\xef\xbf\xbf")
# MessageGroupId: up to 128 characters, letters, digits and punctuation.
_GROUP_ID_RE = re.compile(r"^[A-Za-z0-9!\"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~]{1,128}$")


@lean(slots=True)
class OutgoingMessage:
    """One message for one destination, ready for SendMessageBatch / PublishBatch.

    Not frozen only because a frozen dataclass pays a setattr call per field when built, once per
    record and destination; nothing changes a message after it is built."""

    record_id: str
    destination: str
    body: str
    attributes: tuple[tuple[str, str], ...]
    correlation_id: str
    size: int  # billed bytes: body + attribute names, types and values
    group_id: str | None = None
    dedup_id: str | None = None
    # Whoever built the message keeps here what it needs if delivery fails (the service: the record,
    # route and producer to park it with); delivery never reads it.
    origin: Any = field(default=None, compare=False, repr=False)


def sendable_text(text: str) -> bool:
    """True when SQS (and SNS raw delivery to SQS) accepts every character of the text."""
    if text.isascii():
        # printable ASCII (0x20-0x7E) is the common case, checked without a copy; else tab/LF/CR decide
        return text.isprintable() or sendable_utf8(text.encode("ascii"))
    return _SQS_FORBIDDEN.search(text) is None


def control_free(values: list[bytes]) -> bool:
    """True when none of the values holds an ASCII control byte but tab, LF and CR: the byte half of
    `sendable_utf8` for many values at once (the planning fast path asks it for a run of records before it
    builds their messages). One memchr per such byte over the values joined: memchr takes 16-32 bytes a
    step where translate's table takes one, so over a few dozen values 29 passes cost a third of one
    translate over each."""
    joined = b"".join(values)
    return not any(map(joined.__contains__, _ASCII_CONTROL))


def sendable_utf8(data: bytes) -> bool:
    """`sendable_text` for bytes already known to be valid UTF-8 (which excludes surrogates)."""
    if data.translate(_CONTROL_MOVED) != data:
        return False
    return data.isascii() or not any(n in data for n in _NONCHARACTERS)


def billed_size(body: str, attributes: tuple[tuple[str, str], ...]) -> int:
    """Bytes counted against the message and batch limits: body plus each attribute's name, type, value."""
    size = len(body.encode("utf-8"))
    for name, value in attributes:
        size += len(name.encode("utf-8")) + len(attribute_type(name)) + len(value.encode("utf-8"))
    return size


def attribute_type(name: str) -> str:
    """The DataType of a message attribute the bridge sets: String, except the claim-check size."""
    return "Number" if name in NUMBER_ATTRIBUTES else ATTRIBUTE_TYPE


def correlation_id_for(record: KafkaRecord, header: str) -> str:
    """The record's correlation id: its header when present and usable, else uuid5 of the record id."""
    return correlation_id_from(record.last_header(header), record.record_id)


def correlation_id_from(header_value: bytes | None, record_id: str) -> str:
    """`correlation_id_for` from the last value of the correlation header (None: absent) and the record id."""
    if header_value:
        value = _attribute_text(header_value)
        if value and len(value) <= MAX_CORRELATION_ID:
            return value
    return str(uuid.uuid5(CORRELATION_NAMESPACE, record_id))


def _attribute_text(raw: bytes) -> str | None:
    """The bytes as text when they are UTF-8 that SQS accepts (`sendable_text`), else None."""
    if raw.isascii():  # printable ASCII, the common case, without a copy; else tab/LF/CR decide
        text = raw.decode("ascii")
        return text if text.isprintable() or sendable_utf8(raw) else None
    text_or_none = utf8_or_none(raw)
    return text_or_none if text_or_none is not None and _SQS_FORBIDDEN.search(text_or_none) is None else None


def message_id_for(record: KafkaRecord, producer: str | None, signed_id: str | None) -> str:
    """The `message-id` attribute: `<producer>:<signed id>` for a verified record (a copy of it at any
    offset has the same), else the record id (`topic-partition-offset`; no ':' in either, so the two
    forms never meet)."""
    return f"{producer}:{signed_id}" if producer and signed_id else record.record_id


def content_digest(record: KafkaRecord) -> str:
    """sha256 over the record's key, value and headers (null and empty kept apart)."""
    h = hashlib.sha256()
    for part in (record.key, record.value):
        h.update(b"-" if part is None else hashlib.sha256(part).digest())
    for name, value in record.headers:
        h.update(b"\0" + name.encode("utf-8") + b"\0" + hashlib.sha256(value).digest())
    return h.hexdigest()


def dedup_id_for(record: KafkaRecord, destination: str, message_id: str | None = None) -> str:
    """FIFO MessageDeduplicationId, hex sha256 of:
    - a verified record: its `message-id` attribute and the destination, so a replayed copy of a signed
      record is dropped by SQS within its 5-minute window;
    - any other: topic, partition, offset, destination and the content digest, so a different record
      that lands on a position seen before (a recreated topic, a redrive) is never dropped as its twin.
    """
    if message_id is not None:
        text = f"message\0{message_id}\0{destination}"
    else:
        text = f"{record.topic}\0{record.partition}\0{record.offset}\0{destination}\0{content_digest(record)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:FIFO_DEDUP_ID_MAX]


def group_id_for(record: KafkaRecord, destination: Destination) -> str:
    """FIFO MessageGroupId from `destination.group_id`; no key/header falls back to topic-partition.

    A source value SQS would refuse (too long, spaces, non-ASCII, not UTF-8) becomes its sha256 hex,
    so records that share it still share a group and keep their order.
    """
    source = destination.group_id
    fallback = f"{record.topic}-{record.partition}"
    raw: bytes | None
    if source == "key":
        raw = record.key
    elif source == "topic":
        raw = record.topic.encode("utf-8")
    elif source == "partition":
        raw = fallback.encode("utf-8")
    elif source.startswith("header:"):
        raw = record.last_header(source.removeprefix("header:"))
    else:  # static:<value>
        raw = source.removeprefix("static:").encode("utf-8")
    if not raw:
        raw = fallback.encode("utf-8")
    text = utf8_or_none(raw)
    if text is not None and _GROUP_ID_RE.fullmatch(text):  # `$` alone matches before a final newline
        return text
    return hashlib.sha256(raw).hexdigest()


def build_message(record: KafkaRecord, destination: Destination, *, producer: str | None,
                  correlation_id: str, signature_header: str, verified: bool = False,
                  signed_id: str | None = None) -> OutgoingMessage:
    """The message for one record and destination, per the contract.

    `signature_header` (settings.signature_header) is the producer's signature: it never leaves the
    bridge, so an envelope does not carry it. `verified`: the producer's signature was checked (then
    `signed_id` is its signed message id); an unverified attribution never looks like a verified one.
    The bridge builds through a `MessageFactory` per destination; this is the same, for one message.
    """
    return MessageFactory(destination, signature_header).build(
        record, producer=producer, correlation_id=correlation_id, verified=verified, signed_id=signed_id)


_new = object.__new__


def _len_utf8(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


# Billed bytes of the reserved attributes' names and types (their values vary per message).
_RESERVED_OVERHEAD = sum(len(n) + len(ATTRIBUTE_TYPE) for n in ("correlation-id", "record-id", "message-id"))
_ENCODING_OVERHEAD = len("content-encoding") + len(ATTRIBUTE_TYPE)  # and the encoding's name


class MessageFactory:
    """`build_message` for one destination, with what depends only on the destination and the settings
    (body kind, header attributes and the billed bytes of their names and types) worked out once: the
    bridge builds one per destination at cold start and one message per record with it."""

    __slots__ = ("_envelope", "_fifo", "_headers", "_name", "_omit", "destination")

    def __init__(self, destination: Destination, signature_header: str) -> None:
        self.destination = destination
        self._name = destination.name
        self._envelope = destination.body == "envelope"
        self._fifo = destination.fifo
        self._omit = (signature_header,)
        # (header name, billed bytes of its attribute name and type)
        self._headers = tuple((name, len(name.encode("utf-8")) + len(attribute_type(name)))
                              for name in destination.header_attributes)

    def build(self, record: KafkaRecord, *, producer: str | None, correlation_id: str, verified: bool = False,
              signed_id: str | None = None) -> OutgoingMessage:
        """The message for `record` (decoded: see KafkaRecord.decoded), as `build_message` says."""
        encoding: str | None = None
        if self._envelope:
            body = envelope_body(record, producer, correlation_id, omit_headers=self._omit, verified=verified)
            body_bytes = _len_utf8(body)
        else:
            value = record.value
            if value:
                try:
                    body = value.decode("utf-8")
                except UnicodeDecodeError:
                    body = ""
                if body and sendable_utf8(value):
                    body_bytes = len(value)  # a raw text body is the value's own UTF-8
                else:
                    body, encoding = base64.b64encode(value).decode("ascii"), "base64"
                    body_bytes = len(body)
            else:  # SQS and SNS refuse an empty body: see raw_body
                body, encoding, body_bytes = "null", "null" if value is None else "empty", 4
        record_id = record.record_id
        message_id = f"{producer}:{signed_id}" if verified and producer and signed_id else record_id
        attrs = [("correlation-id", correlation_id), ("record-id", record_id), ("message-id", message_id)]
        size = (body_bytes + _RESERVED_OVERHEAD
                + (len(correlation_id) if correlation_id.isascii() else len(correlation_id.encode("utf-8")))
                + (len(record_id) if record_id.isascii() else len(record_id.encode("utf-8"))) * 2)
        if message_id is not record_id:  # `message-id` is a verified producer's id, not the record id
            size += _len_utf8(message_id) - _len_utf8(record_id)
        if producer:
            name = "producer" if verified else UNVERIFIED_PRODUCER_ATTRIBUTE
            attrs.append((name, producer))
            size += len(name) + len(ATTRIBUTE_TYPE) + _len_utf8(producer)
        if encoding:
            attrs.append(("content-encoding", encoding))
            size += len("content-encoding") + len(ATTRIBUTE_TYPE) + len(encoding)
        if self._headers:
            last = dict(record.headers)  # name -> last value, the one Kafka clients treat as current
            for name, overhead in self._headers:
                if len(attrs) >= MAX_MESSAGE_ATTRIBUTES:
                    break
                raw = last.get(name)
                if raw and (text := utf8_or_none(raw)) and sendable_text(text):
                    attrs.append((name, text))
                    size += overhead + len(raw)  # the text's UTF-8
        if not self._fifo:
            return OutgoingMessage(record_id, self._name, body, tuple(attrs), correlation_id, size)
        return OutgoingMessage(record_id, self._name, body, tuple(attrs), correlation_id, size,
                               group_id_for(record, self.destination),
                               dedup_id_for(record, self._name, message_id if verified and signed_id else None))

    @property
    def header_attributes(self) -> tuple[tuple[str, int], ...]:
        """The destination's header attributes: (header name, billed bytes of its attribute's name and type)."""
        return self._headers

    @property
    def plain(self) -> bool:
        """Whether `plain_message` builds this destination's messages: a raw body on a standard queue or topic."""
        return not self._envelope and not self._fifo

    def plain_message(self, value: bytes | None, record_id: str, correlation_id: str, last: dict[str, bytes],
                      producer: str | None, control_checked: bool = False) -> OutgoingMessage:
        """`build` for the planning fast path (bridge.fast_path) on a `plain` destination, for a record
        whose producer is not verified: from its decoded value, record id and last value of each header
        (`last`). `control_checked`: the value is known to hold no control byte SQS refuses (`control_free`
        said so for it and its neighbours), which leaves only UTF-8 and the noncharacters to check here.
        The same message `build` makes, with less to decide per record; tests/unit/test_fast_path.py
        compares the two byte for byte."""
        # The attributes as a tuple from the start (a list and its copy cost more than a tuple added to)
        if value:
            try:
                body = value.decode("utf-8")
            except UnicodeDecodeError:
                body = ""
            # sendable_utf8 inline, with the str's own ASCII flag instead of a scan of the bytes
            if body and (control_checked or value.translate(_CONTROL_MOVED) == value) and (
                    body.isascii() or not any(n in value for n in _NONCHARACTERS)):
                attrs: tuple[tuple[str, str], ...] = (
                    ("correlation-id", correlation_id), ("record-id", record_id), ("message-id", record_id))
                size = len(value) + _RESERVED_OVERHEAD
            else:
                body = base64.b64encode(value).decode("ascii")
                attrs = (("correlation-id", correlation_id), ("record-id", record_id), ("message-id", record_id),
                         ("content-encoding", "base64"))
                size = len(body) + _RESERVED_OVERHEAD + _ENCODING_OVERHEAD + len("base64")
        else:  # SQS and SNS refuse an empty body: see raw_body
            encoding = "null" if value is None else "empty"
            body = "null"
            attrs = (("correlation-id", correlation_id), ("record-id", record_id), ("message-id", record_id),
                     ("content-encoding", encoding))
            size = 4 + _RESERVED_OVERHEAD + _ENCODING_OVERHEAD + len(encoding)
        size += ((len(correlation_id) if correlation_id.isascii() else len(correlation_id.encode("utf-8")))
                 + (len(record_id) if record_id.isascii() else len(record_id.encode("utf-8"))) * 2)
        if producer:  # before content-encoding, as `build` orders them
            attrs = (*attrs[:3], (UNVERIFIED_PRODUCER_ATTRIBUTE, producer), *attrs[3:])
            size += len(UNVERIFIED_PRODUCER_ATTRIBUTE) + len(ATTRIBUTE_TYPE) + _len_utf8(producer)
        for name, overhead in self._headers:
            raw = last.get(name)
            if not raw:
                continue
            # _attribute_text inline for printable ASCII, the common case
            text = raw.decode("ascii") if raw.isascii() else None
            if text is None or not text.isprintable():
                text = _attribute_text(raw)
                if not text:
                    continue
            if len(attrs) >= MAX_MESSAGE_ATTRIBUTES:
                break
            attrs += ((name, text),)
            size += overhead + len(raw)
        # OutgoingMessage(...) without the class call: type.__call__ runs the dataclass's __init__ through
        # slot_tp_init, about 3.1k instructions a message (callgrind); a new instance and its nine slots
        # set here take a third of that. Every field is set, as __init__ would (tests/unit/test_fast_path.py)
        message = _new(OutgoingMessage)
        message.record_id, message.destination, message.body = record_id, self._name, body
        message.attributes, message.correlation_id, message.size = attrs, correlation_id, size
        message.group_id = message.dedup_id = message.origin = None
        return message


def raw_body(value: bytes | None) -> tuple[str, str | None]:
    """Body text and content-encoding for a raw body.

    UTF-8 text SQS accepts goes as is. Anything else is base64 (`content-encoding: base64`). SQS and
    SNS refuse an empty body, so a null value (a Kafka tombstone) is sent as `null` with
    `content-encoding: null` and an empty value as `null` with `content-encoding: empty`.
    """
    if value is None:
        return "null", "null"
    if not value:
        return "null", "empty"
    text = utf8_or_none(value)
    if text is not None and sendable_utf8(value):
        return text, None
    return base64.b64encode(value).decode("ascii"), "base64"


def envelope_body(record: KafkaRecord, producer: str | None, correlation_id: str,
                  omit_headers: Collection[str] = (), verified: bool = False) -> str:
    """JSON envelope: topic, partition, offset, timestamp, key, headers, correlation_id, producer,
    producer_verified, value.

    `headers` maps each header name to the list of all its values in record order (Kafka header names
    may repeat), except the names in `omit_headers`. `value` is the parsed JSON value when the record is
    JSON, else its text. Bytes that are not UTF-8 are base64 and named: the value in `value_encoding`,
    the key in `key_encoding`, a header in `binary_headers` (then every value of that header is base64).
    """
    doc: dict[str, Any] = {
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp": record.timestamp,
        "key": None,
        "headers": {},
        "correlation_id": correlation_id,
        "producer": producer,
        "producer_verified": verified and producer is not None,
        "value": None,
    }
    if record.key is not None:
        doc["key"], key_b64 = _text_or_base64(record.key)
        if key_b64:
            doc["key_encoding"] = "base64"
    values: dict[str, list[bytes]] = {}
    for name, raw in record.headers:
        if name not in omit_headers:
            values.setdefault(name, []).append(raw)
    binary: list[str] = []
    for name, raws in values.items():
        texts = [utf8_or_none(raw) for raw in raws]
        if all(t is not None for t in texts):
            doc["headers"][name] = texts
        else:  # one encoding per header, so a reader knows how to read every value of it
            doc["headers"][name] = [base64.b64encode(raw).decode("ascii") for raw in raws]
            binary.append(name)
    if binary:
        doc["binary_headers"] = binary
    if record.value is not None:
        text, value_b64 = _text_or_base64(record.value)
        if value_b64:
            doc["value"], doc["value_encoding"] = text, "base64"
        else:
            try:
                doc["value"] = json.loads(text)
            except ValueError:
                doc["value"] = text
    body = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    # json.dumps escapes control characters but not U+FFFE/U+FFFF, which SQS refuses.
    return body if sendable_text(body) else json.dumps(doc, separators=(",", ":"))


def message_attributes(record: KafkaRecord, destination: Destination, producer: str | None,
                       correlation_id: str, content_encoding: str | None, *, verified: bool = False,
                       message_id: str | None = None) -> tuple[tuple[str, str], ...]:
    """Reserved attributes, then the destination's header attributes; never more than the limit.

    `producer` names a verified producer only; an unverified attribution (a claim, or the only producer
    of the topic) goes as `producer-unverified`, so a filter policy on `producer` never matches it.
    A header becomes an attribute only when present, non-empty, UTF-8 and accepted by SQS (the last
    value of a repeated header), so one odd header never makes SQS reject the whole message.
    """
    attrs: list[tuple[str, str]] = [("correlation-id", correlation_id), ("record-id", record.record_id),
                                    ("message-id", message_id or record.record_id)]
    if producer:
        attrs.append(("producer" if verified else UNVERIFIED_PRODUCER_ATTRIBUTE, producer))
    if content_encoding:
        attrs.append(("content-encoding", content_encoding))
    for name in destination.header_attributes:
        if len(attrs) >= MAX_MESSAGE_ATTRIBUTES:
            break
        value = record.last_header_text(name)
        if value and sendable_text(value):
            attrs.append((name, value))
    return tuple(attrs)


def _text_or_base64(data: bytes) -> tuple[str, bool]:
    text = utf8_or_none(data)
    if text is not None:
        return text, False
    return base64.b64encode(data).decode("ascii"), True
