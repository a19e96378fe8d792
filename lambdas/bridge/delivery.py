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
wait by message group (`_FifoGroups`), in order; whichever send thread is free takes the next batch
from the groups that have no request in flight, oldest first, and those groups stay out of every other
batch until that request has finished (retries included). So two requests holding one group are never
in flight at once, a group's batches go out in order, and groups overlap across up to `max_concurrency`
requests with no thread idle while another group has a batch ready (no group is tied to a thread).
Sending starts while later records are still planned (`DeliveryRun`), as soon as a full batch is ready.
A batch holds the consecutive messages of each group it takes, several of one group included, so a hot group
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
without it: a later redrive delivers it after its successors. When outages fail the batch back to
the mapping instead (`settings.outage_retry_seconds`, `hold_failed_groups`), a message that finally
fails for AWS's reasons holds back the rest of its group (`HELD_BACK`): the retried batch then sends
it before them, where going on would have delivered them first. Standard queues and topics promise no
order, and their independent batches go out concurrently.

How many requests are in flight is decided as the run goes (`SendPacing`, Little's law on what the
requests measure): a send that is all CPU (a stubbed sender, an endpoint that answers at once) goes out
on the planning thread itself; sends that wait on the network go out from as many send threads as keep
the process busy, up to `max_concurrency`, which is a cap, not a count. When every sender is on the direct
path, there are no send threads at all: the planning thread leaves up to `max_concurrency` requests in
flight on non-blocking connections and takes their answers as they arrive (`MultiplexedRun`), with the
same packing, FIFO groups, retry and order rules; what is called back per request (a checkpoint write) is
then handed off to a thread of its own (`CheckpointHandOff`), or the run keeps its send threads.
"""

from __future__ import annotations

import contextlib
import heapq
import math
import random
import selectors
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from math import ceil
from operator import itemgetter
from typing import Protocol

from bridge.config import MAX_BATCH_ENTRIES, DestinationType
from bridge.envelope import OutgoingMessage
from bridge.frozen import frozen, lean
from bridge.packing import MessageTooLargeError

MAX_BACKOFF_MS = 20_000  # one wait never exceeds this, whatever the attempt; keeps a batch inside the timeout
# The code of a FIFO message not sent because an earlier message of its group broke the order.
HELD_BACK = "FifoGroupHeldBack"
# Batches planned but not yet sent, per sending thread, before planning waits (see DeliveryRun.add):
# planning is ~10x faster than a request's client-side work, so without a bound every message of a
# 10,000-record batch would wait in memory for its turn.
PENDING_BATCHES_PER_THREAD = 4
# Pacing (`SendPacing`): how many send threads a run uses, from what its requests measure.
PACE_SAMPLES = 8  # requests the estimate looks back on: a latency change is followed within about as many
INLINE_BELOW = 2.0  # fewer senders wanted (a request waits less than it computes): the planning thread sends
# Send threads per request Little's law asks for: its figure keeps the GIL busy only if every request
# waits the same, and they do not (network jitter, GIL queueing); a thread too many while requests wait
# costs little, one too few costs its share of throughput.
HEADROOM = 2.0
CPU_EVERY = 4  # requests per reading of the sending thread's CPU clock (see SendPacing)
STALL_S = 0.005  # no request finished for this long while every sender is busy: look at the ones in flight


@frozen
class Target:
    """Where a batch goes: a destination, the bridge DLQ or the audit topic."""

    name: str
    type: DestinationType
    address: str  # queue URL or topic ARN
    max_bytes: int  # per message and per batch request
    fifo: bool = False


@frozen
class EntryFailure:
    """A failed entry of a batch response; `index` is its position in the request."""

    index: int
    code: str
    message: str = ""
    sender_fault: bool = False


@frozen
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


def call_failures(exc: SendCallError, count: int) -> tuple[EntryFailure, ...]:
    """A failed call as the failure of each of its `count` entries."""
    return tuple(EntryFailure(i, exc.code, str(exc), sender_fault=not exc.retryable) for i in range(count))


class InFlight(Protocol):
    """Port: one batch request under way with no thread waiting on it (bridge.adapters.multiplexing), moved
    on by `MultiplexedRun` when its file descriptor is ready."""

    @property
    def wants_write(self) -> bool:
        """Whether it waits to write (else to read)."""
        ...

    @property
    def deadline(self) -> float:
        """`time.monotonic()` past which it has timed out (the client's read timeout since its last progress)."""
        ...

    def fileno(self) -> int:
        ...

    def step(self, expired: bool = False) -> BatchOutcome | None:
        """Write or read what the connection takes now; the outcome once answered, else None. Raises
        SendCallError when the call failed (with `expired`: its deadline passed)."""
        ...

    def cancel(self) -> None:
        """Give the request up: its connection is closed, never reused."""
        ...


class MultiplexedSender(BatchSender, Protocol):
    """A `BatchSender` that can also start a request and leave it in flight."""

    @property
    def multiplexed(self) -> bool:
        """Whether `start` can be used now (the client is on the direct path, or may still get there)."""
        ...

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> InFlight | None:
        """The request under way, or None: send this one with `send_batch`. Raises SendCallError when
        the call failed before it was under way (no connection)."""
        ...

    # Optional: `ready`, whether `start` would put the request in flight without waiting on the network
    # (no connection to open, no botocore send); a sender without it always would (`MultiplexedRun._send`).


@lean(slots=True)
class DeliveryReceipt:
    """What happened to one message after all attempts.

    Not frozen only because a frozen dataclass pays a setattr call per field when built (timeit: 0.85 µs
    against 0.18 µs, and one is built per message sent); nothing changes a receipt after it is built."""

    message: OutgoingMessage
    delivered: bool
    attempts: int
    code: str | None = None  # last error code of a failed delivery
    sender_fault: bool = False
    # FIFO: this entry failed after a later entry of its group in the same request was accepted
    order_break: bool = False


OnDelivered = Callable[[Sequence[OutgoingMessage]], None]
"""Called after each send request with the messages it stored, each naming its destination (on a one-thread
run, off the planning thread, with what several requests stored, to one or more targets: `CheckpointHandOff`)."""


class CheckpointHandOff(Protocol):
    """Port: a one-thread run's `on_delivered` calls (checkpoint writes, which block on DynamoDB) made off its
    planning thread (adapter: bridge.adapters.checkpoint_writer). The run hands over what each answered
    request stored, goes on, and learns which hand-overs are written when `fileno` is readable; a request to
    a standard target keeps its `standard_in_flight` slot until then."""

    def fileno(self) -> int:
        ...

    def hand_over(self, messages: Sequence[OutgoingMessage], ticket: object) -> None:
        """Queue one request's stored messages to be written; `ticket` comes back from `written`."""
        ...

    def written(self) -> list[tuple[object, BaseException | None]]:
        """The tickets written since the last call, each with the exception its write raised (a bug: a
        failed checkpoint write is counted by `BatchProgress`, not raised)."""
        ...

    def close(self) -> None:
        """Write everything handed over, then stop."""
        ...


HandOffFactory = Callable[[OnDelivered], CheckpointHandOff]


def backoff_delay(attempt: int, base_delay_ms: int, rand: Callable[[float, float], float]) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based): full jitter over base * 2^(attempt-1)."""
    ceiling_ms = min(MAX_BACKOFF_MS, base_delay_ms * 2 ** (attempt - 1))
    return rand(0.0, float(ceiling_ms)) / 1000.0


class SendPacing:
    """How many requests to have in flight, from what the requests themselves measure (Little's law).

    Each request records its wall time and the CPU time of the thread that sent it (`time.thread_time`,
    which does not count the time a thread waits for the network or for the GIL; read every `CPU_EVERY`th
    request). What a request waits is its wall time less its CPU time. The process can do at most one
    request's CPU work at a time (the GIL), so its throughput is at most 1 / R, R the process CPU per
    request (planning included); keeping that rate needs (CPU + wait) / R requests in flight. Below
    `INLINE_BELOW` the planning thread sends itself (a send that is its own CPU gains nothing from another
    thread, and a hand-off costs GIL switches); above, `HEADROOM` times that many send threads, up to
    `max_concurrency`.
    The wait is the least of the last `PACE_SAMPLES` requests: a request that waited for the GIL behind
    the others measures more than the network did, and taking the mean would make more threads look
    needed the more there are. Samples are appended from every send thread (a deque append is atomic).
    Shared by the runs of one Deliverer, so a warm function starts where the last invocation ended."""

    __slots__ = ("cpu_per_request", "in_flight", "last_cpu", "requests", "samples")

    def __init__(self) -> None:
        self.samples: deque[tuple[float, float]] = deque(maxlen=PACE_SAMPLES)  # (wait, CPU) per request
        self.in_flight: dict[int, float] = {}  # sending thread -> when its request started
        self.cpu_per_request: float | None = None  # process CPU per request, all threads, measured by runs
        # A thread's CPU clock costs a system call (~0.5 us, two per request: 0.15 us per record, a quarter of
        # what delivery costs with AWS stubbed), and a request's CPU varies little, unlike its wait: every
        # `CPU_EVERY`th request reads it, the others count the last reading. (`requests` is bumped from
        # several threads without a lock: a lost count only moves which request reads the clock.)
        self.requests = 0
        self.last_cpu: float | None = None

    def senders(self, cap: int, stalled: float = 0.0) -> int | None:
        """Send threads wanted (0: send inline), or None before any request has been measured.
        `stalled`: how long the youngest request in flight has run while none finished (a lower bound
        on the current wait, which the finished requests may not show yet)."""
        samples = list(self.samples)
        if not samples:
            return None
        wait = max(0.0, min(w for w, _ in samples))  # below 0 when a request took less CPU than the last reading
        cpus = sorted(c for _, c in samples)
        cpu = cpus[len(cpus) // 2]
        if stalled:
            wait = max(wait, stalled - cpu)
        per_request = max(self.cpu_per_request or cpu, cpu, 1e-9)
        wanted = (cpu + wait) / per_request
        if wanted < INLINE_BELOW:
            return 0
        return min(cap, ceil(wanted * HEADROOM))

    def expected_wall(self) -> float:
        """A request's wall time as measured so far (0 before any)."""
        samples = list(self.samples)
        if not samples:
            return 0.0
        return min(w for w, _ in samples) + sorted(c for _, c in samples)[len(samples) // 2]


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
        hold_failed_groups: bool = False,
        hand_off: HandOffFactory | None = None,
    ) -> None:
        """`hand_off` makes a run's `on_delivered` calls off its planning thread, so a checkpointed run can
        send from that thread alone (`multiplexed`); without it such runs keep their send threads."""
        self._senders = senders
        self._hand_off = hand_off
        self._hold_failed_groups = hold_failed_groups
        self._max_attempts = max(1, max_attempts)
        self._base_delay_ms = base_delay_ms
        self._max_concurrency = max(1, max_concurrency)
        self._sleep = sleep
        self._rand = rand
        self.pacing = SendPacing()

    @property
    def max_concurrency(self) -> int:
        """The cap on requests in flight; how many are is `pacing`'s estimate."""
        return self._max_concurrency

    def deliver(self, plans: Sequence[tuple[Target, Sequence[OutgoingMessage]]],
                on_delivered: OnDelivered | None = None) -> list[DeliveryReceipt]:
        """Deliver every target's messages; one receipt per message.

        `on_delivered(messages)` is called after each send request with the messages it stored (from the
        sending thread, or the checkpoint writer's), so progress can be recorded while the batch goes on."""
        with self.start(on_delivered) as run:
            for target, messages in plans:
                for message in messages:
                    run.add(target, message)
            return run.finish()

    def start(self, on_delivered: OnDelivered | None = None, *, keep_delivered: bool = True,
              standard_in_flight: int | None = None, standard_entries: int = MAX_BATCH_ENTRIES) -> DeliveryRun:
        """A delivery that sends while messages are still being added (use it as a context manager);
        `on_delivered` as for `deliver`. With `keep_delivered=False`, `finish` returns only the failed
        receipts and `DeliveryRun.delivered` counts the rest per target, so a delivered message is
        garbage as soon as its request is done (a 10,000-record batch never holds them all).
        `standard_in_flight` caps the requests to standard (non-FIFO) targets, all together, that are
        under way at once, each until `on_delivered` returned for it (see `DeliveryRun`); `standard_entries`
        the messages per request to a standard target (FIFO targets take 10)."""
        run = MultiplexedRun if self.multiplexed(on_delivered) else DeliveryRun
        return run(self, on_delivered, keep_delivered=keep_delivered, standard_in_flight=standard_in_flight,
                   standard_entries=standard_entries)

    def multiplexed(self, on_delivered: OnDelivered | None = None) -> bool:
        """Whether a run sends from the planning thread alone (`MultiplexedRun`): every sender can leave a
        request in flight, and nothing is called back per request or the calls can be handed off
        (`hand_off`: a checkpoint write blocks, so it is made on a thread of its own)."""
        return (on_delivered is None or self._hand_off is not None) and \
            all(getattr(s, "multiplexed", False) for s in self._senders.values())

    def _run_lane(self, target: Target, batches: list[list[OutgoingMessage]],
                  on_delivered: OnDelivered | None = None, *, delivered: bool = True) -> list[DeliveryReceipt]:
        """Send a standard target's batches one after another."""
        receipts: list[DeliveryReceipt] = []
        for batch in batches:
            receipts.extend(self._send_with_retries(target, batch, on_delivered=on_delivered, delivered=delivered))
        return receipts

    def _send_fifo_batch(self, target: Target, batch: list[OutgoingMessage], halted: set[str | None],
                         on_delivered: OnDelivered | None = None, *, delivered: bool = True) -> list[DeliveryReceipt]:
        """Send one batch of a FIFO destination; a message of a group whose order broke earlier in the run
        (`halted`) is held back instead of sent."""
        if halted:
            receipts = [DeliveryReceipt(m, False, 0, HELD_BACK) for m in batch if m.group_id in halted]
            batch = [m for m in batch if m.group_id not in halted]
            if batch:
                receipts += self._send_with_retries(target, batch, halted, on_delivered, delivered=delivered)
            return receipts
        return self._send_with_retries(target, batch, halted, on_delivered, delivered=delivered)

    def _send_with_retries(self, target: Target, batch: list[OutgoingMessage],
                           halted: set[str | None] | None = None,
                           on_delivered: OnDelivered | None = None, *, delivered: bool = True) -> list[DeliveryReceipt]:
        """Send one batch, retrying failed entries; for a FIFO batch (`halted` given) an entry that failed
        after a later entry of its group was accepted is not retried: its group is added to `halted`.
        One receipt per message; with `delivered=False` only the failed ones (a run that only counts the
        delivered: `DeliveryRun(keep_delivered=False)`)."""
        sender = self._senders[target.type]
        receipts: list[DeliveryReceipt] = []
        pending = batch
        attempt = 1
        pacing = self.pacing
        me = threading.get_ident()
        while True:
            pacing.requests += 1
            read_cpu = pacing.last_cpu is None or not pacing.requests % CPU_EVERY
            cpu = time.thread_time() if read_cpu else 0.0
            started = time.perf_counter()
            pacing.in_flight[me] = started
            try:
                failures = sender.send_batch(target, pending).failures
            except SendCallError as exc:
                failures = call_failures(exc, len(pending))
            finally:
                del pacing.in_flight[me]
            wall = time.perf_counter() - started
            if read_cpu:
                cpu = time.thread_time() - cpu
                pacing.last_cpu = cpu
            else:
                cpu = pacing.last_cpu or 0.0
            pacing.samples.append((wall - cpu, cpu))
            pending = self._settle(target, pending, failures, attempt, halted, on_delivered, receipts,
                                   delivered=delivered)
            if not pending:
                return receipts
            self._sleep(backoff_delay(attempt, self._base_delay_ms, self._rand))
            attempt += 1

    def _settle(self, target: Target, pending: list[OutgoingMessage], failures: Sequence[EntryFailure], attempt: int,
                halted: set[str | None] | None, on_delivered: OnDelivered | None, receipts: list[DeliveryReceipt],
                *, delivered: bool = True) -> list[OutgoingMessage]:
        """What attempt `attempt` at sending `pending` came to, given its failed entries: receipts for what
        it settled appended to `receipts`, `on_delivered` called with what it stored, and the messages to
        send again after a backoff (none: the batch is done). The one place the retry and FIFO order rules
        live, for the send threads (`_send_with_retries`) and the multiplexed run (`MultiplexedRun`)."""
        if not failures:  # the usual case: every entry stored
            if delivered:
                receipts += [DeliveryReceipt(m, True, attempt) for m in pending]
            if on_delivered is not None:
                on_delivered(pending)
            return []
        failed_at = {f.index: f for f in failures}
        last_accepted: dict[str | None, int] = {}
        if halted is not None:
            last_accepted = {m.group_id: i for i, m in enumerate(pending) if i not in failed_at}
        retry: list[OutgoingMessage] = []
        stored: list[OutgoingMessage] = []
        for i, message in enumerate(pending):
            failure = failed_at.get(i)
            if failure is None:
                if delivered:
                    receipts.append(DeliveryReceipt(message, True, attempt))
                stored.append(message)
            elif halted is not None and last_accepted.get(message.group_id, -1) > i:
                halted.add(message.group_id)
                receipts.append(DeliveryReceipt(message, False, attempt, failure.code, failure.sender_fault,
                                                order_break=True))
            elif halted is not None and message.group_id in halted:
                receipts.append(DeliveryReceipt(message, False, attempt, HELD_BACK))
            elif failure.sender_fault or attempt >= self._max_attempts:
                if halted is not None and self._hold_failed_groups and not failure.sender_fault:
                    halted.add(message.group_id)  # the batch comes back: its successors must wait for it
                receipts.append(DeliveryReceipt(message, False, attempt, failure.code, failure.sender_fault))
            else:
                retry.append(message)
        if stored and on_delivered is not None:
            on_delivered(stored)
        return retry


class _FifoGroups:
    """A FIFO destination's messages not yet sent in one run, waiting by message group in order.

    A group is `ready` (waiting messages, no request in flight) or `busy` (a request holding it is in
    flight). `take` packs the next batch from the ready groups, the longest ready first, each group's
    consecutive messages as long as they fit (the cut of `pack`: a batch closes when the next message
    would break 10 entries or the byte limit), in the order they were added, and makes those groups
    busy; `release` makes them ready again once their request has finished. Taking whole runs of a
    group keeps the groups one request holds few, so few groups still fill many requests at once.
    Called under the run's lock."""

    __slots__ = ("added", "busy", "halted", "ready", "ready_bytes", "ready_count", "senders", "starting", "target",
                 "waiting", "waiting_bytes")

    def __init__(self, target: Target) -> None:
        self.target = target
        self.added = 0  # messages put so far: the order of a batch's entries
        # group -> its messages not yet taken, each with its place in the order they were added
        self.waiting: dict[str | None, deque[tuple[int, OutgoingMessage]]] = {}
        self.waiting_bytes: dict[str | None, int] = {}
        self.ready: deque[str | None] = deque()  # groups with waiting messages and none in flight, longest first
        self.busy: set[str | None] = set()  # groups a request in flight holds
        self.halted: set[str | None] = set()  # groups whose order broke: the rest is held back
        self.ready_count = 0  # messages of ready groups
        self.ready_bytes = 0
        self.senders = 0  # drains taking batches of this destination
        self.starting = 0  # of them, started and not yet at their first `take`

    def put(self, message: OutgoingMessage) -> bool:
        """Queue a message behind its group's; False (not queued) when its group is halted and none of its
        requests is in flight (while one is, the message waits, and `release` holds it back in order)."""
        group = message.group_id
        if group in self.halted and group not in self.busy:
            return False
        queue = self.waiting.get(group)
        if queue is None:
            queue = self.waiting[group] = deque()
            self.waiting_bytes[group] = 0
            if group not in self.busy:
                self.ready.append(group)
        queue.append((self.added, message))
        self.added += 1
        self.waiting_bytes[group] += message.size
        if group not in self.busy:
            self.ready_count += 1
            self.ready_bytes += message.size
        return True

    def full_batches(self) -> int:
        """About how many full batches the ready groups hold: 0 when they fit in one request."""
        return max(self.ready_count // MAX_BATCH_ENTRIES, self.ready_bytes // self.target.max_bytes)

    def drains_wanted(self, limit: int, finishing: bool) -> int:
        """How many more drains to start: one per full batch ready that no starting drain will take, and
        when finishing, one for a part-full batch that nothing in flight can still fill."""
        wanted = self.full_batches()
        if finishing and not wanted and self.ready and self._nothing_behind_busy():
            wanted = 1
        return max(0, min(limit - self.senders, wanted - self.starting))

    def take(self, finishing: bool) -> list[OutgoingMessage] | None:
        """The next batch, or None. A part-full batch only when finishing and no group a request in flight
        holds has messages waiting behind it (they could still fill the batch once that request is
        answered): the request count stays the minimum but for the last batch or so, and a last batch
        nothing in flight can fill goes at once rather than a round trip later."""
        if not self.ready or not (self.full_batches() or (finishing and self._nothing_behind_busy())):
            return None
        batch: list[tuple[int, OutgoingMessage]] = []
        size, limit = 0, self.target.max_bytes
        while self.ready and len(batch) < MAX_BATCH_ENTRIES:
            group = self.ready[0]
            queue = self.waiting[group]
            if size + queue[0][1].size > limit:
                break
            self.ready.popleft()
            self.busy.add(group)
            self.ready_count -= len(queue)
            self.ready_bytes -= self.waiting_bytes[group]
            while queue and len(batch) < MAX_BATCH_ENTRIES and size + queue[0][1].size <= limit:
                entry = queue.popleft()
                batch.append(entry)
                size += entry[1].size
                self.waiting_bytes[group] -= entry[1].size
            if not queue:
                del self.waiting[group], self.waiting_bytes[group]
        if len(batch) > 1:
            batch.sort(key=itemgetter(0))  # several groups: their entries in the order added, as `pack` cuts
        return [m for _, m in batch]

    def _nothing_behind_busy(self) -> bool:
        """Whether every group with messages waiting is ready (none is held by a request in flight)."""
        return len(self.waiting) == len(self.ready)

    def release(self, batch: list[OutgoingMessage]) -> list[DeliveryReceipt]:
        """The batch's request has finished: its groups are ready again, but for a halted group, whose
        waiting messages come back held back."""
        held: list[DeliveryReceipt] = []
        for group in dict.fromkeys(m.group_id for m in batch):
            self.busy.discard(group)
            queue = self.waiting.get(group)
            if queue is None:
                continue
            if group in self.halted:
                held += [DeliveryReceipt(m, False, 0, HELD_BACK) for _, m in queue]
                del self.waiting[group], self.waiting_bytes[group]
                continue
            self.ready.append(group)
            self.ready_count += len(queue)
            self.ready_bytes += self.waiting_bytes[group]
        return held


class DeliveryRun:
    """One invocation's deliveries, under way while its messages are still being planned.

    `add` packs a standard target's messages greedily as they come (the same cut as `pack`: a batch
    closes when the next message would break 10 entries or the byte limit) and hands each closed
    batch over at once, so requests are in flight while later records are planned.
    A FIFO target's messages wait by group (`_FifoGroups`); whenever a full batch is ready among the
    groups with no request in flight, a drain is started (up to `max_concurrency` per target), and each
    drain takes batches until none is ready, so a free thread always takes whatever group can go next.
    `finish` sends every open batch and returns when every request has finished, retries included.

    Who sends is paced (`SendPacing`): when the requests measured so far are as much CPU as wall time
    (a stubbed sender, a loopback endpoint answering at once) the planning thread sends each batch
    itself; when they wait on the network, send threads take the work from one queue (no Future per
    batch), as many as the estimate wants, up to `max_concurrency`. The estimate is taken again as
    requests finish, so a run whose requests slow down grows, one whose requests speed up shrinks (to one
    thread: work already queued stays with the threads). Before anything was measured a run starts one
    send thread, and while planning waits (the backlog bound or `finish`) it looks at the requests in
    flight: when every thread's request has run far longer than a request takes and work waits, it adds
    threads without waiting for one to finish. The threads start with the second piece of work: a lone
    batch (the audit event, a few parked records) is sent on the caller's thread.

    With `standard_entries=E` a standard target's batch closes at E messages instead of 10. With
    `standard_in_flight=N` (checkpoints on: bridge.service), standard targets' batches wait in one
    queue that at most N drains empty, each request after the previous one's `on_delivered` (its
    checkpoint write) returned: at any instant at most N requests to standard targets, all together,
    have taken effect without being recorded, which bounds what a crash makes the redelivered batch
    send again. FIFO targets are not capped: SQS drops their re-sends by deduplication id.
    """

    def __init__(self, deliverer: Deliverer, on_delivered: OnDelivered | None = None, *,
                 keep_delivered: bool = True, standard_in_flight: int | None = None,
                 standard_entries: int = MAX_BATCH_ENTRIES) -> None:
        self._deliverer = deliverer
        self._on_delivered = on_delivered
        self._keep_delivered = keep_delivered
        self.delivered: Counter[str] = Counter()  # target name -> delivered messages not returned by finish
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # notified when a batch is sent (or a drain fails)
        self._pending = 0  # standard batches handed over and not yet sent
        self._fifo_pending = 0  # FIFO messages added and not yet sent (waiting or in flight)
        self._max_pending = PENDING_BATCHES_PER_THREAD * deliverer.max_concurrency
        self._work: deque[Callable[[], None]] = deque()  # handed to the send threads, not yet taken
        self._work_ready = threading.Condition(self._lock)  # notified when work is queued (or closing)
        self._parked = threading.Condition(self._lock)  # threads beyond `_senders` wait here
        self._threads: list[threading.Thread] = []
        self._closing = False
        self._tasks = 0  # pieces of work queued or running on the threads
        self._idle = threading.Condition(self._lock)  # notified when `_tasks` drops to 0
        self._held: Callable[[], None] | None = None  # the first piece of work, until a second
        self._finishing = False
        # Receipts as requests finish (no Future per request: a 10,000-record batch makes 1,000 requests).
        self._receipts: list[DeliveryReceipt] = []
        self._errors: list[BaseException] = []
        self._open: dict[str, tuple[Target, list[OutgoingMessage], list[int]]] = {}  # name -> batch, bytes
        self._fifo: dict[str, _FifoGroups] = {}
        self._standard_in_flight = standard_in_flight
        self._standard_entries = max(1, min(standard_entries, MAX_BATCH_ENTRIES))
        self._waiting: deque[tuple[Target, list[OutgoingMessage]]] = deque()  # capped: batches not yet sent
        self._draining = 0  # capped: drains emptying `_waiting`
        # Pacing: send threads wanted (0: the caller sends), batches sent, and where the last estimate was.
        cap = deliverer.max_concurrency
        wanted = deliverer.pacing.senders(cap) if cap > 1 else 0
        self._senders = 1 if wanted is None else wanted
        self._done = 0
        self._paced_at = 0
        self._cpu_mark = time.process_time()

    def __enter__(self) -> DeliveryRun:
        return self

    def __exit__(self, *_: object) -> None:
        self._stop_threads()  # never leave a request running behind the caller's back

    def add(self, target: Target, message: OutgoingMessage) -> None:
        """Queue one message; a batch goes out as soon as it is full. Waits while
        `PENDING_BATCHES_PER_THREAD` batches per thread (FIFO: as many messages as they would hold) are
        already waiting to be sent, so the messages alive at once stay bounded however large the batch."""
        if self._threads and self._backlogged():
            with self._room:
                while self._backlogged() and not self._errors:
                    if not self._room.wait(STALL_S):
                        self._check_stall()
        if message.size > target.max_bytes:
            raise MessageTooLargeError(f"a message of {message.size} bytes exceeds the {target.max_bytes}-byte "
                                       "limit")
        if target.fifo:
            self._add_fifo(target, message)
            return
        batch = self._open.get(target.name)
        if batch is None:
            batch = self._open[target.name] = (target, [], [0])
        messages, size = batch[1], batch[2]
        if messages and (len(messages) >= self._standard_entries or size[0] + message.size > target.max_bytes):
            self._send_standard(target, list(messages))
            messages.clear()
            size[0] = 0
        messages.append(message)
        size[0] += message.size

    def add_all(self, target: Target, messages: Sequence[OutgoingMessage]) -> None:
        """`add` each of `messages` in order, in one call: the planning fast path hands its messages over a
        run of records at a time. The same size check, packing and backlog bound as `add`; a standard
        target's messages are packed here in one loop while the planning thread sends (no send threads),
        which is a third of the instructions of a call to `add` per message (benchmarks/count_instructions.py)."""
        if target.fifo or self._threads or type(self).add is not DeliveryRun.add:
            for message in messages:
                self.add(target, message)
            return
        batch = self._open.get(target.name)
        if batch is None:
            batch = self._open[target.name] = (target, [], [0])
        packed, size = batch[1], batch[2]
        entries, max_bytes = self._standard_entries, target.max_bytes
        total, count = size[0], len(packed)
        rest = iter(messages)
        for message in rest:
            bytes_ = message.size
            if bytes_ > max_bytes:
                size[0] = total
                raise MessageTooLargeError(f"a message of {bytes_} bytes exceeds the {max_bytes}-byte limit")
            if count and (count >= entries or total + bytes_ > max_bytes):
                self._send_standard(target, packed[:])
                packed.clear()
                total = count = 0
                if self._threads:  # that send started the send threads: the rest through `add` (its backlog bound)
                    size[0] = 0
                    self.add(target, message)
                    for later in rest:
                        self.add(target, later)
                    return
            packed.append(message)
            total += bytes_
            count += 1
        size[0] = total

    def finish(self) -> list[DeliveryReceipt]:
        """Send what is still open and wait for everything; one receipt per message added."""
        with self._lock:
            self._finishing = True
        for target, messages, _ in self._open.values():
            if messages:
                self._send_standard(target, list(messages))
        self._open.clear()
        for groups in self._fifo.values():
            self._start_drains(groups)  # the part-full batches that could not go before
        while self._held is not None:  # only one piece of work so far: no threads
            held, self._held = self._held, None
            held()
        if self._threads:
            with self._lock:  # drains still running may start others: the threads take work until all are done
                while self._tasks:
                    if not self._idle.wait(STALL_S):
                        self._check_stall()
            self._stop_threads()
        with self._lock:
            self._repace_locked(final=True)
        if self._errors:
            raise self._errors[0]
        return self._receipts

    def _send_standard(self, target: Target, batch: list[OutgoingMessage]) -> None:
        """Send one closed batch of a standard target: at once, or through the capped queue."""
        if not self._senders and self._standard_in_flight is None:
            # The planning thread sends itself (`SendPacing`; there are no send threads then): what `_submit`
            # would run at once, `_collect` of this one batch, without the partial, the one-batch lane and its
            # sum, and the lock round trip that counted the batch pending (nothing reads that count before it
            # is taken off again). docs/decisions.md, "The planning thread sends a standard batch directly".
            try:
                receipts = self._deliverer._send_with_retries(target, batch, None, self._on_delivered,
                                                              delivered=self._keep_delivered)
            except BaseException as exc:  # re-raised by finish, on the caller's thread
                with self._lock:
                    self._done += 1
                    if self._done - self._paced_at >= PACE_SAMPLES // 2:
                        self._repace_locked()
                    self._errors.append(exc)
                    self._room.notify_all()
                return
            with self._lock:
                self._done += 1
                if self._done - self._paced_at >= PACE_SAMPLES // 2:
                    self._repace_locked()
                self._keep_locked(target, receipts, len(batch))
            return
        with self._lock:
            self._pending += 1
        if self._standard_in_flight is None:
            self._submit(partial(self._collect, target, [batch]))
            return
        with self._lock:
            self._waiting.append((target, batch))
            queued = self._draining >= self._standard_in_flight  # a running drain takes it
            if not queued:
                self._draining += 1
        if not queued:
            self._submit(self._drain_standard)
        elif not self._threads and self._held is not None:
            # the held drain is the one this batch waits for: start it now, not at finish
            held, self._held = self._held, None
            self._start_threads(held)

    def _drain_standard(self) -> None:
        """Send the capped queue's batches one after another until it is empty."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._draining -= 1
                    return
                target, batch = self._waiting.popleft()
            self._collect(target, [batch])

    def _backlogged(self) -> bool:
        return self._pending + self._fifo_pending // MAX_BATCH_ENTRIES >= self._max_pending

    def _put_fifo(self, target: Target, message: OutgoingMessage) -> _FifoGroups | None:
        """Queue `message` in its target's groups and count it pending; None when it is held back (its
        group's order broke earlier in the run: a HELD_BACK receipt). Under the lock on the threaded path."""
        groups = self._fifo.get(target.name)
        if groups is None:
            groups = self._fifo[target.name] = _FifoGroups(target)
        if not groups.put(message):
            self._receipts.append(DeliveryReceipt(message, False, 0, HELD_BACK))
            return None
        self._fifo_pending += 1
        return groups

    def _add_fifo(self, target: Target, message: OutgoingMessage) -> None:
        with self._lock:
            groups = self._put_fifo(target, message)
            if groups is None:
                return
            start = self._drains_to_start(groups)
        for _ in range(start):
            self._submit(partial(self._drain_fifo, groups))

    def _drains_to_start(self, groups: _FifoGroups) -> int:
        """Count the drains `groups` wants now as started (see `_FifoGroups.drains_wanted`); under the lock.
        Sending inline, one: a drain started from a drain would run inside it."""
        limit = self._deliverer.max_concurrency if self._senders else 1
        start = groups.drains_wanted(limit, self._finishing)
        groups.senders += start
        groups.starting += start
        return start

    def _start_drains(self, groups: _FifoGroups) -> None:
        with self._lock:
            start = self._drains_to_start(groups)
        for _ in range(start):
            self._submit(partial(self._drain_fifo, groups))

    def _drain_fifo(self, groups: _FifoGroups) -> None:
        """Send a FIFO destination's batches as `_FifoGroups.take` gives them, until none is ready."""
        try:
            with self._lock:
                groups.starting -= 1
                batch, more = self._next_fifo_batch(groups)
            while batch is not None:
                for _ in range(more):  # more is ready than this drain takes: free threads take it
                    self._submit(partial(self._drain_fifo, groups))
                receipts = self._deliverer._send_fifo_batch(groups.target, batch, groups.halted, self._on_delivered,
                                                            delivered=self._keep_delivered)
                with self._lock:  # one step, so a halted group's receipts stay in order with later ones
                    held = groups.release(batch)
                    self._fifo_pending -= len(batch) + len(held)
                    self._done += 1
                    if self._done - self._paced_at >= PACE_SAMPLES // 2:
                        self._repace_locked()
                    self._room.notify()
                    self._keep_locked(groups.target, receipts + held, len(batch) + len(held))
                    batch, more = self._next_fifo_batch(groups)
        except BaseException as exc:  # re-raised by finish, on the caller's thread
            with self._lock:
                self._errors.append(exc)
                self._room.notify_all()  # this destination's other batches may not be sent: nobody waits

    def _next_fifo_batch(self, groups: _FifoGroups) -> tuple[list[OutgoingMessage] | None, int]:
        """The drain's next batch (None: the drain ends) and how many more drains to start; under the lock."""
        batch = groups.take(self._finishing)
        if batch is None:
            groups.senders -= 1
            return None, 0
        return batch, self._drains_to_start(groups)

    def _sent_locked(self) -> None:
        self._pending -= 1
        self._done += 1
        if self._done - self._paced_at >= PACE_SAMPLES // 2:
            self._repace_locked()
        if self._threads:  # else the planning thread sent it itself, and nothing waits (`add`)
            self._room.notify()

    def _keep_locked(self, target: Target, receipts: list[DeliveryReceipt], messages: int) -> None:
        """Keep what `finish` returns of `messages` messages' `receipts` (without `keep_delivered`, the
        receipts are only the failed ones, and the rest is counted)."""
        if self._keep_delivered:
            self._receipts.extend(receipts)
            return
        self.delivered[target.name] += messages - len(receipts)
        self._receipts.extend(receipts)

    def _collect(self, target: Target, batches: list[list[OutgoingMessage]]) -> None:
        try:
            receipts = self._deliverer._run_lane(target, batches, self._on_delivered, delivered=self._keep_delivered)
        except BaseException as exc:  # re-raised by finish, on the caller's thread
            with self._lock:
                self._sent_locked()
                self._errors.append(exc)
                self._room.notify_all()
            return
        with self._lock:
            self._sent_locked()
            self._keep_locked(target, receipts, sum(map(len, batches)))

    def _submit(self, work: Callable[[], None]) -> None:
        """Run `work` (sending one batch, or a drain) on the caller's thread or hand it to the send threads."""
        if not self._senders:
            work()
            return
        if not self._threads:
            # Hold the first piece of work, in case it is the only one; not a FIFO drain while records
            # are still planned, which would then wait for `finish` instead of overlapping.
            if self._held is None and (self._finishing or not self._fifo):
                self._held = work
                return
            held, self._held = self._held, None
            self._start_threads(held)
        with self._lock:
            self._tasks += 1
            self._work.append(work)
            self._work_ready.notify()

    def _start_threads(self, first: Callable[[], None] | None) -> None:
        """Start the send threads `_senders` wants, `first` queued ahead of whatever comes next."""
        with self._lock:
            if first is not None:
                self._tasks += 1
                self._work.append(first)
            self._grow_locked()

    def _grow_locked(self) -> None:
        """Start threads up to `_senders` and wake the parked ones it now wants; under the lock (a new
        thread waits for the lock before it takes work)."""
        while len(self._threads) < self._senders:
            thread = threading.Thread(target=self._serve, args=(len(self._threads),), daemon=True,
                                      name=f"bridge-send-{len(self._threads)}")
            self._threads.append(thread)
            thread.start()
        self._parked.notify_all()
        self._work_ready.notify_all()

    def _serve(self, index: int) -> None:
        """A send thread: takes queued work while it is one of the `_senders` wanted, until the run closes."""
        lock = self._lock
        with lock:
            while True:
                if index >= self._senders:  # not wanted now: park, passing a wake-up on to one that is
                    if self._work:
                        self._work_ready.notify()
                    if self._closing:  # thread 0 is always wanted: it sends what is left
                        return
                    self._parked.wait()
                    continue
                if self._work:
                    work = self._work.popleft()
                    lock.release()
                    try:
                        work()
                    finally:
                        lock.acquire()
                        self._tasks -= 1
                        if not self._tasks:
                            self._idle.notify_all()
                    continue
                if self._closing:
                    return
                self._work_ready.wait()

    def _stop_threads(self) -> None:
        """Let the threads finish what is queued, then end them; returns once none is running."""
        if not self._threads:
            return
        with self._lock:
            self._closing = True
            self._work_ready.notify_all()
            self._parked.notify_all()
        for thread in self._threads:
            thread.join()
        self._threads = []

    def _repace_locked(self, *, final: bool = False) -> None:
        """Take the estimate again from the requests that finished since the last one (process CPU per
        request, then `SendPacing.senders`), and start or park threads to match; under the lock, on the
        thread whose request just finished (every `PACE_SAMPLES // 2` requests)."""
        done = self._done - self._paced_at
        if done < PACE_SAMPLES // 2:  # at `finish`: a few requests' CPU is mostly the run's fixed cost
            return
        cpu = time.process_time()
        pacing = self._deliverer.pacing
        per_request = (cpu - self._cpu_mark) / done
        pacing.cpu_per_request = per_request if pacing.cpu_per_request is None else \
            (pacing.cpu_per_request + per_request) / 2
        self._cpu_mark, self._paced_at = cpu, self._done
        if final or self._deliverer.max_concurrency == 1:
            return
        wanted = pacing.senders(self._deliverer.max_concurrency)
        if wanted is not None:
            self._pace_locked(wanted)

    def _check_stall(self) -> None:
        """While planning waits: when work is queued, every wanted thread has a request in flight and the
        youngest has run far longer than a request takes, grow from what it has waited so far; under the
        lock."""
        pacing = self._deliverer.pacing
        started = list(pacing.in_flight.values())
        if not self._work or len(started) < self._senders or self._senders >= self._deliverer.max_concurrency:
            return
        youngest = time.perf_counter() - max(started)
        if youngest < max(STALL_S, 4 * pacing.expected_wall()):
            return
        wanted = pacing.senders(self._deliverer.max_concurrency, youngest)
        self._pace_locked(self._senders + 1 if wanted is None else wanted)

    def _pace_locked(self, wanted: int) -> None:
        if self._threads or self._held is not None:
            wanted = max(1, wanted)  # work handed to threads stays with them: inline starts with the next run
        if wanted == self._senders:
            return
        self._senders = wanted
        if self._threads:
            self._grow_locked()


# Messages added between two looks at the answers while planning goes on (about one batch's worth: an
# answered request frees its slot and its FIFO groups within one batch's planning time).
POLL_EVERY = MAX_BATCH_ENTRIES
# While starts run on starter threads or checkpoint writes are under way, a blocking wait looks for what they
# came to at least this often, even if no wake-up byte arrived (its send failed): a hang becomes a 1 s delay.
LOOK_ANYWAY_S = 1.0


@lean(slots=True, eq=False)
class _Request:
    """One batch of a `MultiplexedRun`: in flight, or waiting out a backoff before its next attempt."""

    target: Target
    batch: list[OutgoingMessage]  # as taken (a FIFO batch goes back to `_FifoGroups.release` whole)
    groups: _FifoGroups | None  # FIFO targets only
    pending: list[OutgoingMessage]  # this attempt's messages
    receipts: list[DeliveryReceipt]
    attempt: int = 1
    handle: InFlight | None = None
    fd: int = -1
    events: int = 0
    unwritten: int = 0  # hand-overs of what it stored not yet written (`CheckpointHandOff`)
    settled: bool = False  # done but for those writes: a standard target's slot is kept until they are


# A selector key's data for the checkpoint hand-off's file descriptor (`MultiplexedRun._take_written`).
_WRITES = object()


# What a start made off the planning thread came to (`MultiplexedRun._start_waiting`): the request in flight,
# else the attempt's failed entries (sent through botocore, or no connection), or an error no receipt describes.
_Started = tuple[_Request, "InFlight | None", Sequence[EntryFailure], Exception | None]


class MultiplexedRun(DeliveryRun):
    """A `DeliveryRun` with no send threads: the planning thread starts each request without waiting for
    it (`MultiplexedSender.start`), goes on planning, and reads the answers as they arrive, all the
    connections watched by one selector (epoll where there is one). It looks at the answers every
    `POLL_EVERY` messages added and waits on the selector only when it has nothing left to plan (`finish`)
    or the backlog bound is reached; up to `max_concurrency` requests are in flight. A retry's backoff is a
    timer in that loop, so it never holds up the other requests' answers. A start that would wait on the
    network (a connection to open, a send through botocore: the sender is not `ready`) runs on a thread of
    its own, so those waits overlap as they did on the send threads.

    Everything else is `DeliveryRun`'s: the same packing, `_FifoGroups` (never two requests holding one
    group), the same retry and order rules (`Deliverer._settle`), `standard_in_flight`, the backlog
    bound, parking by receipts, errors re-raised by `finish`. Used when every sender is on the direct path
    and what is called back per request can be handed off (`Deliverer.multiplexed`); why: docs/decisions.md
    (2026-12-02, "One thread multiplexes the direct sends", "Checkpointed runs on the one-thread path").

    With checkpoints on (`on_delivered`), what each answered request stored goes to the `CheckpointHandOff`
    and the run goes on; a standard target's request keeps its slot (`standard_in_flight`, the backlog
    bound, `max_concurrency`) until its hand-over is written, as a send thread wrote before its next send,
    so a crash still finds at most N standard requests stored and unrecorded. A FIFO request frees its slot
    and groups at its answer (re-sends are dropped by deduplication id). `finish` returns once every
    hand-over is written; `__exit__` (an exception, Ctrl-C) still writes what was handed over."""

    def __init__(self, deliverer: Deliverer, on_delivered: OnDelivered | None = None, *,
                 keep_delivered: bool = True, standard_in_flight: int | None = None,
                 standard_entries: int = MAX_BATCH_ENTRIES) -> None:
        super().__init__(deliverer, on_delivered, keep_delivered=keep_delivered,
                         standard_in_flight=standard_in_flight, standard_entries=standard_entries)
        self._selector = selectors.DefaultSelector()
        self._cap = deliverer.max_concurrency
        self._requests = 0  # in flight or waiting out a backoff: at most `_cap`
        self._standard = 0  # of them, to standard targets (`standard_in_flight`)
        self._flying: set[_Request] = set()  # those in flight, registered with the selector
        self._backoffs: list[tuple[float, int, _Request]] = []  # heap: when each waiting one goes again
        self._order = 0  # tie-breaker of `_backoffs`
        self._since_look = 0  # messages added since the answers were last looked at
        # Starts that wait on the network (a connection to open, a send through botocore) run on starter
        # threads, each start on a thread not busy with another and at most `max_concurrency` at once, as the
        # send threads did them side by side: on the planning thread, an endpoint that takes no connections
        # cost every request its connect timeout in turn. What they came to is queued in `_started`, and a
        # byte on `_wake` wakes the selector. A starter done with its start waits for the next until the run
        # ends, rather than one thread per start: `Thread.start` holds the caller until the new thread runs,
        # and a fresh bridge's run at 10 ms made ~25 of them, 0.5-1.8 ms each on a loaded machine
        # (benchmarks/bench_multiplex.py --fresh).
        self._starters: list[threading.Thread] = []
        self._to_start: deque[tuple[MultiplexedSender, _Request]] = deque()  # starts no starter took yet
        self._idle_starters = 0  # starters waiting for a start
        self._starter_work = threading.Condition()  # notified when a start is queued, or the run is over
        self._run_over = False
        self._started: deque[_Started] = deque()
        self._starting = 0  # requests whose start runs on a starter thread
        self._wake: tuple[socket.socket, socket.socket] | None = None
        # With `on_delivered` (checkpoints on) its calls are handed off (`Deliverer.multiplexed`): a checkpoint
        # write blocks on DynamoDB, which here would hold every request in flight. `_unwritten` counts the
        # hand-overs not yet written; `finish` returns only once there are none.
        self._writes: CheckpointHandOff | None = None
        self._unwritten = 0
        if on_delivered is not None and deliverer._hand_off is not None:
            self._writes = deliverer._hand_off(on_delivered)
            self._selector.register(self._writes.fileno(), selectors.EVENT_READ, _WRITES)

    def __exit__(self, *_: object) -> None:
        # An exception or Ctrl-C in planning: the requests still in flight are given up (their
        # connections closed, never back in the idle pool half-read), the starts under way waited for (as
        # the send threads are: bounded by the clients' timeouts) and what they started given up too.
        # Each step runs whatever an earlier one raised: a cancel that fails must not leave the checkpoint
        # writer's thread waiting for ever, or the selector and socket pairs open in a warm container.
        try:
            with self._starter_work:
                self._run_over = True
                self._starter_work.notify_all()
            for starter in self._starters:
                starter.join()
            self._starters.clear()
            flying, self._flying = self._flying, set()
            for request in flying:
                if request.handle is not None:
                    request.handle.cancel()
            while self._started:
                handle = self._started.popleft()[1]
                if handle is not None:
                    handle.cancel()
            self._backoffs.clear()
        finally:
            try:
                if self._writes is not None:  # what the answered requests stored is still written, as on send threads
                    self._writes.close()
            finally:
                self._selector.close()
                if self._wake is not None:
                    for end in self._wake:
                        end.close()

    def add(self, target: Target, message: OutgoingMessage) -> None:
        """Queue one message (as `DeliveryRun.add`); every `POLL_EVERY` messages, start what is ready and
        take the answers that arrived; at the backlog bound, wait for answers until there is room."""
        if message.size > target.max_bytes:
            raise MessageTooLargeError(f"a message of {message.size} bytes exceeds the {target.max_bytes}-byte "
                                       "limit")
        if target.fifo:
            if self._put_fifo(target, message) is None:
                return
        else:
            batch = self._open.get(target.name)
            if batch is None:
                batch = self._open[target.name] = (target, [], [0])
            messages, size = batch[1], batch[2]
            if messages and (len(messages) >= self._standard_entries or size[0] + message.size > target.max_bytes):
                self._waiting.append((target, list(messages)))
                self._pending += 1
                messages.clear()
                size[0] = 0
            messages.append(message)
            size[0] += message.size
        self._since_look += 1
        if self._since_look >= POLL_EVERY:
            self._since_look = 0
            self._turn(0.0)
            while self._backlogged() and self._requests and not self._errors:
                self._turn(None)

    def finish(self) -> list[DeliveryReceipt]:
        """Send what is still open and wait for everything; one receipt per message added."""
        self._finishing = True
        for target, messages, _ in self._open.values():
            if messages:
                self._waiting.append((target, list(messages)))
                self._pending += 1
        self._open.clear()
        self._launch()
        while self._requests or self._unwritten:
            self._turn(None)
        if self._errors:
            raise self._errors[0]
        return self._receipts

    def _turn(self, timeout: float | None) -> None:
        """Move every request on: take what the connections have for it, waiting up to `timeout` (None:
        until an answer, a deadline or a backoff falls due), give up the requests past their deadline, send
        again the batches whose backoff is over, then start what is ready."""
        blocking = timeout is None
        if blocking:
            timeout = self._until_due()
            if self._starting or self._unwritten:  # a wake-up byte whose send failed must not hold the run
                timeout = LOOK_ANYWAY_S if timeout is None else min(timeout, LOOK_ANYWAY_S)
        if self._flying or self._starting or self._unwritten or blocking:
            ready = self._selector.select(timeout)
            for key, _ in ready:
                if key.data is None:  # `_wake`: starts made on starter threads
                    self._take_started()
                elif key.data is _WRITES:
                    self._take_written()
                else:
                    self._step(key.data)
            if blocking and not ready:  # nothing woke the selector: take what may be there all the same
                if self._starting:
                    self._take_started()
                if self._unwritten:
                    self._take_written()
        if self._backoffs or blocking:
            now = time.monotonic()
            if blocking:
                for request in [r for r in self._flying if r.handle is not None and r.handle.deadline <= now]:
                    self._step(request, expired=True)
            while self._backoffs and self._backoffs[0][0] <= now:
                self._send(heapq.heappop(self._backoffs)[2])
        self._launch()

    def _until_due(self) -> float | None:
        due = [r.handle.deadline for r in self._flying if r.handle is not None]
        if self._backoffs:
            due.append(self._backoffs[0][0])
        first = min(due, default=math.inf)
        return None if first == math.inf else max(0.0, first - time.monotonic())

    def _launch(self) -> None:
        """Start the batches that are ready, up to `max_concurrency` requests: standard targets' in the
        order they closed (at most `standard_in_flight` of them), FIFO targets' as `_FifoGroups.take` gives
        them."""
        cap, limit = self._cap, self._standard_in_flight
        while self._requests < cap:
            started = False
            if self._waiting and (limit is None or self._standard < limit):
                target, batch = self._waiting.popleft()
                self._standard += 1
                self._begin(target, batch, None)
                started = True
            for groups in self._fifo.values():
                if self._requests >= cap:
                    break
                fifo_batch = groups.take(self._finishing)
                if fifo_batch is not None:
                    self._begin(groups.target, fifo_batch, groups)
                    started = True
            if not started:
                return

    def _begin(self, target: Target, batch: list[OutgoingMessage], groups: _FifoGroups | None) -> None:
        self._requests += 1
        request = _Request(target, batch, groups, batch, [])
        if groups is not None and groups.halted:  # as `Deliverer._send_fifo_batch`
            request.receipts = [DeliveryReceipt(m, False, 0, HELD_BACK) for m in batch if m.group_id in groups.halted]
            request.pending = [m for m in batch if m.group_id not in groups.halted]
            if not request.pending:
                self._close(request)
                return
        self._send(request)

    def _send(self, request: _Request) -> None:
        """One attempt: the request left in flight, or (a client not on the direct path yet) sent here; on a
        starter thread when that would wait on the network (`ready`)."""
        sender: MultiplexedSender = self._deliverer._senders[request.target.type]  # type: ignore[assignment]
        if not getattr(sender, "ready", True):
            self._start_waiting(sender, request)
            return
        try:
            handle = sender.start(request.target, request.pending)
            if handle is None:  # the client's first requests, or entries only botocore serialises
                outcome = sender.send_batch(request.target, request.pending)
                self._answered(request, outcome.failures)
                return
        except SendCallError as exc:
            self._answered(request, call_failures(exc, len(request.pending)))
            return
        except Exception as exc:  # re-raised by finish, as the send threads' errors are
            self._failed(request, exc)
            return
        self._fly(request, handle)

    def _fly(self, request: _Request, handle: InFlight) -> None:
        request.handle, request.fd = handle, handle.fileno()
        request.events = selectors.EVENT_WRITE if handle.wants_write else selectors.EVENT_READ
        self._selector.register(request.fd, request.events, request)
        self._flying.add(request)

    def _start_waiting(self, sender: MultiplexedSender, request: _Request) -> None:
        """Start `request` on a starter thread; `_take_started` takes what it came to."""
        if self._wake is None:
            self._wake = socket.socketpair()
            self._wake[0].setblocking(False)
            self._selector.register(self._wake[0], selectors.EVENT_READ, None)
        self._starting += 1
        with self._starter_work:
            self._to_start.append((sender, request))
            if self._idle_starters >= len(self._to_start):  # a waiting starter for each: none waits behind another
                self._starter_work.notify()
                return
        starter = threading.Thread(target=self._starter, args=(self._wake[1],), daemon=True,
                                   name=f"bridge-start-{len(self._starters)}")
        try:
            starter.start()
        except Exception as exc:  # no thread to be had (Lambda's thread limit, no memory): unless a starter that
            with self._starter_work:  # came free took it meanwhile, the start fails, and finish raises it
                try:
                    self._to_start.remove((sender, request))
                except ValueError:
                    return
            self._starting -= 1
            self._failed(request, exc)
            return
        self._starters.append(starter)  # only a started thread: `__exit__` joins each

    def _starter(self, wake: socket.socket) -> None:
        """A starter thread: the starts queued for it, one after another, until the run is over."""
        outcome: _Started | None = None
        while True:
            with self._starter_work:
                # Counted waiting before its outcome can be seen: a retry that outcome sets off reuses this
                # thread rather than starting one more.
                self._idle_starters += 1
                if outcome is not None:
                    self._started.append(outcome)
            if outcome is not None:
                with contextlib.suppress(OSError):  # the outcome is queued: `_turn` looks for it anyway
                    wake.send(b"\0")
            with self._starter_work:
                while not self._to_start and not self._run_over:
                    self._starter_work.wait()
                self._idle_starters -= 1
                if self._run_over:  # the run is given up (or done): starts not taken yet never will be
                    return
                sender, request = self._to_start.popleft()
            outcome = self._start_off_thread(sender, request)

    def _start_off_thread(self, sender: MultiplexedSender, request: _Request) -> _Started:
        """On a starter thread: `_send`'s attempt, up to the request in flight (or its outcome, when botocore
        sent it or no connection could be opened)."""
        handle: InFlight | None = None
        failures: Sequence[EntryFailure] = ()
        error: Exception | None = None
        try:
            handle = sender.start(request.target, request.pending)
            if handle is None:
                failures = sender.send_batch(request.target, request.pending).failures
        except SendCallError as exc:
            failures = call_failures(exc, len(request.pending))
        except Exception as exc:  # re-raised by finish, as the send threads' errors are
            error = exc
        except BaseException as exc:  # not this thread's to end the run: finish raises it
            error = RuntimeError(f"{exc!r} on a starter thread")
        return request, handle, failures, error

    def _take_started(self) -> None:
        """What the starter threads came to: requests in flight now, or their attempts' outcomes."""
        wake = self._wake[0] if self._wake is not None else None
        try:
            while wake is not None and wake.recv(4096):
                pass
        except BlockingIOError:
            pass
        while self._started:
            request, handle, failures, error = self._started.popleft()
            self._starting -= 1
            if error is not None:
                self._failed(request, error)
            elif handle is not None:
                self._fly(request, handle)
            else:
                self._answered(request, failures)

    def _step(self, request: _Request, *, expired: bool = False) -> None:
        handle = request.handle
        if handle is None or request not in self._flying:  # settled earlier in this turn
            return
        try:
            outcome = handle.step(expired)
        except SendCallError as exc:
            self._landed(request)
            self._answered(request, call_failures(exc, len(request.pending)))
            return
        except Exception as exc:  # re-raised by finish, as the send threads' errors are
            self._landed(request)
            handle.cancel()
            self._failed(request, exc)
            return
        if outcome is None:
            events = selectors.EVENT_WRITE if handle.wants_write else selectors.EVENT_READ
            if events != request.events:
                request.events = events
                self._selector.modify(request.fd, events, request)
            return
        self._landed(request)
        self._answered(request, outcome.failures)

    def _landed(self, request: _Request) -> None:
        self._flying.discard(request)
        self._selector.unregister(request.fd)
        request.handle, request.fd = None, -1

    def _answered(self, request: _Request, failures: Sequence[EntryFailure]) -> None:
        """An attempt's outcome: the batch done, or waiting out its backoff. What it stored is handed over
        to be written (`_writes`), or `on_delivered` is called here when there is no hand-off."""
        groups = request.groups
        writes = self._writes
        stored: list[Sequence[OutgoingMessage]] = []
        try:
            retry = self._deliverer._settle(request.target, request.pending, failures, request.attempt,
                                            groups.halted if groups is not None else None,
                                            self._on_delivered if writes is None else stored.append,
                                            request.receipts, delivered=self._keep_delivered)
        except Exception as exc:  # re-raised by finish, as the send threads' errors are
            self._failed(request, exc)
            return
        if stored and writes is not None:
            request.unwritten += len(stored)
            self._unwritten += len(stored)
            for messages in stored:
                writes.hand_over(messages, request)
        if not retry:
            self._close(request)
            return
        deliverer = self._deliverer
        due = time.monotonic() + backoff_delay(request.attempt, deliverer._base_delay_ms, deliverer._rand)
        request.pending = retry
        request.attempt += 1
        heapq.heappush(self._backoffs, (due, self._order, request))
        self._order += 1

    def _close(self, request: _Request) -> None:
        """The batch is done: its receipts kept, its slot (and FIFO groups) free; a standard target's slot
        only once what it stored is written (`standard_in_flight` counts a request until then)."""
        groups, batch = request.groups, request.batch
        if groups is None:
            self._keep_locked(request.target, request.receipts, len(batch))
            if request.unwritten:
                request.settled = True  # `_take_written` frees the slot
                return
            self._requests -= 1
            self._standard -= 1
            self._pending -= 1
            return
        self._requests -= 1
        held = groups.release(batch)
        self._fifo_pending -= len(batch) + len(held)
        self._keep_locked(request.target, request.receipts + held, len(batch) + len(held))

    def _take_written(self) -> None:
        """The hand-overs written since the last look: a standard request done but for its writes frees its
        slot; an exception a write raised is kept for `finish`."""
        assert self._writes is not None
        for ticket, error in self._writes.written():
            self._unwritten -= 1
            if error is not None:
                self._errors.append(error)
            request: _Request = ticket  # type: ignore[assignment]
            request.unwritten -= 1
            if request.settled and not request.unwritten:
                request.settled = False
                self._requests -= 1
                self._standard -= 1
                self._pending -= 1

    def _failed(self, request: _Request, exc: Exception) -> None:
        """An error no receipt describes (a bug, an answer botocore cannot parse): kept for `finish` to
        raise. As on the send threads, a FIFO batch's groups stay busy: nothing more of them is sent."""
        self._errors.append(exc)
        if request.groups is None and request.unwritten:  # an earlier attempt's stored messages are not
            request.settled = True  # written yet: the slot stays taken until they are (`_take_written`), as
            return  # `_close` keeps it, or a crash could re-send more than N x E
        self._requests -= 1
        if request.groups is None:
            self._standard -= 1
            self._pending -= 1
