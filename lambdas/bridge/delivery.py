"""Delivery of packed messages to SQS and SNS, with bounded retries, returning typed receipts.

Delivery guarantee: AT LEAST ONCE, implemented here and in `bridge.service`.
- A message is reported delivered only after SQS/SNS acknowledged its entry in a batch response.
- Entries that fail for a reason on AWS's side (throttling, internal errors) and whole calls that
  fail (throttling, connection errors, timeouts) are retried up to `max_delivery_attempts` in
  total, with exponential backoff and full jitter; entries failing by the sender's fault (invalid
  parameters) are not retried, since the same request would fail the same way.
- What still fails comes back as a failed receipt; the service parks it (reason `delivery_failed`)
  with the full record, and if parking fails too the invocation raises, so the event-source mapping
  delivers the batch again.
- A retry or a redelivered batch can therefore send a message twice: consumers of standard queues
  and topics must be idempotent (the `record-id` attribute identifies the record); FIFO
  destinations drop the duplicate within 5 minutes by its deterministic MessageDeduplicationId.

Ordering: on a FIFO destination, messages of one message group are accepted in the order they were
given (Kafka order), retries included, as long as each is delivered. A FIFO destination's messages
are split into lanes by message group (`fifo_lanes`, one per 100 messages up to `max_concurrency`):
a group's messages all go to one lane, in order, and each lane sends its batches one after another,
each finished (retries included) before the next; different lanes run concurrently, so two batches
of one group are never in flight at once.
A batch holds consecutive messages of its lane, several of one group included, so a hot group
(`group_id: static:...`, one big customer) still goes ten messages per request.
SQS/SNS accept the other entries of a request in which one entry failed. Retrying the failed entries
keeps the order only when no later entry of their group was accepted: then they are retried (with
every later entry of the group that failed too, in order). When a later entry of the group was
accepted, the failed one can no longer be placed before it (resending the accepted ones is dropped by
their MessageDeduplicationId, not reordered): the receipt says `order_break`, the message is parked,
and the group's remaining messages of this invocation are held back and parked too, in order
(`HELD_BACK`), so the group is never silently reordered; the service counts the break in its metric
and audit event. The failures that would cause it are prevented before sending: a message too large,
with attributes SQS refuses or text it cannot take is parked before packing (bridge.service).
A message that finally fails when none of its successors was accepted is parked and its group goes on
without it: a later redrive delivers it after its successors. Standard queues and topics promise no
order, and their independent batches go out concurrently (a thread pool of `max_concurrency`).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from bridge.config import MAX_BATCH_ENTRIES, DestinationType
from bridge.envelope import OutgoingMessage
from bridge.packing import MessageTooLargeError

MAX_BACKOFF_MS = 20_000  # one wait never exceeds this, whatever the attempt; keeps a batch inside the timeout
# The code of a FIFO message not sent because an earlier message of its group broke the order.
HELD_BACK = "FifoGroupHeldBack"
MESSAGES_PER_FIFO_LANE = 10 * MAX_BATCH_ENTRIES  # see fifo_lanes


@dataclass(frozen=True, slots=True)
class Target:
    """Where a batch goes: a destination, the bridge DLQ or the audit topic."""

    name: str
    type: DestinationType
    address: str  # queue URL or topic ARN
    max_bytes: int  # per message and per batch request
    fifo: bool = False


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """A failed entry of a batch response; `index` is its position in the request."""

    index: int
    code: str
    message: str = ""
    sender_fault: bool = False


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """A batch response: entries not listed in `failures` succeeded."""

    failures: tuple[EntryFailure, ...] = ()


class SendCallError(Exception):
    """The whole batch call failed (throttled, no connection, access denied, ...)."""

    def __init__(self, code: str, message: str = "", *, retryable: bool = True) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.retryable = retryable


class BatchSender(Protocol):
    """Port: one SendMessageBatch or PublishBatch call (adapters: bridge.adapters.sqs / .sns)."""

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """Send up to 10 messages; raise SendCallError when the call as a whole fails."""
        ...


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What happened to one message after all attempts."""

    message: OutgoingMessage
    delivered: bool
    attempts: int
    code: str | None = None  # last error code of a failed delivery
    sender_fault: bool = False
    # FIFO: this entry failed after a later entry of its group in the same request was accepted
    order_break: bool = False


OnDelivered = Callable[[Target, Sequence[OutgoingMessage]], None]
"""Called after each send request with the messages it stored."""


def backoff_delay(attempt: int, base_delay_ms: int, rand: Callable[[float, float], float]) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): full jitter over base * 2^(attempt-1)."""
    ceiling_ms = min(MAX_BACKOFF_MS, base_delay_ms * 2 ** (attempt - 1))
    return rand(0.0, float(ceiling_ms)) / 1000.0


def fifo_lanes(messages: Sequence[OutgoingMessage], lanes: int) -> list[list[OutgoingMessage]]:
    """Split a FIFO destination's messages into at most `lanes` lists, each group's messages in one list,
    in their order, the lists about even (largest groups first, each to the least loaded list).

    A lane is opened per `MESSAGES_PER_FIFO_LANE` messages only: every lane may end in one part-full
    request, so fewer lanes keep the request count (the bill) within 10% of the minimum.
    """
    counts: dict[str | None, int] = {}
    for m in messages:
        counts[m.group_id] = counts.get(m.group_id, 0) + 1
    n = max(1, min(lanes, len(counts), len(messages) // MESSAGES_PER_FIFO_LANE))
    if n == 1:
        return [list(messages)] if messages else []
    loads = [0] * n
    lane_of: dict[str | None, int] = {}
    for group, count in sorted(counts.items(), key=lambda kv: -kv[1]):
        lane = loads.index(min(loads))
        lane_of[group] = lane
        loads[lane] += count
    out: list[list[OutgoingMessage]] = [[] for _ in range(n)]
    for m in messages:
        out[lane_of[m.group_id]].append(m)
    return out


class Deliverer:
    """Sends messages to targets through the `BatchSender` for each destination type."""

    def __init__(
        self,
        senders: Mapping[DestinationType, BatchSender],
        *,
        max_attempts: int,
        base_delay_ms: int,
        max_concurrency: int = 1,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self._senders = senders
        self._max_attempts = max(1, max_attempts)
        self._base_delay_ms = base_delay_ms
        self._max_concurrency = max(1, max_concurrency)
        self._sleep = sleep
        self._rand = rand

    @property
    def max_concurrency(self) -> int:
        return self._max_concurrency

    def deliver(self, plans: Sequence[tuple[Target, Sequence[OutgoingMessage]]],
                on_delivered: OnDelivered | None = None) -> list[DeliveryReceipt]:
        """Deliver every target's messages; one receipt per message.

        `on_delivered(target, messages)` is called after each send request with the messages it
        stored (from the lane's thread), so progress can be recorded while the batch goes on."""
        with DeliveryRun(self, on_delivered) as run:
            for target, messages in plans:
                for message in messages:
                    run.add(target, message)
            return run.finish()

    def start(self, on_delivered: OnDelivered | None = None, *, keep_delivered: bool = True) -> DeliveryRun:
        """A delivery that sends while messages are still being added (use it as a context manager);
        `on_delivered` as for `deliver`. With `keep_delivered=False`, `finish` returns only the failed
        receipts and `DeliveryRun.delivered` counts the rest per target, so a delivered message is
        garbage as soon as its request is done (a 10,000-record batch never holds them all)."""
        return DeliveryRun(self, on_delivered, keep_delivered=keep_delivered)

    def _run_lane(self, target: Target, work: list[OutgoingMessage] | list[list[OutgoingMessage]],
                  on_delivered: OnDelivered | None = None) -> list[DeliveryReceipt]:
        if target.fifo:
            return self._run_fifo_lane(target, work, on_delivered)  # type: ignore[arg-type]
        receipts: list[DeliveryReceipt] = []
        for batch in work:
            receipts.extend(self._send_with_retries(target, batch, on_delivered=on_delivered))  # type: ignore[arg-type]
        return receipts

    def _run_fifo_lane(self, target: Target, messages: list[OutgoingMessage],
                       on_delivered: OnDelivered | None = None) -> list[DeliveryReceipt]:
        """Send a lane's messages in order, batches packed greedily as they go (10 entries, the byte
        limit); a group whose order broke is held back for the rest of the lane."""
        receipts: list[DeliveryReceipt] = []
        halted: set[str | None] = set()
        batch: list[OutgoingMessage] = []
        size = 0
        for m in messages:
            if m.size > target.max_bytes:
                raise MessageTooLargeError(f"a message of {m.size} bytes exceeds the {target.max_bytes}-byte limit")
            if batch and (len(batch) >= MAX_BATCH_ENTRIES or size + m.size > target.max_bytes):
                receipts.extend(self._send_with_retries(target, batch, halted, on_delivered))
                batch, size = [], 0
            if m.group_id in halted:
                receipts.append(DeliveryReceipt(m, False, 0, HELD_BACK))
                continue
            batch.append(m)
            size += m.size
        if batch:
            receipts.extend(self._send_with_retries(target, batch, halted, on_delivered))
        return receipts

    def _send_with_retries(self, target: Target, batch: list[OutgoingMessage],
                           halted: set[str | None] | None = None,
                           on_delivered: OnDelivered | None = None) -> list[DeliveryReceipt]:
        """Send one batch, retrying failed entries; for a FIFO batch (`halted` given) an entry that failed
        after a later entry of its group was accepted is not retried: its group is added to `halted`."""
        sender = self._senders[target.type]
        receipts: list[DeliveryReceipt] = []
        pending = batch
        attempt = 1
        while True:
            try:
                failures = sender.send_batch(target, pending).failures
            except SendCallError as exc:
                failures = tuple(
                    EntryFailure(i, exc.code, str(exc), sender_fault=not exc.retryable) for i in range(len(pending))
                )
            failed_at = {f.index: f for f in failures}
            last_accepted: dict[str | None, int] = {}
            if halted is not None and failures:
                last_accepted = {m.group_id: i for i, m in enumerate(pending) if i not in failed_at}
            retry: list[OutgoingMessage] = []
            stored: list[OutgoingMessage] = []
            for i, message in enumerate(pending):
                failure = failed_at.get(i)
                if failure is None:
                    receipts.append(DeliveryReceipt(message, True, attempt))
                    stored.append(message)
                elif halted is not None and last_accepted.get(message.group_id, -1) > i:
                    halted.add(message.group_id)
                    receipts.append(DeliveryReceipt(message, False, attempt, failure.code, failure.sender_fault,
                                                    order_break=True))
                elif halted is not None and message.group_id in halted:
                    receipts.append(DeliveryReceipt(message, False, attempt, HELD_BACK))
                elif failure.sender_fault or attempt >= self._max_attempts:
                    receipts.append(DeliveryReceipt(message, False, attempt, failure.code, failure.sender_fault))
                else:
                    retry.append(message)
            if stored and on_delivered is not None:
                on_delivered(target, stored)
            if not retry:
                return receipts
            self._sleep(backoff_delay(attempt, self._base_delay_ms, self._rand))
            attempt += 1
            pending = retry


class DeliveryRun:
    """One invocation's deliveries, under way while its messages are still being planned.

    `add` packs a standard target's messages greedily as they come (the same cut as `pack`: a batch
    closes when the next message would break 10 entries or the byte limit) and hands each closed
    batch to the thread pool at once, so requests are in flight while later records are planned.
    FIFO messages wait for `finish`, which splits them into lanes (`fifo_lanes` balances whole
    groups, so it needs them all), sends every open batch, and returns when every request has
    finished, retries included. The pool starts with the second batch: a lone batch (the audit
    event, a few parked records) is sent on the caller's thread.
    """

    def __init__(self, deliverer: Deliverer, on_delivered: OnDelivered | None = None, *,
                 keep_delivered: bool = True) -> None:
        self._deliverer = deliverer
        self._on_delivered = on_delivered
        self._keep_delivered = keep_delivered
        self.delivered: Counter[str] = Counter()  # target name -> delivered messages not returned by finish
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._held: tuple[Target, list[OutgoingMessage]] | None = None  # the first batch, until a second
        # Receipts as lanes finish (no Future per request: a 10,000-record batch makes 1,000 requests).
        self._receipts: list[DeliveryReceipt] = []
        self._errors: list[BaseException] = []
        self._open: dict[str, tuple[Target, list[OutgoingMessage], list[int]]] = {}  # name -> batch, bytes
        self._fifo: dict[str, tuple[Target, list[OutgoingMessage]]] = {}

    def __enter__(self) -> DeliveryRun:
        return self

    def __exit__(self, *_: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)  # never leave a request running behind the caller's back

    def add(self, target: Target, message: OutgoingMessage) -> None:
        """Queue one message; a standard target's batch goes out as soon as it is full."""
        if message.size > target.max_bytes:
            raise MessageTooLargeError(f"a message of {message.size} bytes exceeds the {target.max_bytes}-byte "
                                       "limit")
        if target.fifo:
            fifo = self._fifo.get(target.name)
            if fifo is None:
                fifo = self._fifo[target.name] = (target, [])
            fifo[1].append(message)
            return
        batch = self._open.get(target.name)
        if batch is None:
            batch = self._open[target.name] = (target, [], [0])
        messages, size = batch[1], batch[2]
        if messages and (len(messages) >= MAX_BATCH_ENTRIES or size[0] + message.size > target.max_bytes):
            self._submit(target, [list(messages)])
            messages.clear()
            size[0] = 0
        messages.append(message)
        size[0] += message.size

    def finish(self) -> list[DeliveryReceipt]:
        """Send what is still open and wait for everything; one receipt per message added."""
        for target, messages, _ in self._open.values():
            if messages:
                self._submit(target, [list(messages)])
        self._open.clear()
        for target, messages in self._fifo.values():
            for lane in fifo_lanes(messages, self._deliverer.max_concurrency):
                self._submit(target, lane)
        self._fifo.clear()
        if self._held is not None:  # only one batch in all: no pool
            self._collect(*self._held)
            self._held = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._errors:
            raise self._errors[0]
        return self._receipts

    def _lane(self, target: Target,
              work: list[OutgoingMessage] | list[list[OutgoingMessage]]) -> list[DeliveryReceipt]:
        receipts = self._deliverer._run_lane(target, work, self._on_delivered)
        if self._keep_delivered:
            return receipts
        failed = [r for r in receipts if not r.delivered]
        with self._lock:
            self.delivered[target.name] += len(receipts) - len(failed)
        return failed

    def _collect(self, target: Target, work: list[OutgoingMessage] | list[list[OutgoingMessage]]) -> None:
        try:
            receipts = self._lane(target, work)
        except BaseException as exc:  # re-raised by finish, on the caller's thread
            with self._lock:
                self._errors.append(exc)
            return
        with self._lock:
            self._receipts.extend(receipts)

    def _submit(self, target: Target, work: list[OutgoingMessage] | list[list[OutgoingMessage]]) -> None:
        if self._deliverer.max_concurrency == 1:
            self._collect(target, work)
            return
        if self._pool is None:
            if self._held is None:
                self._held = (target, work)  # type: ignore[assignment]
                return
            self._pool = ThreadPoolExecutor(max_workers=self._deliverer.max_concurrency)
            held, self._held = self._held, None
            self._pool.submit(self._collect, *held)
        self._pool.submit(self._collect, target, work)
