"""Checkpoints: what a batch already delivered or parked, so a redelivered batch sends only the rest.

`settings.checkpoints: on` (the default in production stages). Before a batch is planned, the
bridge reads the progress recorded for its records; a (record, destination) pair already delivered
is not sent again, and a record already parked for a destination is not parked again. As the batch
goes, each acknowledged send request (up to 10 messages to one destination) and each parking call
is written as one progress entry, so a batch writes about one entry per 10 messages, never one per
record.

Where progress lives: entries are grouped by *shard*, `{topic}-{partition}/{offset // SHARD_OFFSETS}`,
not by batch, so whatever batch or redrive brings a record back finds its progress: the mapping
may redeliver a different cut of the same offsets, `bridge redrive` replays the mapping's S3
on-failure objects (whole batches) and parked records (merged across runs). A record is named by
`{offset}.{timestamp}`: a topic re-created with the same name restarts its offsets, and without the
timestamp its new records would be taken for delivered ones.

What stays possible (docs/decisions.md "Checkpoints"): a send acknowledged but not yet written as
progress when the process dies is sent again, at most `settings.checkpoint_in_flight` requests to
standard destinations of `settings.checkpoint_request_entries` messages each (bridge.service).
Every message keeps its `record-id` attribute so consumers can drop that rest.

Progress is an optimisation of at-least-once, never a condition for delivery: when the store cannot
be read the batch is delivered whole, and when it cannot be written delivery carries on; both are
counted (`checkpoint_errors` in the summary). Redrive invocations skip what was delivered but re-park
what was parked: the parked message they replay is deleted after the invocation, so a park recorded
earlier must not stand in for a new one.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal, Protocol

from bridge.frozen import frozen
from bridge.records import KafkaRecord

SHARD_OFFSETS = 1000  # offsets per progress shard: one shard read per partition per batch, mostly
MAX_TOKENS_PER_ENTRY = 200  # keeps one entry far below DynamoDB's 400 KB item limit (about 30 bytes each)

Kind = Literal["delivered", "parked", "outage"]  # outage: when a batch's outage retries began
NO_DESTINATION = ""  # a record parked for no destination (undecodable, unsigned, unroutable, ...)
# The interpreter's thread switch interval while a checkpointed delivery runs (CPython's default is 5 ms).
# A send thread whose answer has come back waits for the GIL before it can write the checkpoint; behind
# the planner and the FIFO send threads that wait was up to a switch interval per hand-over, all of it inside
# the window a crash re-sends (docs/decisions.md "Five messages per standard request while checkpoints are on").
CHECKPOINTED_SWITCH_INTERVAL_SECONDS = 0.0005


class CheckpointUnavailable(RuntimeError):
    """The progress store could not be read or written (raised by the adapter)."""


@frozen
class ProgressEntry:
    """Records of one shard that reached one destination (or were parked for it)."""

    shard: str
    kind: Kind
    destination: str
    tokens: tuple[str, ...]  # `{offset}.{timestamp}` of each record


class CheckpointStore(Protocol):
    """Port: the progress table (adapter: bridge.adapters.dynamodb.DynamoDbCheckpointStore)."""

    def read(self, shards: Sequence[str]) -> list[ProgressEntry]:
        """Every entry of these shards; raise CheckpointUnavailable."""
        ...

    def write(self, entries: Sequence[ProgressEntry]) -> None:
        """Store these entries; raise CheckpointUnavailable."""
        ...


def shard_of(record: KafkaRecord) -> str | None:
    """The progress shard of a record, or None for a record without a readable position."""
    if record.partition < 0 or record.offset < 0:
        return None
    return f"{record.topic}-{record.partition}/{record.offset // SHARD_OFFSETS}"


def token_of(record: KafkaRecord) -> str:
    return f"{record.offset}.{record.timestamp}"


class BatchProgress:
    """The progress of one batch: what to skip, and where to record what succeeds (thread-safe)."""

    def __init__(self, store: CheckpointStore | None, records: Iterable[KafkaRecord], *, redrive: bool) -> None:
        self._store = store
        self._redrive = redrive
        self._lock = threading.Lock()
        self._done: set[tuple[str, Kind, str, str]] = set()  # (shard, kind, destination, token)
        self.errors = 0
        self.skipped = 0  # (record, destination) pairs not sent or parked again
        if store is None:
            return
        shards = sorted({s for r in records if (s := shard_of(r)) is not None})
        if not shards:
            return
        try:
            entries = store.read(shards)
        except CheckpointUnavailable:
            self.errors += 1  # deliver the whole batch: duplicates at worst, never a loss
            return
        for e in entries:
            if e.kind == "parked" and redrive:
                continue
            self._done.update((e.shard, e.kind, e.destination, t) for t in e.tokens)

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def delivered(self, record: KafkaRecord, destination: str) -> bool:
        """True when this record already reached this destination (count it as skipped)."""
        return self._seen(record, "delivered", destination)

    def parked(self, record: KafkaRecord, destination: str | None) -> bool:
        """True when this record is already parked for this destination (never for a redrive)."""
        return self._seen(record, "parked", destination or NO_DESTINATION)

    def _seen(self, record: KafkaRecord, kind: Kind, destination: str) -> bool:
        shard = shard_of(record)
        if shard is None or (shard, kind, destination, token_of(record)) not in self._done:
            return False
        with self._lock:
            self.skipped += 1
        return True

    def record(self, kind: Kind, done: Iterable[tuple[KafkaRecord, str | None]]) -> None:
        """Write that these (record, destination) pairs were delivered or parked; never raises."""
        if self._store is None:
            return
        entries = progress_entries(kind, done)
        if not entries:
            return
        try:
            self._store.write(entries)
        except CheckpointUnavailable:
            with self._lock:
                self.errors += 1


    def outage_since(self, batch_id: str, now: float) -> float | None:
        """When this batch first failed back for an outage (epoch seconds), recording `now` if it never
        did; None when the store cannot tell (the caller then goes by its own note of the batch's first
        failure: failing back with no bound at all could loop)."""
        if self._store is None:
            return None
        shard = f"outage/{batch_id}"
        try:
            starts = [float(t) for e in self._store.read([shard]) if e.kind == "outage" for t in e.tokens]
            if starts:
                return min(starts)
            self._store.write([ProgressEntry(shard, "outage", NO_DESTINATION, (f"{now:.3f}",))])
        except (CheckpointUnavailable, ValueError):
            with self._lock:
                self.errors += 1
            return None
        return now


def progress_entries(kind: Kind, done: Iterable[tuple[KafkaRecord, str | None]]) -> list[ProgressEntry]:
    """One entry per (shard, destination), at most MAX_TOKENS_PER_ENTRY records each."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for record, destination in done:
        shard = shard_of(record)
        if shard is not None:
            grouped.setdefault((shard, destination or NO_DESTINATION), []).append(token_of(record))
    entries: list[ProgressEntry] = []
    for (shard, destination), tokens in grouped.items():
        for i in range(0, len(tokens), MAX_TOKENS_PER_ENTRY):
            entries.append(ProgressEntry(shard, kind, destination, tuple(tokens[i:i + MAX_TOKENS_PER_ENTRY])))
    return entries


@contextmanager
def prompt_checkpoints(active: bool) -> Iterator[None]:
    """While a checkpointed delivery runs (`active`), hand the GIL over every
    CHECKPOINTED_SWITCH_INTERVAL_SECONDS, so an answered send is checkpointed without waiting out the
    CPU-bound threads' turns; the previous interval is restored afterwards."""
    if not active:
        yield
        return
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, CHECKPOINTED_SWITCH_INTERVAL_SECONDS))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)
