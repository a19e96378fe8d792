"""The audit trail: one event per batch on the audit topic (docs/runtime-contract.md "Audit event").

`BatchTally` counts while the batch is processed; `audit_document` turns it into the event, capping
the correlation ids at `settings.audit_max_correlation_ids` (and further if needed so the event fits
one SNS message), with `correlation_ids_truncated` saying so.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import field
from operator import ne, or_
from typing import Any

from bridge.frozen import lean
from bridge.records import KafkaRecord, Run

AUDIT_EVENT_TYPE = "bridge.batch"
BATCH_NAMESPACE = uuid.UUID("0b6f3a9e-4c2d-5e81-a7f0-9d3c2b1e4a65")


@lean
class BatchTally:
    """Counts for one batch, filled in by the service as records are routed, delivered and parked."""

    records: int = 0
    delivered: Counter[str] = field(default_factory=Counter)
    parked: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    producers: Counter[str] = field(default_factory=Counter)  # records whose signature verified
    producers_unverified: Counter[str] = field(default_factory=Counter)  # claimed or inferred, not verified
    partitions: dict[str, list[int]] = field(default_factory=dict)
    correlation_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered set
    redrive: bool = False  # the batch is a redrive invocation (`bridge redrive`)
    # Correlation ids beyond this many are not kept, only noted (the audit event lists at most
    # settings.audit_max_correlation_ids): a 10,000-record batch need not hold 10,000 of them.
    max_correlation_ids: int | None = None
    more_correlation_ids: bool = False
    # FIFO entries that failed after a later entry of their group was accepted (bridge.delivery)
    fifo_order_breaks: int = 0

    # (topic, partition) -> [lowest, highest offset]; `partitions` is built from it by `summary`
    spans: dict[tuple[str, int], list[int]] = field(default_factory=dict)
    # matched routes -> records that matched exactly them; added into `routes` by `summary` (counting a
    # tuple per record is one dict update, not one per route)
    route_sets: dict[tuple[str, ...], int] = field(default_factory=dict)

    def see(self, record: KafkaRecord, correlation_id: str) -> None:
        """Count a record of the batch and widen its partition's offset range."""
        self.records += 1
        ids = self.correlation_ids
        if self.max_correlation_ids is None or len(ids) < self.max_correlation_ids:
            ids[correlation_id] = None
        elif not self.more_correlation_ids and correlation_id not in ids:
            self.more_correlation_ids = True
        offset = record.offset
        span = self.spans.get((record.topic, record.partition))
        if span is None:
            self.spans[(record.topic, record.partition)] = [offset, offset]
        elif offset > span[1]:
            span[1] = offset
        elif offset < span[0]:
            span[0] = offset

    def count_routes(self, routes: tuple[str, ...]) -> None:
        """Count a record that matched these routes."""
        if routes:
            self.route_sets[routes] = self.route_sets.get(routes, 0) + 1

    def summary(self, batch_id: str, event_source_arn: str | None) -> dict[str, Any]:
        """The counts of the batch (the handler's `summary`, the audit event without correlation ids)."""
        for routes, n in self.route_sets.items():
            for name in routes:
                self.routes[name] += n
        self.route_sets.clear()
        for (topic, partition), (low, high) in self.spans.items():
            span = self.partitions.setdefault(f"{topic}-{partition}", [low, high])
            span[0], span[1] = min(span[0], low), max(span[1], high)
        self.spans.clear()
        return {
            "batch_id": batch_id,
            "event_source_arn": event_source_arn,
            "records": self.records,
            # by name: their counts come from send threads and the checkpoint writer, in the order requests
            # finished, and an audit event should not change with thread timing (two runs, one body)
            "delivered": dict(sorted(self.delivered.items())),
            "parked": dict(sorted(self.parked.items())),
            "skipped": self.skipped,
            "routes": dict(self.routes),
            "producers": dict(self.producers),
            "producers_unverified": dict(self.producers_unverified),
            "partitions": {k: list(v) for k, v in self.partitions.items()},
            "redrive": self.redrive,
            "fifo_order_breaks": self.fifo_order_breaks,
        }


def batch_id_for(records: tuple[KafkaRecord, ...] | list[KafkaRecord], *, redrive: bool = False) -> str:
    """A batch id that is the same when Lambda redelivers the same batch (uuid5 of its record ids).

    A redrive of the same records gets another id: audit consumers that de-duplicate by batch id must
    not take the replay for a redelivery of the original batch.
    """
    # The record ids joined by newlines (`{topic}-{partition}-{offset}`), built a run of one partition at a
    # time: the event lists a partition's records together, so the prefix is formatted once per run and the
    # offsets are formatted and joined in C (format(x) is f"{x}"). Runs are found with C loops over plain
    # lists (`ne` of neighbours, then list.index), not groupby over a (topic, partition) tuple per record: a
    # run ends where the topic or the partition is not == to the record's before it, as groupby ended it.
    n = len(records)
    if not n:
        text = ""
    else:
        topics = [r.topic for r in records]
        partitions = [r.partition for r in records]
        offsets = list(map(format, [r.offset for r in records]))
        # True where a record's partition is not == to the one before it; the topics too unless all are one
        changed = list(map(ne, partitions, partitions[1:]))
        if topics.count(topics[0]) != n:
            changed = list(map(or_, changed, map(ne, topics, topics[1:])))
        runs = []
        start = 0
        while True:
            try:
                end = changed.index(True, start) + 1
            except ValueError:
                end = n
            prefix = f"{topics[start]}-{partitions[start]}-"
            runs.append(prefix + ("\n" + prefix).join(offsets[start:end] if start or end < n else offsets))
            if end == n:
                break
            start = end
        text = "\n".join(runs)
    return _batch_id(text, redrive)


def batch_id_of_runs(runs: Sequence[Run], *, redrive: bool = False) -> str:
    """`batch_id_for` the records whose positions these runs are (KafkaBatch.runs, which decode_event reads as it
    goes): the same text, without reading each record's position again or finding the runs."""
    lines = []
    for topic, partition, offsets in runs:
        prefix = f"{topic}-{partition}-"
        lines.append(prefix + ("\n" + prefix).join(map(format, offsets)))
    return _batch_id("\n".join(lines), redrive)


def _batch_id(text: str, redrive: bool) -> str:
    digest = hashlib.sha256(("redrive\n" + text if redrive else text).encode("utf-8")).hexdigest()
    return str(uuid.uuid5(BATCH_NAMESPACE, digest))


def audit_document(tally: BatchTally, *, batch_id: str, event_source_arn: str | None, started_at: str,
                   finished_at: str, max_correlation_ids: int, max_bytes: int) -> str:
    """The audit event as JSON text, never larger than `max_bytes`."""
    ids = list(tally.correlation_ids)
    keep = min(len(ids), max_correlation_ids)
    doc: dict[str, Any] = {"type": AUDIT_EVENT_TYPE, **tally.summary(batch_id, event_source_arn)}
    doc.update(started_at=started_at, finished_at=finished_at)
    while True:
        doc["correlation_ids"] = ids[:keep]
        doc["correlation_ids_truncated"] = keep < len(ids) or tally.more_correlation_ids
        body = json.dumps(doc, separators=(",", ":"))
        size = len(body.encode("utf-8"))
        if size <= max_bytes or keep == 0:
            break
        # Shrink in proportion to the overshoot rather than one id at a time.
        keep = max(0, min(keep - 1, int(keep * max_bytes / size) - 1))
    if len(body.encode("utf-8")) > max_bytes:
        # Only a batch over thousands of partitions gets here: keep the totals, drop the details.
        doc["partitions"] = {}
        doc["partitions_truncated"] = True
        body = json.dumps(doc, separators=(",", ":"))
    return body
