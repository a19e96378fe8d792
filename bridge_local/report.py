"""What is in the local stack: queue depths, parked records with reasons, audit events, as tables.

Reading never deletes: messages are received with a short visibility timeout, collected by id
and left in the queue (they are visible again a few seconds later).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.config import BridgeConfig

from bridge_local.provision import LocalClients, parking_bucket_name

PEEK_VISIBILITY_SECONDS = 30  # long enough to page through; reset to 0 once read


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], right: Sequence[int] = ()) -> str:
    """A plain aligned text table; columns listed in `right` are right-aligned (numbers)."""
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def fmt(row: list[str]) -> str:
        padded = (c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
        return "  ".join(padded).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`1 batch`, `2 batches`, `0 records`: a count with its noun in the right number (English nouns take -s,
    or -es after s, x, z, ch and sh; `plural` for any other)."""
    if n == 1:
        return f"1 {noun}"
    if plural is None:
        plural = noun + ("es" if noun.endswith(("s", "x", "z", "ch", "sh")) else "s")
    return f"{n} {plural}"  # no thousands separator: scripts read these numbers with int()


@dataclass(frozen=True, slots=True)
class QueueInfo:
    """One queue the bridge owns and what it holds."""

    name: str
    role: str  # destination, destination DLQ, bridge DLQ, audit, audit DLQ
    url: str
    visible: int
    in_flight: int


def bridge_queues(config: BridgeConfig) -> list[tuple[str, str]]:
    """(physical name, role) of every queue the local stack creates, from the config model."""
    out: list[tuple[str, str]] = []
    for d in config.destinations:
        if d.type == "sqs":
            out.append((d.physical_name(config.prefix), f"destination {d.name}"))
    for d in config.destinations:
        if d.type == "sqs":
            out.append((d.dlq_physical_name(config.prefix), f"DLQ of {d.name}"))
    for d in config.destinations:
        for s in d.subscriptions:
            out.append((config.subscription_dlq_name(d, s.queue), f"DLQ of subscription {d.name} -> {s.queue}"))
    out += [(config.bridge_dlq_name, "bridge DLQ (parked records)"), (config.audit_queue_name, "audit monitor"),
            (config.audit_queue_dlq_name, "DLQ of audit monitor"),
            (config.audit_subscription_dlq_name, "DLQ of subscription audit -> audit monitor")]
    return out


def queue_infos(config: BridgeConfig, clients: LocalClients) -> list[QueueInfo]:
    """Depth of every bridge queue."""
    out = []
    for name, role in bridge_queues(config):
        url = clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = clients.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        out.append(QueueInfo(name, role, url, int(attrs.get("ApproximateNumberOfMessages", 0)),
                             int(attrs.get("ApproximateNumberOfMessagesNotVisible", 0))))
    return out


def resolve_queue(config: BridgeConfig, name: str) -> str:
    """A queue's physical name from a destination name, a physical name, or 'bridge-dlq'/'audit'."""
    aliases = {"bridge-dlq": config.bridge_dlq_name, "dlq": config.bridge_dlq_name,
               "audit": config.audit_queue_name, "audit-dlq": config.audit_queue_dlq_name}
    if name in aliases:
        return aliases[name]
    for d in config.destinations:
        if d.type == "sqs" and name == d.name:
            return d.physical_name(config.prefix)
        if d.type == "sqs" and name == f"{d.name}-dlq":
            return d.dlq_physical_name(config.prefix)
    known = [n for n, _ in bridge_queues(config)]
    if name in known:
        return name
    raise KeyError(f"unknown queue {name!r}. Known: {', '.join(known)} (or the aliases bridge-dlq, audit, "
                   "audit-dlq, or a destination name)")


def peek(clients: LocalClients, url: str, limit: int) -> list[Mapping[str, Any]]:
    """Up to `limit` messages, left in the queue (short visibility timeout, nothing deleted)."""
    seen: dict[str, Mapping[str, Any]] = {}
    while len(seen) < limit:
        resp = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=min(10, limit - len(seen)),
                                           VisibilityTimeout=PEEK_VISIBILITY_SECONDS, WaitTimeSeconds=0,
                                           MessageAttributeNames=["All"], AttributeNames=["All"])
        msgs = resp.get("Messages", [])
        fresh = [m for m in msgs if m["MessageId"] not in seen]
        if not fresh:
            break
        for m in fresh:
            seen[m["MessageId"]] = dict(m)
    handles = [m["ReceiptHandle"] for m in seen.values()]
    for i in range(0, len(handles), 10):
        clients.sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
            {"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": 0} for j, h in enumerate(handles[i:i + 10])])
    return list(seen.values())


def _attr(message: Mapping[str, Any], name: str) -> str | None:
    a = (message.get("MessageAttributes") or {}).get(name)
    return None if a is None else str(a.get("StringValue"))


@dataclass
class StackSnapshot:
    """Everything the demo summary shows."""

    queues: list[QueueInfo]
    parked_by_reason: Counter[str] = field(default_factory=Counter)
    parked_examples: dict[str, str] = field(default_factory=dict)  # reason -> one detail
    parked_in_s3: int = 0
    audit_events: int = 0
    audit_records: int = 0
    on_failure_objects: int = 0


def snapshot(config: BridgeConfig, clients: LocalClients, read_limit: int = 2000,
             bucket: str | None = None) -> StackSnapshot:
    """Depths of every queue, parked records by reason, audit event totals, on-failure objects."""
    queues = queue_infos(config, clients)
    snap = StackSnapshot(queues)
    by_name = {q.name: q for q in queues}
    dlq = by_name[config.bridge_dlq_name]
    for m in peek(clients, dlq.url, min(read_limit, dlq.visible)):
        body = _json(m.get("Body"))
        reason = _attr(m, "reason") or str(body.get("reason", "?"))
        snap.parked_by_reason[reason] += 1
        snap.parked_examples.setdefault(reason, str(body.get("detail", ""))[:90])
        if "record_s3_uri" in body:
            snap.parked_in_s3 += 1
    audit = by_name[config.audit_queue_name]
    for m in peek(clients, audit.url, min(read_limit, audit.visible)):
        body = _json(m.get("Body"))
        snap.audit_events += 1
        snap.audit_records += int(body.get("records", 0) or 0)
    resp = clients.s3.list_objects_v2(Bucket=bucket or parking_bucket_name(config), Prefix="on-failure/")
    snap.on_failure_objects = int(resp.get("KeyCount", 0))
    return snap


def _json(text: Any) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def destination_rows(config: BridgeConfig, snap: StackSnapshot, delivered: Mapping[str, int]) -> list[list[Any]]:
    """Rows: destination, kind, delivered by the bridge, messages now in its queue (subscribers indented)."""
    depth = {q.name: q.visible + q.in_flight for q in snap.queues}
    subscribed = {s.queue for d in config.destinations for s in d.subscriptions}
    rows: list[list[Any]] = []
    for d in config.destinations:
        if d.name in subscribed and d.name not in delivered:
            continue  # shown under its topic
        kind = f"{d.type}{' fifo' if d.fifo else ''}"
        in_queue = depth.get(d.physical_name(config.prefix), "") if d.type == "sqs" else "-"
        rows.append([d.name, kind, delivered.get(d.name, 0), in_queue])
        for s in d.subscriptions:
            q = config.destination(s.queue)
            how = "filtered" if s.filter_policy else "all"
            rows.append([f"  -> {q.name}", f"subscription ({how})", "", depth.get(q.physical_name(config.prefix), 0)])
    return rows


def render_parked(config: BridgeConfig, snap: StackSnapshot, expected_parked: Mapping[str, int] | None = None,
                  bucket: str | None = None) -> str:
    """Parked records by reason (bridge DLQ), audit events, destination DLQs and on-failure batches: the end of
    the demo's summary and of `bridge inspect`. A table, so a reason reads the same wherever it is printed."""
    reasons = sorted(set(snap.parked_by_reason) | set(expected_parked or {}))
    rows: list[list[Any]] = []
    for r in reasons:
        row: list[Any] = [r, snap.parked_by_reason.get(r, 0)]
        if expected_parked is not None:
            row.append(expected_parked.get(r, 0))
        row.append(snap.parked_examples.get(r, ""))
        rows.append(row)
    heads = ["reason", "parked"] + (["expected"] if expected_parked is not None else []) + ["example detail"]
    parts = [f"Bridge DLQ ({config.bridge_dlq_name}): {sum(snap.parked_by_reason.values())} parked"
             + (f", {snap.parked_in_s3} with the record in S3" if snap.parked_in_s3 else "")]
    if rows:  # no header over nothing
        parts.append(table(heads, rows, right=(1, 2) if expected_parked is not None else (1,)))
    dlqs = [q for q in snap.queues if "DLQ of" in q.role and q.visible]
    parts += ["", f"Audit queue ({config.audit_queue_name}): {snap.audit_events} batch events covering "
              f"{snap.audit_records} records"]
    parts.append("Destination DLQs: " + (", ".join(f"{q.name}={q.visible}" for q in dlqs) if dlqs else "all empty"))
    parts.append(f"On-failure batches in s3://{bucket or parking_bucket_name(config)}/on-failure/: "
                 f"{snap.on_failure_objects}")
    return "\n".join(parts)


def render_summary(config: BridgeConfig, snap: StackSnapshot, delivered: Mapping[str, int],
                   expected_parked: Mapping[str, int] | None = None, bucket: str | None = None) -> str:
    """The demo's closing summary: destinations, parked records by reason, audit events."""
    parts = ["Destinations", table(["destination", "kind", "delivered", "in queue"],
                                   destination_rows(config, snap, delivered), right=(2, 3))]
    parts += ["", render_parked(config, snap, expected_parked, bucket)]
    return "\n".join(parts)
