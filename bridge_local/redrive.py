"""`bridge redrive`: replay parked records from the bridge DLQ once their cause is fixed.

1. Receive the DLQ's messages (short polls, a bounded loop; each message stays invisible for the
   function's timeout plus a margin, and again right before its event is handed over).
2. Keep the ones `--reason` / `--destination` select, up to `--max` records; fetch the documents
   parked in S3 (`record_s3_uri`). A document that cannot be fetched skips that message: reported,
   left in the DLQ.
3. Merge the messages of one record (a record parked for two destinations is two messages) into one
   entry, and the copies of one park (same `park_id`: a DLQ send retried after its answer was lost,
   a batch parked again by the mapping's retry) into one planned park. Nothing a message claims is
   taken on trust: its `park_id` counts only when it equals the id recomputed from the document
   (record id, record bytes, destination, reason; a mismatch is a park of its own, reported and never
   merged), only messages carrying the same record bytes merge, and a document whose `record_id`
   does not name the record it carries is skipped. Build redrive events
   (docs/runtime-contract.md "Redrive"): Lambda's Kafka event shape,
   records grouped by topic-partition in offset order, at most `source.batch_size` records and
   `MAX_EVENT_BYTES` per event, plus the `bridgeRedrive` map of record id -> destinations (null for
   a record parked with no destination: route it normally).
   With a `RedriveLedger` (the checkpoint table, `settings.checkpoints: on`), a message that is an
   exact copy of one an earlier run handed over (same document digest: a DLQ send retried after its
   answer was lost stores byte-identical copies) is deleted, not replayed again, even in a later run
   or past one run's 10,000 messages.
4. Hand each event to the bridge through an injected `Invoke` (the real handler in-process for the
   local stack, `lambda.invoke` on the deployed function in AWS mode) and delete exactly the DLQ
   messages of the events it accepted (it returned), after writing their digests to the ledger.
   What the bridge still cannot deliver it parks
   again as new DLQ messages, so deleting the old ones loses nothing. An event that fails leaves
   its messages in the DLQ, visible again.

Everything but the ports (`ParkedQueue`, `FetchDocument`, `Invoke`, `RedriveLedger`) is pure and unit-tested.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.adapters.dynamodb import (
    PARTITION_KEY,
    REDRIVE_LEDGER_DOCUMENT_PREFIX,
    REDRIVE_LEDGER_RECORD_PREFIX,
    SORT_KEY,
    TTL_ATTRIBUTE,
)
from bridge.config import SQS_MAX_RETENTION_SECONDS
from bridge.parking import document_digest, park_id_of, record_digest
from bridge.records import REDRIVE_KEY

MAX_RECEIVE_MESSAGES = 10  # SQS ReceiveMessage and DeleteMessageBatch take at most 10
# Lambda's synchronous invocation payload is 6 MB; keep room for the event's own keys.
MAX_EVENT_BYTES = 6 * 1024 * 1024 - 64 * 1024
EMPTY_RECEIVES_TO_STOP = 3  # short polls sample SQS servers: one empty answer does not mean empty
DEFAULT_MAX_MESSAGES = 10_000  # bound of the receive loop when --max is not given
MSK_EVENT_SOURCE = "aws:kafka"
# `{topic}-{partition}-{offset}`, partition and offset -1 when unknown (bridge.records.KafkaRecord.record_id)
_RECORD_ID = re.compile(r"(.+)-(-1|\d+)-(-1|\d+)")
SELF_MANAGED_EVENT_SOURCE = "SelfManagedKafka"
# A ledger entry outlives every copy it stands for: copies of one park are sent within one parking call
# and the bridge DLQ keeps a message at most SQS's maximum retention; one day of margin.
LEDGER_TTL_SECONDS = SQS_MAX_RETENTION_SECONDS + 86_400

Invoke = Callable[[dict[str, Any]], Mapping[str, Any]]
"""Hands one event to the bridge and returns its result; raises when the invocation failed."""

FetchDocument = Callable[[str], Mapping[str, Any]]
"""Reads the full parked document behind a `record_s3_uri`; raises DocumentUnavailableError."""


class RedriveError(RuntimeError):
    """A user-facing redrive failure (empty DLQ, nothing selected); one line."""


class InvokeError(RuntimeError):
    """The bridge function failed on a redrive event (FunctionError, or no usable result)."""


class DocumentUnavailableError(RuntimeError):
    """A parked document in the parking bucket could not be read."""


class LedgerUnavailable(RuntimeError):
    """The redrive ledger could not be read or written (raised by the adapter); redrive carries on without it."""


class RedriveLedger(Protocol):
    """Port: which DLQ messages earlier runs handed to the bridge, by the digest of their document
    (`bridge.parking.document_digest`; adapter: `DynamoDbRedriveLedger`, in the checkpoint table)."""

    where: str

    def replayed(self, digests: Sequence[str]) -> set[str]:
        """The digests among these that a run recorded as handed over; raise LedgerUnavailable."""
        ...

    def record(self, digests: Sequence[str]) -> None:
        """Record these digests as handed over; raise LedgerUnavailable."""
        ...

    def replayed_records(self, keys: Sequence[str]) -> dict[str, str]:
        """Record key (`record_contents_key`) -> digest of the record contents a run handed over under it, for
        the keys that have one; raise LedgerUnavailable."""
        ...

    def record_records(self, digests: Mapping[str, str]) -> None:
        """Record which contents (record key -> record digest) are being handed over; raise LedgerUnavailable."""
        ...


class ParkedQueue(Protocol):
    """Port: the bridge DLQ (adapter: `SqsParkedQueue`)."""

    name: str

    def receive(self, visibility_seconds: int) -> list[Mapping[str, Any]]:
        """Up to 10 SQS messages (MessageId, ReceiptHandle, Body), without waiting."""
        ...

    def hold(self, receipt_handles: Sequence[str], visibility_seconds: int) -> None:
        """Keep these messages invisible for `visibility_seconds` more (0 makes them visible now)."""
        ...

    def delete(self, receipt_handles: Sequence[str]) -> int:
        """Delete these messages; return how many were deleted."""
        ...


# --- the parked documents -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ParkedMessage:
    """One bridge DLQ message: one record parked for one destination (or for none)."""

    message_id: str
    receipt_handle: str
    document: Mapping[str, Any]  # the DLQ body (docs/runtime-contract.md "Parked records")

    @property
    def record_id(self) -> str:
        return str(self.document.get("record_id") or "")

    @property
    def reason(self) -> str:
        return str(self.document.get("reason") or "")

    @property
    def claimed_park_id(self) -> str | None:
        """The `park_id` the document claims: trusted only once `verified_park_id` recomputed it."""
        p = self.document.get("park_id")
        return p if isinstance(p, str) and p else None

    @property
    def destination(self) -> str | None:
        d = self.document.get("destination")
        return d if isinstance(d, str) and d else None

    @property
    def detail(self) -> str:
        return str(self.document.get("detail") or "")


@dataclass(frozen=True, slots=True)
class SkippedMessage:
    """A DLQ message that is not redriven this time, and why; it stays in the DLQ."""

    message_id: str
    record_id: str
    why: str


@dataclass
class RedriveEntry:
    """One record to redrive: the record as Lambda delivered it and the destinations to redeliver to."""

    record_id: str
    topic_partition: str
    offset: int
    record: Mapping[str, Any]
    destinations: tuple[str, ...] | None  # None: parked with no destination, route it normally
    event_source_arn: str | None
    messages: list[ParkedMessage] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RedriveBatch:
    """One redrive event and the entries (so the DLQ messages) it carries."""

    event: dict[str, Any]
    entries: tuple[RedriveEntry, ...]

    @property
    def receipt_handles(self) -> list[str]:
        return [m.receipt_handle for e in self.entries for m in e.messages]


def parse_parked(message: Mapping[str, Any]) -> ParkedMessage | SkippedMessage:
    """An SQS message of the bridge DLQ as a ParkedMessage, or a SkippedMessage saying what is wrong."""
    message_id = str(message.get("MessageId", ""))
    try:
        doc = json.loads(str(message.get("Body", "")))
    except ValueError:
        return SkippedMessage(message_id, "?", "body is not JSON: not a parked-record document")
    if not isinstance(doc, dict) or not isinstance(doc.get("record_id"), str):
        return SkippedMessage(message_id, "?", "body has no record_id: not a parked-record document")
    if not isinstance(doc.get("record"), Mapping) and not isinstance(doc.get("record_s3_uri"), str):
        return SkippedMessage(message_id, doc["record_id"], "the document has neither record nor record_s3_uri")
    return ParkedMessage(message_id, str(message.get("ReceiptHandle", "")), doc)


def select(messages: Iterable[ParkedMessage], reasons: Iterable[str] = (), destination: str | None = None,
           max_records: int | None = None) -> tuple[list[ParkedMessage], list[ParkedMessage]]:
    """(selected, not selected): by reason (any of), destination, and at most `max_records` records.

    `--max` counts records, not messages: every selected message of a record already taken is kept.
    """
    wanted = set(reasons)
    taken: dict[str, None] = {}
    chosen: list[ParkedMessage] = []
    rest: list[ParkedMessage] = []
    for m in messages:
        ok = (not wanted or m.reason in wanted) and (destination is None or m.destination == destination)
        key = record_key(m)
        if ok and key not in taken and max_records is not None and len(taken) >= max_records:
            ok = False
        if ok:
            taken[key] = None
            chosen.append(m)
        else:
            rest.append(m)
    return chosen, rest


def resolve_records(messages: Iterable[ParkedMessage], fetch: FetchDocument,
                    ) -> tuple[list[tuple[ParkedMessage, Mapping[str, Any]]], list[SkippedMessage]]:
    """Each message with its record (inline, or from the parking bucket); the ones that cannot be had."""
    resolved: list[tuple[ParkedMessage, Mapping[str, Any]]] = []
    skipped: list[SkippedMessage] = []
    for m in messages:
        record = m.document.get("record")
        if not isinstance(record, Mapping):
            uri = str(m.document.get("record_s3_uri"))
            try:
                full = fetch(uri)
            except DocumentUnavailableError as exc:
                skipped.append(SkippedMessage(m.message_id, m.record_id, str(exc)))
                continue
            expected = m.document.get("record_s3_sha256")
            if not isinstance(expected, str) or document_digest(full) != expected:
                # whoever could replace the object would otherwise choose what gets replayed
                why = "records no record_s3_sha256" if not isinstance(expected, str) else \
                    "does not have the digest recorded when it was parked (replaced since?)"
                skipped.append(SkippedMessage(m.message_id, m.record_id, f"{uri} {why}; not redriven"))
                continue
            record = full.get("record")
            if not isinstance(record, Mapping):
                skipped.append(SkippedMessage(m.message_id, m.record_id, f"{uri} holds no record"))
                continue
        named = _named_record_id(record)
        if named is not None and named != m.record_id:
            # the redrive event would list one record and carry another, which then goes everywhere
            skipped.append(SkippedMessage(m.message_id, m.record_id, f"record_id does not name the record the "
                                          f"document carries ({named}): forged or corrupted; not redriven"))
            continue
        resolved.append((m, record))
    return resolved, skipped


def _named_record_id(record: Mapping[str, Any]) -> str | None:
    """`topic-partition-offset` of a record that has all three (bridge.records.KafkaRecord.record_id)."""
    topic, partition, offset = record.get("topic"), record.get("partition"), record.get("offset")
    if isinstance(topic, str) and topic and _is_int(partition) and _is_int(offset):
        return f"{topic}-{partition}-{offset}"
    return None


def verified_park_id(message: ParkedMessage, record: Mapping[str, Any]) -> str | None:
    """The message's `park_id` when it equals the one recomputed from the document (bridge.parking.park_id_of);
    None when it claims none (parked before park ids existed) or another one (forged or corrupted)."""
    claimed = message.claimed_park_id
    if claimed is None or claimed != park_id_of(message.record_id, record, message.destination, message.reason):
        return None
    return claimed


def park_mismatch(message: ParkedMessage, record: Mapping[str, Any]) -> SkippedMessage | None:
    """A message whose claimed `park_id` is not its document's: replayed as a park of its own, and reported."""
    if message.claimed_park_id is None or verified_park_id(message, record) is not None:
        return None
    return _mismatch(message.message_id, message.record_id, replayed=True)


def _mismatch(message_id: str, record_id: str, replayed: bool) -> SkippedMessage:
    return SkippedMessage(message_id, record_id,
                          "park_id does not match the document (forged or corrupted): not merged with any other "
                          "message, " + ("replayed on its own" if replayed else "and not replayed (skipped, below)"))


def park_key(message: ParkedMessage, record: Mapping[str, Any]) -> str:
    """What one park is: its verified park id, else the DLQ message alone."""
    return verified_park_id(message, record) or f"message:{message.message_id}"


def merge_parked(resolved: Iterable[tuple[ParkedMessage, Mapping[str, Any]]]) -> list[RedriveEntry]:
    """One entry per record, in first-seen order; a record's destinations are the union of its messages'.

    A message parked with no destination (undecodable, unroutable, a trust rejection) makes the entry
    route normally (None): nothing reached any destination when it was parked. A record without a
    known offset (an undecodable one: `<topic>-<partition>--1`) is not identified by its record id,
    which different records share, so each of its DLQ messages is an entry of its own. Messages merge
    only when they carry the same record bytes (a record id names a position, which a re-created topic
    or a planted message can reuse), and a message whose park id does not verify never merges.
    """
    entries: dict[str, RedriveEntry] = {}
    for message, record in resolved:
        key = (f"message:{message.message_id}" if park_mismatch(message, record) is not None
               else f"{record_key(message)}#{record_digest(record)}")
        entry = entries.get(key)
        if entry is None:
            tp, offset = _position(message.record_id, record)
            arn = message.document.get("event_source_arn")
            entry = RedriveEntry(message.record_id, tp, offset, record, (),
                                 arn if isinstance(arn, str) else None)
            entries[key] = entry
        entry.messages.append(message)
        if message.destination is None or entry.destinations is None:
            entry.destinations = None
        elif message.destination not in entry.destinations:
            entry.destinations = (*entry.destinations, message.destination)
    return list(entries.values())


def conflicting_record_ids(entries: Iterable[RedriveEntry]) -> list[str]:
    """Record ids (with an offset) that more than one entry carries: parked with different bytes (a topic
    re-created under the same name, or a planted message); each is replayed on its own, never merged."""
    seen = Counter(e.record_id for e in entries if e.offset >= 0)
    return sorted(r for r, n in seen.items() if n > 1)


def withhold_indistinguishable(entries: list[RedriveEntry]) -> tuple[list[RedriveEntry], list[SkippedMessage]]:
    """(entries to replay, messages withheld): entries that share a record id and timestamp with an entry
    of other bytes are withheld, all of them. The bridge's checkpoints name a record by position and
    timestamp, so whichever were replayed first would make the function skip the others as delivered:
    a planted message could stand in for the genuine park, which would then be deleted unreplayed."""
    groups: dict[tuple[str, str], list[RedriveEntry]] = {}
    for e in entries:
        if e.offset >= 0:
            groups.setdefault((e.record_id, json.dumps(e.record.get("timestamp"))), []).append(e)
    clashing = {id(e) for group in groups.values()
                if len({record_digest(e.record) for e in group}) > 1 for e in group}
    return _withhold(entries, clashing,
                     "parked with different contents at the same position and timestamp (a planted or corrupted "
                     "message): the bridge's checkpoints cannot tell them apart, so none is replayed; inspect them "
                     "(bridge redrive --dry-run --json) and delete from the DLQ the ones that are not genuine")


def _withhold(entries: list[RedriveEntry], clashing: set[int],
              why: str) -> tuple[list[RedriveEntry], list[SkippedMessage]]:
    """The entries whose id() is not in `clashing`, and every DLQ message of the others, skipped for `why`."""
    withheld = [SkippedMessage(m.message_id, e.record_id, why)
                for e in entries if id(e) in clashing for m in e.messages]
    return [e for e in entries if id(e) not in clashing], withheld


def unique_parks(resolved: Iterable[tuple[ParkedMessage, Mapping[str, Any]]]) -> dict[str, ParkedMessage]:
    """The first message of each park (`park_key`), in first-seen order: copies of one park count once."""
    parks: dict[str, ParkedMessage] = {}
    for m, record in resolved:
        parks.setdefault(park_key(m, record), m)
    return parks


def record_key(message: ParkedMessage) -> str:
    """What identifies a parked message's record: its record id, or, when the id has no offset (-1 or
    unreadable), the DLQ message id, since several different records share such an id."""
    match = _RECORD_ID.fullmatch(message.record_id)
    if match is None or int(match.group(3)) < 0:
        return f"message:{message.message_id}"
    return message.record_id


def _position(record_id: str, record: Mapping[str, Any]) -> tuple[str, int]:
    """`topic-partition` and offset: from the record, or from its id when the record is undecodable."""
    topic, partition, offset = record.get("topic"), record.get("partition"), record.get("offset")
    if isinstance(topic, str) and _is_int(partition) and isinstance(offset, int) and _is_int(offset):
        return f"{topic}-{partition}", offset
    match = _RECORD_ID.fullmatch(record_id)
    if match is None:
        return record_id, -1
    return f"{match.group(1)}-{match.group(2)}", int(match.group(3))


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _partition_order(entry: RedriveEntry) -> tuple[str, int, int]:
    topic, _, partition = entry.topic_partition.rpartition("-")
    return topic, int(partition) if partition.isdigit() else -1, entry.offset


def build_events(entries: Iterable[RedriveEntry], batch_size: int,
                 max_event_bytes: int = MAX_EVENT_BYTES) -> list[RedriveBatch]:
    """Redrive events: per event source, topic-partitions in order, offsets ascending; a new event when
    `batch_size` records or `max_event_bytes` would be exceeded (a record alone over it still gets one)
    or when the event already lists the entry's record id."""
    by_source: dict[str | None, list[RedriveEntry]] = {}
    for e in entries:
        by_source.setdefault(e.event_source_arn, []).append(e)
    batches: list[RedriveBatch] = []
    for arn, group in by_source.items():
        current: list[RedriveEntry] = []
        size = 0
        listed: set[str] = set()
        for e in sorted(group, key=_partition_order):
            entry_size = len(json.dumps(e.record)) + len(json.dumps({e.record_id: e.destinations})) + 2
            # An event lists a record id once: entries sharing one (records without an offset) go apart.
            if current and (len(current) >= batch_size or size + entry_size > max_event_bytes
                            or e.record_id in listed):
                batches.append(_batch(arn, current))
                current, size = [], 0
                listed.clear()
            current.append(e)
            listed.add(e.record_id)
            size += entry_size
        if current:
            batches.append(_batch(arn, current))
    return batches


def _batch(arn: str | None, entries: list[RedriveEntry]) -> RedriveBatch:
    records: dict[str, list[Mapping[str, Any]]] = {}
    for e in entries:
        records.setdefault(e.topic_partition, []).append(e.record)
    # MSK events carry the cluster ARN; self-managed Kafka has none (records.py, events.py).
    event: dict[str, Any] = {"eventSource": MSK_EVENT_SOURCE if arn else SELF_MANAGED_EVENT_SOURCE}
    if arn:
        event["eventSourceArn"] = arn
    event["records"] = records
    event[REDRIVE_KEY] = {e.record_id: None if e.destinations is None else list(e.destinations) for e in entries}
    return RedriveBatch(event, tuple(entries))


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedriveOptions:
    """What to redrive and how."""

    batch_size: int
    visibility_seconds: int  # the function's timeout plus a margin
    reasons: tuple[str, ...] = ()
    destination: str | None = None
    max_records: int | None = None
    dry_run: bool = False
    max_messages: int = DEFAULT_MAX_MESSAGES


@dataclass(frozen=True, slots=True)
class FailedEvent:
    """An event the bridge did not accept; its DLQ messages stay."""

    records: int
    messages: int
    error: str


@dataclass
class RedriveReport:
    """What a redrive did (or, dry run, would do)."""

    queue: str
    dry_run: bool
    planned: list[ParkedMessage] = field(default_factory=list)  # selected parks with a record, one message each
    copies: int = 0  # further DLQ messages of a planned park (same park id): replayed once, deleted with it
    records: int = 0  # records in the events
    events: int = 0
    redriven: int = 0  # records handed over successfully
    delivered: Counter[str] = field(default_factory=Counter)
    parked_again: Counter[str] = field(default_factory=Counter)
    deleted: int = 0
    not_deleted: int = 0  # DLQ messages of accepted events that DeleteMessageBatch refused
    skipped: list[SkippedMessage] = field(default_factory=list)
    mismatched: list[SkippedMessage] = field(default_factory=list)  # park id not the document's: own park
    replayed_before: list[ParkedMessage] = field(default_factory=list)  # copies an earlier run handed over
    ledger: str | None = None  # where the ledger is, when there is one
    ledger_error: str | None = None  # the ledger could not be used: copies of earlier runs are replayed again
    conflicts: list[str] = field(default_factory=list)  # record ids replayed with different bytes: each on its own
    failed: list[FailedEvent] = field(default_factory=list)
    not_selected: int = 0  # received, not selected by the filters or --max; left in the DLQ

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (`--json`)."""
        return {
            "queue": self.queue, "dry_run": self.dry_run, "records": self.records, "events": self.events,
            "redriven": self.redriven, "delivered": dict(self.delivered), "parked_again": dict(self.parked_again),
            "copies": self.copies, "dlq_messages_deleted": self.deleted, "dlq_messages_not_deleted": self.not_deleted,
            "not_selected": self.not_selected,
            "planned": [planned_row(m) for m in self.planned],
            "skipped": [{"message_id": s.message_id, "record_id": s.record_id, "why": s.why} for s in self.skipped],
            "mismatched": [{"message_id": s.message_id, "record_id": s.record_id, "why": s.why}
                           for s in self.mismatched],
            "conflicts": self.conflicts,
            "already_replayed": len(self.replayed_before), "ledger": self.ledger, "ledger_error": self.ledger_error,
            "failed": [{"records": f.records, "messages": f.messages, "error": f.error} for f in self.failed],
        }


def planned_row(m: ParkedMessage) -> dict[str, Any]:
    """One row of the dry-run table: record id, reason, destination, detail."""
    return {"record_id": m.record_id, "reason": m.reason, "destination": m.destination, "detail": m.detail}


def receive_all(queue: ParkedQueue, visibility_seconds: int, max_messages: int,
                enough: Callable[[Sequence[Mapping[str, Any]]], bool] = lambda _: False) -> list[Mapping[str, Any]]:
    """Receive until the queue answers empty `EMPTY_RECEIVES_TO_STOP` times running, `max_messages` are
    in hand, or `enough(new messages)` says so. Bounded: every pass adds a message or counts an empty
    answer."""
    seen: dict[str, Mapping[str, Any]] = {}
    empty = 0
    while len(seen) < max_messages and empty < EMPTY_RECEIVES_TO_STOP:
        fresh = [m for m in queue.receive(visibility_seconds) if m.get("MessageId") not in seen]
        if not fresh:
            empty += 1
            continue
        empty = 0
        fresh = fresh[: max_messages - len(seen)]
        for m in fresh:
            seen[str(m.get("MessageId"))] = m
        if enough(fresh):
            break
    return list(seen.values())


def redrive(queue: ParkedQueue, fetch: FetchDocument, invoke: Invoke, options: RedriveOptions,
            ledger: RedriveLedger | None = None) -> RedriveReport:
    """Redrive the selected parked records (see the module docstring); raise RedriveError when there is
    nothing to redrive. Every message not deleted is made visible again before returning."""
    report = RedriveReport(queue.name, options.dry_run, ledger=ledger.where if ledger else None)
    parsed: list[ParkedMessage | SkippedMessage] = []
    record_ids: set[str] = set()

    def enough(fresh: Sequence[Mapping[str, Any]]) -> bool:
        for m in fresh:
            p = parse_parked(m)
            parsed.append(p)
            if isinstance(p, ParkedMessage) and select([p], options.reasons, options.destination)[0]:
                record_ids.add(record_key(p))
        # One record past --max: the messages of the records before it have (most likely) all arrived.
        return options.max_records is not None and len(record_ids) > options.max_records

    received = receive_all(queue, options.visibility_seconds, options.max_messages, enough)
    handled: set[str] = set()
    try:
        if not received:
            raise RedriveError(f"the bridge DLQ {queue.name} is empty: nothing to redrive")
        report.skipped = [p for p in parsed if isinstance(p, SkippedMessage)]
        chosen, rest = select([p for p in parsed if isinstance(p, ParkedMessage)], options.reasons,
                              options.destination, options.max_records)
        report.not_selected = len(rest)
        chosen = _without_replayed(chosen, ledger, report)
        resolved, unavailable = resolve_records(chosen, fetch)
        report.skipped += unavailable
        report.mismatched = [s for m, record in resolved if (s := park_mismatch(m, record)) is not None]
        entries = merge_parked(resolved)
        entries, withheld = withhold_indistinguishable(entries)
        entries, other_run = _without_other_contents(entries, ledger, report)
        withheld += other_run
        # After withholding: a conflict is reported as replayed version by version, which a withheld one is not.
        report.conflicts = conflicting_record_ids(entries)
        report.skipped += withheld
        held = {w.message_id for w in withheld}
        report.mismatched = [_mismatch(s.message_id, s.record_id, replayed=False) if s.message_id in held else s
                             for s in report.mismatched]
        resolved = [(m, r) for m, r in resolved if m.message_id not in held]
        report.planned = list(unique_parks(resolved).values())
        report.copies = len(resolved) - len(report.planned)
        batches = build_events(entries, options.batch_size)
        report.records, report.events = len(entries), len(batches)
        if not entries and not report.replayed_before:
            raise RedriveError(f"no parked record in {queue.name} can be redriven{_describe_filters(options)}: "
                               f"{len(received)} message(s) received, {len(rest)} not selected, "
                               f"{len(report.skipped)} skipped; all left in the DLQ")
        if not options.dry_run:
            copies = [m.receipt_handle for m in report.replayed_before]
            report.deleted += queue.delete(copies) if copies else 0
            handled.update(copies)
            for batch in batches:
                _redrive_batch(queue, invoke, options, batch, report, handled, ledger)
    finally:
        # Visible again now, not at the end of the visibility timeout: a later run sees them.
        queue.hold([h for m in received if (h := str(m.get("ReceiptHandle"))) not in handled], 0)
    return report


def _without_replayed(chosen: list[ParkedMessage], ledger: RedriveLedger | None,
                      report: RedriveReport) -> list[ParkedMessage]:
    """`chosen` less the exact copies of messages an earlier run handed over (into `report.replayed_before`)."""
    if ledger is None or not chosen:
        return chosen
    try:
        done = ledger.replayed(sorted({document_digest(m.document) for m in chosen}))
    except LedgerUnavailable as exc:
        report.ledger_error = str(exc)
        return chosen
    report.replayed_before = [m for m in chosen if document_digest(m.document) in done]
    return [m for m in chosen if document_digest(m.document) not in done]


def record_contents_key(entry: RedriveEntry) -> str:
    """What the function's checkpoints name a record by: its position and timestamp."""
    return f"{entry.record_id}@{json.dumps(entry.record.get('timestamp'))}"


def _without_other_contents(entries: list[RedriveEntry], ledger: RedriveLedger | None,
                            report: RedriveReport) -> tuple[list[RedriveEntry], list[SkippedMessage]]:
    """(entries to replay, messages withheld): an entry whose position and timestamp an earlier run replayed
    with other bytes is withheld. The function's checkpoints would take it for delivered, so a planted
    message replayed first would make the genuine park be skipped and its message deleted."""
    keyed = [e for e in entries if e.offset >= 0]
    if ledger is None or not keyed:
        return entries, []
    try:
        earlier = ledger.replayed_records(sorted({record_contents_key(e) for e in keyed}))
    except LedgerUnavailable as exc:
        report.ledger_error = report.ledger_error or str(exc)
        return entries, []
    clashing = {id(e) for e in keyed if earlier.get(record_contents_key(e), record_digest(e.record))
                != record_digest(e.record)}
    return _withhold(entries, clashing,
                     "an earlier redrive replayed other contents for this position and timestamp, which the "
                     "bridge's checkpoints cannot tell from these (a planted or corrupted message on one side): "
                     "not replayed; inspect it (bridge redrive --dry-run --json) and delete it from the DLQ if it "
                     "is not genuine")


def _redrive_batch(queue: ParkedQueue, invoke: Invoke, options: RedriveOptions, batch: RedriveBatch,
                   report: RedriveReport, handled: set[str], ledger: RedriveLedger | None = None) -> None:
    handles = batch.receipt_handles
    queue.hold(handles, options.visibility_seconds)  # invisible for the whole invocation
    if ledger is not None:
        # before the invocation: a run killed during it still leaves which contents it handed over
        try:
            ledger.record_records({record_contents_key(e): record_digest(e.record)
                                   for e in batch.entries if e.offset >= 0})
        except LedgerUnavailable as exc:
            report.ledger_error = report.ledger_error or str(exc)
    try:
        result = invoke(batch.event)
    except Exception as exc:  # the function's failure, whatever it is, is reported and its messages kept
        report.failed.append(FailedEvent(len(batch.entries), len(handles), f"{type(exc).__name__}: {exc}"))
        return
    summary = result.get("summary") if isinstance(result, Mapping) else None
    if isinstance(summary, Mapping):
        report.delivered.update({str(k): int(v) for k, v in (summary.get("delivered") or {}).items()})
        report.parked_again.update({str(k): int(v) for k, v in (summary.get("parked") or {}).items()})
    report.redriven += len(batch.entries)
    if ledger is not None:
        # before the delete: a run killed between the two leaves copies the next run knows were replayed
        try:
            ledger.record(sorted({document_digest(m.document) for e in batch.entries for m in e.messages}))
        except LedgerUnavailable as exc:
            report.ledger_error = report.ledger_error or str(exc)
    deleted = queue.delete(handles)
    handled.update(handles)  # after the delete: a run interrupted in it releases them (the ledger knows them)
    report.deleted += deleted
    report.not_deleted += len(handles) - deleted  # visible again after the timeout: redriven twice at worst


def _describe_filters(options: RedriveOptions) -> str:
    parts = []
    if options.reasons:
        parts.append(f"reason {' or '.join(options.reasons)}")
    if options.destination:
        parts.append(f"destination {options.destination}")
    return f" with {' and '.join(parts)}" if parts else ""


# --- adapters: SQS, S3, the two transports ------------------------------------------------------


class SqsParkedQueue:
    """The bridge DLQ over a boto3 SQS client (MiniStack locally, SQS in AWS mode)."""

    def __init__(self, sqs: Any, url: str, name: str | None = None) -> None:
        self._sqs = sqs
        self.url = url
        self.name = name or url.rsplit("/", 1)[-1]

    def receive(self, visibility_seconds: int) -> list[Mapping[str, Any]]:
        resp = self._sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=MAX_RECEIVE_MESSAGES,
                                         VisibilityTimeout=visibility_seconds, WaitTimeSeconds=0)
        messages: list[Mapping[str, Any]] = resp.get("Messages", [])
        return messages

    def hold(self, receipt_handles: Sequence[str], visibility_seconds: int) -> None:
        for chunk in _chunks(receipt_handles):
            self._sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": visibility_seconds}
                for i, h in enumerate(chunk)])

    def in_flight(self) -> int:
        """About how many messages are invisible now: received by a run still going, or by one that was
        killed (they reappear when their visibility timeout ends)."""
        name = "ApproximateNumberOfMessagesNotVisible"
        attrs = self._sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=[name])
        return int(attrs.get("Attributes", {}).get(name, 0))

    def delete(self, receipt_handles: Sequence[str]) -> int:
        deleted = 0
        for chunk in _chunks(receipt_handles):
            resp = self._sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)])
            deleted += len(resp.get("Successful", []))
        return deleted


def _chunks(items: Sequence[str], size: int = MAX_RECEIVE_MESSAGES) -> Iterable[Sequence[str]]:
    return (items[i:i + size] for i in range(0, len(items), size))


LEDGER_SHARD_PREFIX = REDRIVE_LEDGER_DOCUMENT_PREFIX  # apart from the function's shards (`topic-partition/n`, ...)
LEDGER_RECORD_PREFIX = REDRIVE_LEDGER_RECORD_PREFIX
LEDGER_DIGEST = "digest"
LEDGER_ENTRY = "r##"  # the table's sort-key shape `<kind>#<destination>#<suffix>` (bridge.adapters.dynamodb)
MAX_BATCH_GET_KEYS = 100  # DynamoDB BatchGetItem
MAX_BATCH_WRITE_ITEMS = 25  # DynamoDB BatchWriteItem
UNPROCESSED_RETRIES = 3


class DynamoDbRedriveLedger:
    """`RedriveLedger` in the checkpoint table: one item per document digest (`shard` = `redriven/<digest>`)
    and per replayed record (`redriven-record/<record id>@<timestamp>`, attribute `digest`), expiring after
    LEDGER_TTL_SECONDS (the table's TTL attribute; an item past it and not yet removed is ignored)."""

    def __init__(self, client: Any, table: str, *, ttl_seconds: int = LEDGER_TTL_SECONDS,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._sleep = sleep
        self.where = f"table {table}"

    def replayed(self, digests: Sequence[str]) -> set[str]:
        return set(self._get(LEDGER_SHARD_PREFIX, digests))

    def record(self, digests: Sequence[str]) -> None:
        self._put(LEDGER_SHARD_PREFIX, dict.fromkeys(digests, ""))

    def replayed_records(self, keys: Sequence[str]) -> dict[str, str]:
        return self._get(LEDGER_RECORD_PREFIX, keys)

    def record_records(self, digests: Mapping[str, str]) -> None:
        self._put(LEDGER_RECORD_PREFIX, digests)

    def _get(self, prefix: str, keys: Sequence[str]) -> dict[str, str]:
        """key -> its `digest` attribute ('' when it has none), for the keys that have an unexpired item."""
        found: dict[str, str] = {}
        now = int(self._clock())
        for chunk in _chunks(keys, MAX_BATCH_GET_KEYS):
            pending: Any = {self._table: {
                "Keys": [{PARTITION_KEY: {"S": prefix + k}, SORT_KEY: {"S": LEDGER_ENTRY}} for k in chunk],
                "ConsistentRead": True, "ProjectionExpression": "#s, #t, #d",
                "ExpressionAttributeNames": {"#s": PARTITION_KEY, "#t": TTL_ATTRIBUTE, "#d": LEDGER_DIGEST}}}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                if attempt:
                    self._sleep(0.05 * 2 ** (attempt - 1))
                resp = self._call("batch_get_item", RequestItems=pending)
                for item in resp.get("Responses", {}).get(self._table, []):
                    if int(item.get(TTL_ATTRIBUTE, {}).get("N", "0")) > now:
                        key = item[PARTITION_KEY]["S"].removeprefix(prefix)
                        found[key] = item.get(LEDGER_DIGEST, {}).get("S", "")
                pending = resp.get("UnprocessedKeys") or {}
                if not pending:
                    break
            if pending:
                raise LedgerUnavailable(f"{self._table}: keys still unprocessed after {UNPROCESSED_RETRIES} retries")
        return found

    def _put(self, prefix: str, items: Mapping[str, str]) -> None:
        expires_at = str(int(self._clock()) + self._ttl_seconds)
        requests = [{"PutRequest": {"Item": {
            PARTITION_KEY: {"S": prefix + k}, SORT_KEY: {"S": LEDGER_ENTRY}, TTL_ATTRIBUTE: {"N": expires_at},
            **({LEDGER_DIGEST: {"S": v}} if v else {})}}} for k, v in items.items()]
        for i in range(0, len(requests), MAX_BATCH_WRITE_ITEMS):
            pending: Any = {self._table: requests[i:i + MAX_BATCH_WRITE_ITEMS]}
            for attempt in range(UNPROCESSED_RETRIES + 1):
                if attempt:
                    self._sleep(0.05 * 2 ** (attempt - 1))
                pending = self._call("batch_write_item", RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
            if pending:
                raise LedgerUnavailable(f"{self._table}: items still unprocessed after {UNPROCESSED_RETRIES} retries")

    def _call(self, operation: str, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - adapters only

        try:
            return getattr(self._client, operation)(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise LedgerUnavailable(f"{self._table}: {operation} refused ({code})") from None
        except BotoCoreError as exc:
            raise LedgerUnavailable(f"{self._table}: {operation} failed ({exc})") from None


def s3_fetcher(s3: Any) -> FetchDocument:
    """Reads `s3://bucket/key` parked documents with a boto3 S3 client."""
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415 - adapters only

    def fetch(uri: str) -> Mapping[str, Any]:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        if not uri.startswith("s3://") or not bucket or not key:
            raise DocumentUnavailableError(f"record_s3_uri {uri!r} is not an s3://bucket/key address")
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "error")
            raise DocumentUnavailableError(f"S3 object {uri} cannot be read ({code})") from None
        except BotoCoreError as exc:
            raise DocumentUnavailableError(f"S3 object {uri} cannot be read ({exc})") from None
        try:
            doc = json.loads(body)
        except ValueError:
            raise DocumentUnavailableError(f"S3 object {uri} is not JSON") from None
        if not isinstance(doc, dict):
            raise DocumentUnavailableError(f"S3 object {uri} is not a parked-record document")
        return doc

    return fetch


def handler_transport(handler: Callable[[dict[str, Any], Any], Any], new_context: Callable[[], Any]) -> Invoke:
    """Local mode: the real handler, in-process, as `bridge invoke` runs it."""

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        result = handler(event, new_context())
        if not isinstance(result, Mapping):
            raise InvokeError(f"the handler returned a {type(result).__name__}, not a result object")
        return result

    return invoke


def lambda_transport(client: Any, function_name: str) -> Invoke:
    """AWS mode: `lambda.invoke` (RequestResponse) on the deployed function; FunctionError raises.

    Give the client a read timeout longer than the function's and no retries: a retried synchronous
    invocation would run the batch twice.
    """

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        resp = client.invoke(FunctionName=function_name, InvocationType="RequestResponse",
                             Payload=json.dumps(event).encode("utf-8"))
        payload = resp["Payload"].read()
        if resp.get("FunctionError"):
            raise InvokeError(f"{function_name} failed ({resp['FunctionError']}): {_error_message(payload)}")
        try:
            result = json.loads(payload)
        except ValueError:
            raise InvokeError(f"{function_name} returned a payload that is not JSON") from None
        if not isinstance(result, Mapping):
            raise InvokeError(f"{function_name} returned a {type(result).__name__}, not a result object")
        return result

    return invoke


def _error_message(payload: bytes) -> str:
    try:
        doc = json.loads(payload)
    except ValueError:
        return payload[:300].decode("utf-8", "replace")
    if isinstance(doc, Mapping):
        return f"{doc.get('errorType', 'Error')}: {str(doc.get('errorMessage', ''))[:300]}"
    return str(doc)[:300]
