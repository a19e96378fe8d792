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
given (Kafka order), retries included, as long as each is delivered. A FIFO destination's batches go
out one after another, each finished (retries included) before the next, and a FIFO batch holds at
most one message per group (`pack(..., group_of=...)`). That second rule is what makes retries safe:
SQS/SNS accept the other entries of a request in which one entry failed, so a request holding a
group's messages 0, 1 and 2 where 0 is throttled would store 1 and 2 before the retried 0, and
resending 1 and 2 with it cannot move them back (their MessageDeduplicationId makes the resend a
no-op, not a reordering). The cost is smaller requests when many messages share a group.
A message that finally fails is parked and its group goes on without it: a later redrive delivers it
after its successors. Standard queues and topics promise no order, and their independent batches go
out concurrently (a thread pool of `max_concurrency`).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from bridge.config import DestinationType
from bridge.envelope import OutgoingMessage
from bridge.packing import pack

MAX_BACKOFF_MS = 20_000  # one wait never exceeds this, whatever the attempt; keeps a batch inside the timeout


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


def backoff_delay(attempt: int, base_delay_ms: int, rand: Callable[[float, float], float]) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): full jitter over base * 2^(attempt-1)."""
    ceiling_ms = min(MAX_BACKOFF_MS, base_delay_ms * 2 ** (attempt - 1))
    return rand(0.0, float(ceiling_ms)) / 1000.0


def _message_group(message: OutgoingMessage) -> str | None:
    return message.group_id


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

    def deliver(self, plans: Sequence[tuple[Target, Sequence[OutgoingMessage]]]) -> list[DeliveryReceipt]:
        """Deliver every target's messages; one receipt per message (grouped by target, in plan order)."""
        lanes: list[tuple[Target, list[list[OutgoingMessage]]]] = []
        for target, messages in plans:
            if target.fifo:
                # one lane, batches strictly in order, at most one message per group in a batch
                lanes.append((target, pack(messages, target.max_bytes, group_of=_message_group)))
            else:
                lanes.extend((target, [b]) for b in pack(messages, target.max_bytes))
        if len(lanes) <= 1 or self._max_concurrency == 1:
            results = [self._run_lane(t, bs) for t, bs in lanes]
        else:
            with ThreadPoolExecutor(max_workers=min(self._max_concurrency, len(lanes))) as pool:
                results = list(pool.map(lambda lane: self._run_lane(*lane), lanes))
        return [receipt for lane in results for receipt in lane]

    def _run_lane(self, target: Target, batches: list[list[OutgoingMessage]]) -> list[DeliveryReceipt]:
        receipts: list[DeliveryReceipt] = []
        for batch in batches:
            receipts.extend(self._send_with_retries(target, batch))
        return receipts

    def _send_with_retries(self, target: Target, batch: list[OutgoingMessage]) -> list[DeliveryReceipt]:
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
            retry: list[OutgoingMessage] = []
            for i, message in enumerate(pending):
                failure = failed_at.get(i)
                if failure is None:
                    receipts.append(DeliveryReceipt(message, True, attempt))
                elif failure.sender_fault or attempt >= self._max_attempts:
                    receipts.append(DeliveryReceipt(message, False, attempt, failure.code, failure.sender_fault))
                else:
                    retry.append(message)
            if not retry:
                return receipts
            self._sleep(backoff_delay(attempt, self._base_delay_ms, self._rand))
            attempt += 1
            pending = retry
