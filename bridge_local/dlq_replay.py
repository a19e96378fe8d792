"""`bridge replay --from DLQ`: move the messages of a queue's or a subscription's DLQ back to the queue they
failed in, once the cause is fixed. (The bridge DLQ holds parked records, not messages: `bridge redrive`.)

Which DLQ goes back where comes from the config model (`replay_sources`):
- a destination queue's DLQ, and the audit monitor's: its consumers received a message `max_receive_count`
  times without deleting it, and SQS moved it there. It goes back to that queue as it was: body, message
  attributes, FIFO group id.
- a subscription's DLQ (topic -> queue, and audit topic -> audit monitor): SNS could not deliver into the
  queue. SQS message move tasks refuse such DLQs (`StartMessageMoveTask`: "Non-SQS queue sources of
  dead-letter queues, such as ... Amazon SNS topics, are currently not supported"), and republishing to
  the topic would deliver every other subscription a duplicate. So the message goes straight into the
  subscribed queue, as SNS would have delivered it. SNS writes to a subscription's DLQ what it would have
  delivered (LocalStack's snapshot recorded against AWS, test_redrive_policy_sqs_queue_subscription): for a
  raw-delivery subscription the raw body with the published attributes as SQS message attributes, which go
  back unchanged; otherwise the SNS JSON envelope, kept whole (its consumers expect it). An envelope found in a
  raw subscription's DLQ (written before raw delivery was turned on) is unwrapped (body = `Message`,
  attributes from `MessageAttributes`).

Each message is deleted from the DLQ only after the queue accepted the resend, so nothing is lost: a run
stopped between the two (Ctrl-C, a crash) leaves messages that a later run sends again, a duplicate the
summary counts. FIFO resends carry the DLQ message's id as deduplication id: stable for one DLQ message, so a
second resend within SQS's 5-minute deduplication interval is dropped, and never the original deduplication
id, which the queue would drop as a duplicate of the first delivery inside that interval (the reason SQS
itself replaces it when it moves a message to a FIFO DLQ). A FIFO group whose resend failed is held back for
the rest of the run, so its later messages never overtake it. Messages that cannot be resent (an envelope
from another topic, no group id for a FIFO queue) are skipped, left in the DLQ, and listed.

Everything but the `ReplayQueues` port is pure; `SqsReplayQueues` is the adapter over an SQS client.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge.config import SQS_MAX_MESSAGE_BYTES, BridgeConfig

MAX_BATCH_ENTRIES = 10  # SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch, ReceiveMessage
EMPTY_RECEIVES_TO_STOP = 3  # short polls sample SQS servers: one empty answer does not mean empty
DEFAULT_MAX_MESSAGES = 10_000  # bound of one run when --max is not given
HOLD_SECONDS = 300  # received messages stay invisible this long; a killed run's reappear after it
SNS_ENVELOPE_TYPE = "Notification"


class ReplayError(RuntimeError):
    """A user-facing replay failure (unknown DLQ, the bridge DLQ, an empty DLQ); one line."""


@dataclass(frozen=True, slots=True)
class ReplaySource:
    """One DLQ the stack creates and the queue its messages go back to (physical names)."""

    name: str  # what `--from` takes: the DLQ's physical name without the `<name>-<environment>-` prefix
    dlq: str
    target: str
    kind: str  # "queue": a queue's own DLQ (consumers failed); "subscription": an SNS subscription's DLQ
    fifo: bool
    raw: bool = True  # subscription: raw message delivery (unwrap SNS envelopes)
    topic: str | None = None  # subscription: the topic's physical name (envelopes must name it)
    signed_only: bool = False  # the target takes only records signed by `accept_from` producers

    @property
    def what(self) -> str:
        if self.kind == "queue":
            return f"DLQ of queue {self.target} (its consumers failed the messages)"
        return f"DLQ of subscription {self.topic} -> {self.target} (SNS could not deliver into the queue)"


def replay_sources(config: BridgeConfig) -> list[ReplaySource]:
    """Every DLQ `bridge replay` moves back: each created queue's, each subscription's, the audit monitor's and
    the audit subscription's, in the order `bridge inspect` lists them."""
    prefix = config.prefix
    out: list[ReplaySource] = []
    for d in config.destinations:
        if d.type == "sqs" and d.arn is None:
            out.append(ReplaySource(_short(prefix, d.dlq_physical_name(prefix)), d.dlq_physical_name(prefix),
                                    d.physical_name(prefix), "queue", d.fifo, signed_only=bool(d.accept_from)))
    for d in config.destinations:
        for s in d.subscriptions:
            queue = config.destination(s.queue)
            dlq = config.subscription_dlq_name(d, s.queue)
            out.append(ReplaySource(_short(prefix, dlq), dlq, queue.physical_name(prefix), "subscription", d.fifo,
                                    raw=s.raw_message_delivery, topic=d.physical_name(prefix),
                                    signed_only=bool(queue.accept_from)))
    out.append(ReplaySource(_short(prefix, config.audit_queue_dlq_name), config.audit_queue_dlq_name,
                            config.audit_queue_name, "queue", False))
    # infra.constructs.audit subscribes the monitor queue with raw delivery
    out.append(ReplaySource(_short(prefix, config.audit_subscription_dlq_name), config.audit_subscription_dlq_name,
                            config.audit_queue_name, "subscription", False, raw=True, topic=config.audit_topic_name))
    return out


def _short(prefix: str, physical: str) -> str:
    return physical.removeprefix(f"{prefix}-")


def resolve_source(config: BridgeConfig, name: str) -> ReplaySource:
    """The DLQ `--from` names: its short name (`fulfilment-dlq.fifo` or `fulfilment-dlq`), its physical name, or
    `audit-dlq`; ReplayError, listing the known ones, otherwise."""
    sources = replay_sources(config)
    for s in sources:
        if name in (s.name, s.dlq, s.name.removesuffix(".fifo"), s.dlq.removesuffix(".fifo")):
            return s
    if name == "audit-dlq":
        return next(s for s in sources if s.dlq == config.audit_queue_dlq_name)
    if name in ("bridge-dlq", "dlq", config.bridge_dlq_name):
        raise ReplayError(f"{config.bridge_dlq_name} holds parked records, not messages: replay them with bridge "
                          "redrive (each goes only to the destinations it missed)")
    raise ReplayError(f"unknown DLQ {name!r}. Fix: --from one of {', '.join(s.name for s in sources)}")


@dataclass(frozen=True, slots=True)
class Resend:
    """What goes back into the target queue for one DLQ message."""

    message_id: str
    body: str
    attributes: dict[str, dict[str, Any]]
    group_id: str | None = None
    deduplication_id: str | None = None
    unwrapped: bool = False  # an SNS envelope was unwrapped

    @property
    def size(self) -> int:
        """Bytes SQS counts against the message and batch payload limits: body plus attribute names, types and
        values."""
        n = len(self.body.encode("utf-8"))
        for name, a in self.attributes.items():
            n += len(name.encode("utf-8")) + len(str(a["DataType"]).encode("utf-8"))
            n += len(a["BinaryValue"]) if "BinaryValue" in a else len(str(a.get("StringValue", "")).encode("utf-8"))
        return n


def resend_of(message: Mapping[str, Any], source: ReplaySource) -> Resend:
    """The resend of one received DLQ message; ValueError (one line: why it is skipped) when there is none."""
    message_id = str(message["MessageId"])
    body = str(message.get("Body", ""))
    attrs = message.get("Attributes") or {}
    group = attrs.get("MessageGroupId")
    attributes = {n: _sqs_attribute(a) for n, a in (message.get("MessageAttributes") or {}).items()}
    unwrapped = False
    envelope = _sns_envelope(body) if source.kind == "subscription" else None
    if envelope is not None:
        topic = str(envelope.get("TopicArn", "")).rsplit(":", 1)[-1]
        if topic != source.topic:
            raise ValueError(f"an SNS envelope from topic {topic!r}, not {source.topic!r}: not this subscription's")
        if source.raw:
            body = str(envelope["Message"])
            listed = envelope.get("MessageAttributes") or {}
            attributes = {n: _attribute_from_envelope(n, a) for n, a in listed.items()}
            unwrapped = True
        group = group or envelope.get("MessageGroupId")
    if source.fifo and not group:
        raise ValueError("no MessageGroupId on a message of a FIFO DLQ: its order cannot be kept")
    return Resend(message_id, body, attributes, str(group) if source.fifo else None,
                  message_id if source.fifo else None, unwrapped)


def _sns_envelope(body: str) -> dict[str, Any] | None:
    """The SNS JSON envelope a body is, or None (a raw message)."""
    if not body.startswith("{"):
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if isinstance(doc, dict) and doc.get("Type") == SNS_ENVELOPE_TYPE and "TopicArn" in doc and "Message" in doc:
        return doc
    return None


def _sqs_attribute(a: Mapping[str, Any]) -> dict[str, Any]:
    """A received message attribute as SendMessage takes it (the list forms are reserved by SQS)."""
    out: dict[str, Any] = {"DataType": a["DataType"]}
    if "BinaryValue" in a:
        out["BinaryValue"] = a["BinaryValue"]
    else:
        out["StringValue"] = a.get("StringValue", "")
    return out


def _attribute_from_envelope(name: str, a: Mapping[str, Any]) -> dict[str, Any]:
    """An envelope's `{"Type", "Value"}` as SNS raw delivery writes it to SQS (Binary values are base64 there)."""
    kind, value = str(a.get("Type", "String")), str(a.get("Value", ""))
    if kind == "Binary":
        try:
            return {"DataType": kind, "BinaryValue": base64.b64decode(value, validate=True)}
        except (binascii.Error, ValueError):
            raise ValueError(f"message attribute {name!r}: Binary value is not base64") from None
    return {"DataType": kind, "StringValue": value}


class ReplayQueues(Protocol):
    """Port: the DLQ and the queue its messages go back to."""

    def receive(self, limit: int, hold_seconds: int) -> list[Mapping[str, Any]]:
        """Up to `limit` (at most 10) messages of the DLQ, with attributes, invisible for `hold_seconds`."""
        ...

    def send(self, resends: Sequence[Resend]) -> dict[str, str]:
        """Send to the target in one request; returns message id -> error for those not accepted."""
        ...

    def delete(self, receipt_handles: Sequence[str]) -> int:
        """Delete from the DLQ; returns how many were deleted."""
        ...

    def release(self, receipt_handles: Sequence[str]) -> None:
        """Make received messages visible again at once."""
        ...

    def depth(self) -> int | None:
        """About how many messages the DLQ holds (visible), or None when that cannot be had."""
        ...


@dataclass
class ReplayReport:
    """What a replay did (or, in a dry run, would do)."""

    source: ReplaySource
    dry_run: bool
    received: int = 0
    replayed: int = 0
    unwrapped: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (message id, why): left in the DLQ
    failed: list[tuple[str, str]] = field(default_factory=list)  # (message id, error): left in the DLQ
    held_back: int = 0  # FIFO: later messages of a group whose resend failed, left in the DLQ
    not_deleted: int = 0  # resent, then not deleted: a later run sends them again (duplicates)
    interrupted: bool = False
    sent_not_deleted: int = 0  # at an interruption: resent, not yet deleted (a later run duplicates them)
    groups: set[str] = field(default_factory=set)

    def to_json(self) -> dict[str, Any]:
        return {"from": self.source.dlq, "to": self.source.target, "kind": self.source.kind, "dry_run": self.dry_run,
                "received": self.received, "replayed": self.replayed, "unwrapped_sns_envelopes": self.unwrapped,
                "skipped": [{"message_id": m, "why": w} for m, w in self.skipped],
                "failed": [{"message_id": m, "error": e} for m, e in self.failed],
                "held_back": self.held_back, "not_deleted": self.not_deleted, "interrupted": self.interrupted,
                "sent_not_deleted": self.sent_not_deleted, "fifo_groups": len(self.groups)}


Progress = Callable[[ReplayReport], None]


def replay_dlq(queues: ReplayQueues, source: ReplaySource, *, dry_run: bool = False,
               max_messages: int = DEFAULT_MAX_MESSAGES, hold_seconds: int = HOLD_SECONDS,
               progress: Progress | None = None, stopping: Callable[[], bool] = lambda: False) -> ReplayReport:
    """Receive the DLQ's messages (up to `max_messages`), resend each to the target, delete what was resent.

    A dry run receives and converts, sends nothing and releases everything. When `stopping()` turns true (the
    CLI's first Ctrl-C) the run ends after the request in hand, its messages deleted, the rest released. A
    KeyboardInterrupt (a second Ctrl-C) ends it at once: the report says how many were resent but not yet
    deleted, and what was received and not deleted is released; a receive cut short leaves its messages held
    until `hold_seconds` pass."""
    report = ReplayReport(source, dry_run)
    held: dict[str, str] = {}  # message id -> receipt handle: kept invisible until the end, then released
    blocked: set[str] = set()  # FIFO groups whose resend failed in this run
    empty = 0
    in_hand: list[tuple[Resend, str]] = []
    try:
        while report.received < max_messages and empty < EMPTY_RECEIVES_TO_STOP and not stopping():
            messages = queues.receive(min(MAX_BATCH_ENTRIES, max_messages - report.received), hold_seconds)
            fresh = [m for m in messages if str(m["MessageId"]) not in held]
            for m in messages:  # seen again (its hold ran out in a long run): hold it under its new handle
                if str(m["MessageId"]) in held:
                    held[str(m["MessageId"])] = str(m["ReceiptHandle"])
            if not fresh:
                empty += 1
                continue
            empty = 0
            report.received += len(fresh)
            in_hand = []
            for m in fresh:
                try:
                    r = resend_of(m, source)
                except ValueError as exc:
                    report.skipped.append((str(m["MessageId"]), str(exc)))
                    held[str(m["MessageId"])] = str(m["ReceiptHandle"])
                    continue
                if r.group_id is not None:
                    report.groups.add(r.group_id)
                if dry_run:  # counted as it would go, and released at the end
                    report.replayed += 1
                    report.unwrapped += int(r.unwrapped)
                    held[r.message_id] = str(m["ReceiptHandle"])
                    continue
                in_hand.append((r, str(m["ReceiptHandle"])))
            _resend(queues, source, in_hand, report, blocked, held, stopping)
            in_hand = []
            if progress is not None:
                progress(report)
    except KeyboardInterrupt:
        report.interrupted = True
        report.sent_not_deleted = report.not_deleted
        in_hand = [(r, h) for r, h in in_hand if r.message_id not in held]
        for r, handle in in_hand:  # received (some perhaps resent, not deleted): visible again at once
            held.setdefault(r.message_id, handle)
    finally:
        report.interrupted = report.interrupted or stopping()
        if held:
            with contextlib.suppress(Exception):  # their hold ends by itself; nothing is lost
                queues.release(list(held.values()))
    return report


def _resend(queues: ReplayQueues, source: ReplaySource, in_hand: list[tuple[Resend, str]], report: ReplayReport,
            blocked: set[str], held: dict[str, str], stopping: Callable[[], bool]) -> None:
    """Send what is in hand (standard: batches by entries and bytes; FIFO: one request per message, in the order
    received, so a failure never lets a later message of its group overtake it), then delete what was sent."""
    requests = [[item] for item in in_hand] if source.fifo else _batches(in_hand)
    sent: list[str] = []
    for request in requests:
        if stopping():  # what is not sent yet goes back to the DLQ at once
            held.update((r.message_id, handle) for r, handle in request)
            continue
        resends = [r for r, _ in request if not (r.group_id is not None and r.group_id in blocked)]
        for r, handle in request:
            if r not in resends:
                report.held_back += 1
                held[r.message_id] = handle
        if not resends:
            continue
        try:
            failed = queues.send(resends)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # the whole request failed: every message stays in the DLQ
            failed = {r.message_id: f"{type(exc).__name__}: {exc}" for r in resends}
        for r, handle in request:
            if r not in resends:
                continue
            if r.message_id in failed:
                report.failed.append((r.message_id, failed[r.message_id]))
                held[r.message_id] = handle
                if r.group_id is not None:
                    blocked.add(r.group_id)
            else:
                report.replayed += 1
                report.unwrapped += int(r.unwrapped)
                report.not_deleted += 1  # until the delete below says otherwise
                sent.append(handle)
    for i in range(0, len(sent), MAX_BATCH_ENTRIES):
        report.not_deleted -= queues.delete(sent[i:i + MAX_BATCH_ENTRIES])


def _batches(items: list[tuple[Resend, str]]) -> list[list[tuple[Resend, str]]]:
    """SendMessageBatch requests: at most 10 entries and SQS_MAX_MESSAGE_BYTES of payload each."""
    out: list[list[tuple[Resend, str]]] = []
    size = 0
    for item in items:
        if not out or len(out[-1]) == MAX_BATCH_ENTRIES or size + item[0].size > SQS_MAX_MESSAGE_BYTES:
            out.append([])
            size = 0
        out[-1].append(item)
        size += item[0].size
    return out


class SqsReplayQueues:
    """`ReplayQueues` over a boto3 SQS client (the local stack's, or the operator's in AWS mode)."""

    def __init__(self, sqs: Any, dlq_url: str, target_url: str) -> None:
        self._sqs = sqs
        self._dlq = dlq_url
        self._target = target_url

    def receive(self, limit: int, hold_seconds: int) -> list[Mapping[str, Any]]:
        messages: list[Mapping[str, Any]] = self._sqs.receive_message(
            QueueUrl=self._dlq, MaxNumberOfMessages=limit, VisibilityTimeout=hold_seconds, WaitTimeSeconds=1,
            AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages", [])
        return messages

    def send(self, resends: Sequence[Resend]) -> dict[str, str]:
        entries = []
        for i, r in enumerate(resends):
            entry: dict[str, Any] = {"Id": str(i), "MessageBody": r.body}
            if r.attributes:
                entry["MessageAttributes"] = r.attributes
            if r.group_id is not None:
                entry["MessageGroupId"] = r.group_id
            if r.deduplication_id is not None:
                entry["MessageDeduplicationId"] = r.deduplication_id
            entries.append(entry)
        answer = self._sqs.send_message_batch(QueueUrl=self._target, Entries=entries)
        failed = {resends[int(f["Id"])].message_id: f"{f.get('Code')}: {f.get('Message', '')}".strip()
                  for f in answer.get("Failed", [])}
        answered = {int(e["Id"]) for e in [*answer.get("Successful", []), *answer.get("Failed", [])]}
        for i, r in enumerate(resends):  # an entry the answer does not mention did not get in
            if i not in answered:
                failed[r.message_id] = "not in the SendMessageBatch answer"
        return failed

    def delete(self, receipt_handles: Sequence[str]) -> int:
        answer = self._sqs.delete_message_batch(QueueUrl=self._dlq, Entries=[
            {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(receipt_handles)])
        return len(answer.get("Successful", []))

    def release(self, receipt_handles: Sequence[str]) -> None:
        for i in range(0, len(receipt_handles), MAX_BATCH_ENTRIES):
            self._sqs.change_message_visibility_batch(QueueUrl=self._dlq, Entries=[
                {"Id": str(j), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for j, h in enumerate(receipt_handles[i:i + MAX_BATCH_ENTRIES])])

    def depth(self) -> int | None:
        try:
            attrs = self._sqs.get_queue_attributes(QueueUrl=self._dlq, AttributeNames=["ApproximateNumberOfMessages"])
            return int(attrs["Attributes"]["ApproximateNumberOfMessages"])
        except Exception:  # a progress figure only
            return None

