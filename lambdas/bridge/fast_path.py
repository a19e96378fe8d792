"""Planning's fast path: records whose handling depends on nothing but their topic, in one tight loop.

The general path (`Bridge._plan`) decodes each record into a view, then reads its correlation id,
attributes it, routes it, looks up its steps, asks trust per destination and builds each message, through
objects that serve every config. In the common case most of that is the same for every record of a
topic, so `PlainTopic` holds it, worked out once per topic, and `plan_plain` does per record only what
varies: decode, correlation id, record id, each destination's raw-body message, the audit counts.

A topic is plain (`plain_topic`) when:
- every route reads the topic only (`Router.topic_decision`) and the decision delivers;
- none of its destinations takes signed records only (accept_from: nothing to verify), and each sends
  the raw body to a standard queue or topic (`MessageFactory.plain`; FIFO and the envelope go general).
Even then a record goes to the general path, unchanged, whenever it is not plain itself:
- it cannot be decoded (parked `undecodable` there), or `decode_event` did not keep it as its dict;
- it carries a producer claim (settings.producer_header: checked, maybe parked `producer_not_allowed`);
- one of its messages exceeds its destination's limit (claim check, or parked `too_large`).
A plain record's value is decoded a few dozen records ahead (`_values_ahead`), so that one memchr set over
them all (`envelope.control_free`) says whether they may go raw, not a table pass over each value.
With checkpoints on, a message a previous attempt at the batch delivered is not sent again (`delivered`:
BatchProgress.delivered), as on the general path. The service takes the general path for a whole batch that
is a redrive.
tests/unit/test_fast_path.py runs both paths over generated records and compares every message, park
and audit count.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bridge.audit import BatchTally
from bridge.config import MAX_MESSAGE_ATTRIBUTES
from bridge.envelope import (
    _RESERVED_OVERHEAD,
    MAX_CORRELATION_ID,
    MessageFactory,
    OutgoingMessage,
    _attribute_text,
    control_free,
    correlation_id_from,
)
from bridge.frozen import frozen
from bridge.records import Entry, KafkaRecord, last_header_values, record_of

# Values decoded ahead of planning (`_values_ahead`), so that one `control_free` call answers for all of them:
# at most this many records, and no more once they hold this many bytes (one large value goes alone).
AHEAD_RECORDS = 64
AHEAD_BYTES = 64 * 1024
# What `_values_ahead` gives for a value the general path would refuse (not text, not base64).
_UNDECODABLE: Any = object()
# Header attribute values whose text `plan_plain` remembers per batch (`header_texts`): at most this many
# values, each of at most HEADER_TEXT_BYTES bytes, so that a batch of distinct large values holds little.
HEADER_TEXTS = 1024
HEADER_TEXT_BYTES = 256


class PlainStep(Protocol):
    """One destination of a plain topic (the service's `_Step`)."""

    @property
    def name(self) -> str: ...
    @property
    def route(self) -> str: ...
    @property
    def target(self) -> Any: ...
    @property
    def factory(self) -> MessageFactory: ...
    @property
    def limit(self) -> int: ...


class MessageSink(Protocol):
    """Where planned messages go (`DeliveryRun.add`, and `add_all` for several to one target in order)."""

    def add(self, target: Any, message: OutgoingMessage) -> None: ...
    def add_all(self, target: Any, messages: Sequence[OutgoingMessage]) -> None: ...


@frozen
class PlainTopic:
    """What every plain record of one topic shares: its routes, steps and inferred producer."""

    routes: tuple[str, ...]
    steps: tuple[PlainStep, ...]
    producer: str | None  # the topic's only producer (unverified), for records without a claim


def plan_plain(items: Sequence[Entry], plain_for: Callable[[str], PlainTopic | None], tally: BatchTally,
               run: MessageSink, general: Callable[[KafkaRecord], None], *,
               correlation_header: str, producer_header: str,
               delivered: Callable[[KafkaRecord, str], bool] | None = None,
               records: Sequence[KafkaRecord] | None = None) -> None:
    """Plan every record of `items` (KafkaBatch.items): the plain ones here, the others through `general` (the
    service's `_plan`), in record order, with the same messages, parks and audit counts as `general` alone
    would give. Only an entry that is a record's dict can be plain; a KafkaRecord entry goes general.
    A plain record gets no KafkaRecord: its messages' origin holds its dict (`record_of` makes the record
    when one is needed), and `general` is given `record_of(entry)`.
    `records` (the batch's KafkaRecords, in `items` order, when they exist already): the record `general`,
    `delivered` and the origin take instead of one made from the entry.
    `delivered(record, destination)` (checkpoints on): True when a previous attempt delivered it, which
    then is not sent again."""
    a2b = binascii.a2b_base64
    add = run.add
    # A topic's only step's messages, handed to `run.add_all` a run of records at a time (at most
    # AHEAD_RECORDS), and always before a record goes general or the topic changes: the run sees every
    # message in the order `add` alone would have given it.
    out: list[OutgoingMessage] = []
    ids = tally.correlation_ids
    cap = tally.max_correlation_ids if tally.max_correlation_ids is not None else float("inf")
    spans = tally.spans
    topic: str | None = None
    plain: PlainTopic | None = None
    steps: tuple[PlainStep, ...] = ()
    # a topic's only step (the common case, without a list per record): its factory's plain_message, and
    # its limit, route and target, looked up once per run of the topic; None with several steps
    build: Callable[..., OutgoingMessage] | None = None
    limit, name, route, target = 0, "", "", None
    producer: str | None = None
    # Plain records of the current run of one topic, counted into the tally when it ends: in the summary's
    # order that is where the first would have put them, since the general path counts a record of a plain
    # topic under the same route set and producer (or not at all: parked before routing).
    counted = 0
    span: list[int] | None = None  # the tally's [low, high] offsets of (topic, span_partition)
    span_partition = 0
    id_prefix = ""  # f"{topic}-{span_partition}-": a record id is it and the offset
    id_ascii = True
    header_attributes: tuple[tuple[str, int], ...] = ()  # the only step's (MessageFactory.header_attributes)
    new = object.__new__
    # Keys already found to be base64 in this batch: a key repeats (one per customer, order, device), and a set
    # lookup costs a fifth of decoding it again only to check it (a str is only ever equal to a str)
    keys_seen: set[str] = set()
    attribute_text = _attribute_text
    # A header attribute's text (or "": not sent) by its value, found once per batch: an attribute header
    # repeats (a tenant, a source), and a dict lookup is half of checking and decoding the value again
    header_texts: dict[bytes, str] = {}
    texts_room, text_bytes = HEADER_TEXTS, HEADER_TEXT_BYTES
    # The values of the next plain records, decoded ahead, last first (`_values_ahead`), which also says that
    # those records are dicts of the current topic; `checked`: none of the values holds a control byte
    ahead: list[Any] = []
    checked = False
    for index, item in enumerate(items):
        if ahead:  # `item` is a dict of the current topic (`_values_ahead`)
            value = ahead.pop()
        else:
            if out:
                run.add_all(target, out)
                out = []
            is_dict = type(item) is dict
            item_topic = item["topic"] if is_dict else item.topic  # type: ignore[index,union-attr]
            if item_topic != topic:
                if counted and plain is not None:
                    _count(tally, plain, counted)
                counted = 0
                topic = item_topic
                plain = plain_for(topic)
                if plain is not None:
                    steps, producer = plain.steps, plain.producer
                    build = None
                    if len(steps) == 1:
                        build = steps[0].factory.plain_message
                        header_attributes = steps[0].factory.header_attributes
                        limit, name, route, target = steps[0].limit, steps[0].name, steps[0].route, steps[0].target
                span = None
            if plain is None or not is_dict:
                general(record_of(item) if records is None else records[index])
                continue
            ahead, checked = _values_ahead(items, index, item_topic)
            value = ahead.pop()
        if value is _UNDECODABLE:
            if out:
                run.add_all(target, out)
                out = []
            general(record_of(item) if records is None else records[index])
            continue
        raw: dict[str, Any] = item  # type: ignore[assignment]  # a dict: only dicts are read ahead
        try:
            # KafkaRecord.decoded()'s checks, without the view: anything it would refuse goes general
            key = raw.get("key")
            if key is not None and key not in keys_seen:
                if type(key) is not str:
                    raise TypeError
                a2b(key, strict_mode=True)
                keys_seen.add(key)
            last = last_header_values(raw.get("headers"))
        except (KeyError, TypeError, ValueError, binascii.Error):
            if out:
                run.add_all(target, out)
                out = []
            general(record_of(item) if records is None else records[index])
            continue
        if producer_header in last:
            if out:
                run.add_all(target, out)
                out = []
            general(record_of(item) if records is None else records[index])
            continue
        partition, offset = raw["partition"], raw["offset"]
        if span is None or span_partition != partition:
            span_partition = partition
            position = (raw["topic"], partition)  # the current topic
            id_prefix = f"{position[0]}-{partition}-"
            id_ascii = id_prefix.isascii()  # and so every record id of the span (an offset is digits)
            span = spans.get(position)
            if span is None:
                span = spans[position] = [offset, offset]
        record_id = f"{id_prefix}{offset}"
        # correlation_id_from, inline for the common case: a printable ASCII header of at most 256 bytes
        header = last.get(correlation_header)
        if (header and len(header) <= MAX_CORRELATION_ID and header.isascii()
                and (correlation_id := header.decode("ascii")).isprintable()):
            pass
        else:
            correlation_id = correlation_id_from(header, record_id)
        if build is not None:
            # MessageFactory.plain_message, inline for the common case (values control-checked, text all ASCII,
            # no producer attribute); anything else is built by plain_message itself
            body = ""
            if checked and producer is None and value:
                try:
                    body = value.decode()
                except UnicodeDecodeError:
                    body = ""  # not text: plain_message sends it as base64
            if body and body.isascii():
                size = (len(value) + _RESERVED_OVERHEAD
                        + (len(correlation_id) if correlation_id.isascii() else len(correlation_id.encode()))
                        + (len(record_id) if id_ascii else len(record_id.encode())) * 2)
                attrs: tuple[tuple[str, str], ...] = (
                    ("correlation-id", correlation_id), ("record-id", record_id), ("message-id", record_id))
                for header_name, overhead in header_attributes:
                    data = last.get(header_name)
                    if not data:
                        continue
                    text = header_texts.get(data)
                    if text is None:
                        text = data.decode("ascii") if data.isascii() else None
                        if text is None or not text.isprintable():
                            text = attribute_text(data) or ""
                        if texts_room and len(data) <= text_bytes:
                            header_texts[data] = text
                            texts_room -= 1
                    if not text:
                        continue
                    if len(attrs) >= MAX_MESSAGE_ATTRIBUTES:
                        break
                    attrs += ((header_name, text),)
                    size += overhead + len(data)
                message = new(OutgoingMessage)
                message.record_id, message.destination, message.body = record_id, name, body
                message.attributes, message.correlation_id, message.size = attrs, correlation_id, size
                message.group_id = message.dedup_id = message.origin = None
            else:
                message = build(value, record_id, correlation_id, last, producer, checked)
            value = None  # not kept while the next values are decoded: a large one would be held twice
            if message.size > limit:
                del message
                if out:
                    run.add_all(target, out)
                    out = []
                general(record_of(item) if records is None else records[index])
                continue
        else:
            messages = [s.factory.plain_message(value, record_id, correlation_id, last, producer, checked)
                        for s in steps]
            value = None
            if any(m.size > s.limit for s, m in zip(steps, messages, strict=True)):
                del messages
                general(record_of(item) if records is None else records[index])
                continue
        # BatchTally.see, inline: correlation ids in record order up to the cap, offset span per partition
        if len(ids) < cap:
            ids[correlation_id] = None
        elif not tally.more_correlation_ids and correlation_id not in ids:
            tally.more_correlation_ids = True
        if offset > span[1]:
            span[1] = offset
        elif offset < span[0]:
            span[0] = offset
        counted += 1
        source = raw if records is None else records[index]  # the service's Origin holds it
        if build is not None:
            if delivered is None or not delivered(record_of(source), name):
                message.origin = (source, route, producer)
                out.append(message)
        else:
            for s, m in zip(steps, messages, strict=True):
                if delivered is None or not delivered(record_of(source), s.name):
                    m.origin = (source, s.route, producer)
                    add(s.target, m)
    if out:
        run.add_all(target, out)
    if counted and plain is not None:
        _count(tally, plain, counted)


def _values_ahead(items: Sequence[Entry], start: int, topic: str) -> tuple[list[Any], bool]:
    """The decoded values of the records of `topic` given as dicts from `start` on (up to AHEAD_RECORDS,
    AHEAD_BYTES), last first, `_UNDECODABLE` for a value KafkaRecord.decoded() would refuse; and whether none of
    them holds a control byte (`control_free`). `plan_plain` takes one per record, in order: every record this
    covers reaches that point, and it stops at the first that would not (another topic, a KafkaRecord entry)."""
    a2b = binascii.a2b_base64
    values: list[Any] = []
    present: list[bytes] = []
    size = 0
    for item in items[start:start + AHEAD_RECORDS]:
        if type(item) is not dict or item["topic"] != topic:
            break
        try:
            value = item.get("value")
            if value is not None:
                if type(value) is not str:
                    raise TypeError
                value = a2b(value, strict_mode=True)
                present.append(value)
                size += len(value)
        except (KeyError, TypeError, ValueError, binascii.Error):
            value = _UNDECODABLE
        values.append(value)
        if size >= AHEAD_BYTES:
            break
    values.reverse()
    return values, control_free(present)


def _count(tally: BatchTally, plain: PlainTopic, records: int) -> None:
    """Count `records` plain records of one topic as `Bridge._plan` does one by one (`BatchTally.see`,
    `count_routes`, the producer)."""
    tally.records += records
    if plain.routes:
        tally.route_sets[plain.routes] = tally.route_sets.get(plain.routes, 0) + records
    if plain.producer:
        tally.producers_unverified[plain.producer] += records
