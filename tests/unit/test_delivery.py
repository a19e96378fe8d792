"""Delivery: retries of failed entries and calls, sender faults not retried, backoff, FIFO order."""

from __future__ import annotations

import threading
from typing import Any

from bridge.config import SQS_MAX_MESSAGE_BYTES
from bridge.delivery import (
    MAX_BACKOFF_MS,
    BatchOutcome,
    Deliverer,
    EntryFailure,
    SendCallError,
    Target,
    backoff_delay,
)
from bridge.envelope import OutgoingMessage

from tests.helpers import FakeSender

QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/test-out", SQS_MAX_MESSAGE_BYTES)
FIFO = Target("ordered", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/t.fifo", SQS_MAX_MESSAGE_BYTES,
              fifo=True)


def message(i: int, dest: str = "out", size: int = 10) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", dest, "x" * size, (), f"c{i}", size)


def deliverer(sender: FakeSender, sleeps: list[float] | None = None, **kw: Any) -> Deliverer:
    kw.setdefault("max_attempts", 4)
    return Deliverer({"sqs": sender, "sns": sender}, base_delay_ms=100,
                     sleep=(sleeps.append if sleeps is not None else lambda s: None),
                     rand=lambda lo, hi: hi, **kw)


def test_entry_failing_transiently_is_retried_until_it_succeeds() -> None:
    flaky = {"orders-0-3": 2}  # fails twice, then goes through

    def reject(target: Target, m: OutgoingMessage) -> tuple[str, bool] | None:
        if flaky.get(m.record_id, 0) > 0:
            flaky[m.record_id] -= 1
            return ("InternalError", False)
        return None

    sender, sleeps = FakeSender(reject), []

    receipts = deliverer(sender, sleeps).deliver([(QUEUE, [message(i) for i in range(5)])])

    assert all(r.delivered for r in receipts)
    assert [len(b) for b in sender.calls_to("out")] == [5, 1, 1]  # only the failed entry is resent
    assert {r.message.record_id: r.attempts for r in receipts}["orders-0-3"] == 3
    assert sleeps == [0.1, 0.2]


def test_entry_failing_every_attempt_comes_back_failed_with_last_code() -> None:
    sender = FakeSender(lambda t, m: ("ServiceUnavailable", False) if m.record_id == "orders-0-1" else None)

    receipts = deliverer(sender, max_attempts=3).deliver([(QUEUE, [message(0), message(1)])])

    failed = [r for r in receipts if not r.delivered]
    assert [(r.message.record_id, r.code, r.attempts) for r in failed] == [("orders-0-1", "ServiceUnavailable", 3)]
    assert len(sender.calls) == 3


def test_sender_fault_is_not_retried() -> None:
    sender, sleeps = FakeSender(lambda t, m: ("InvalidMessageContents", True) if m.record_id == "orders-0-0"
                                else None), []

    receipts = deliverer(sender, sleeps).deliver([(QUEUE, [message(0), message(1)])])

    assert len(sender.calls) == 1
    assert sleeps == []
    (failed,) = [r for r in receipts if not r.delivered]
    assert failed.code == "InvalidMessageContents"
    assert failed.sender_fault
    assert failed.attempts == 1


def test_throttled_call_is_retried_whole() -> None:
    sender = FakeSender(call_errors=[SendCallError("ThrottlingException"), SendCallError("ConnectTimeoutError")])
    sleeps: list[float] = []

    receipts = deliverer(sender, sleeps).deliver([(QUEUE, [message(0), message(1)])])

    assert all(r.delivered for r in receipts)
    assert len(sender.calls) == 3
    assert sleeps == [0.1, 0.2]


def test_non_retryable_call_error_fails_every_entry_at_once() -> None:
    sender = FakeSender(call_errors=[SendCallError("AccessDenied", retryable=False)])

    receipts = deliverer(sender).deliver([(QUEUE, [message(0), message(1)])])

    assert [(r.delivered, r.code, r.attempts) for r in receipts] == [(False, "AccessDenied", 1)] * 2


def test_backoff_is_full_jitter_over_an_exponential_ceiling() -> None:
    bounds: list[tuple[float, float]] = []

    def rand(lo: float, hi: float) -> float:
        bounds.append((lo, hi))
        return hi / 2

    delays = [backoff_delay(a, 100, rand) for a in (1, 2, 3, 4)]

    assert bounds == [(0.0, 100.0), (0.0, 200.0), (0.0, 400.0), (0.0, 800.0)]
    assert delays == [0.05, 0.1, 0.2, 0.4]
    assert backoff_delay(30, 100, lambda lo, hi: hi) == MAX_BACKOFF_MS / 1000


def test_fifo_batches_go_out_in_order_one_after_another() -> None:
    sender = FakeSender()

    deliverer(sender, max_concurrency=8).deliver([(FIFO, [fifo_message(i, f"key-{i}") for i in range(35)])])

    sent = [m.record_id for m in sender.sent["ordered"]]
    assert sent == [f"orders-0-{i}" for i in range(35)]
    assert [len(b) for b in sender.calls_to("ordered")] == [10, 10, 10, 5]


def test_standard_batches_go_out_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)
    inner = FakeSender()

    class Waiting:
        def send_batch(self, target: Target, messages: Any) -> Any:
            barrier.wait()  # passes only when three batches are in flight together
            return inner.send_batch(target, messages)

    d = Deliverer({"sqs": Waiting(), "sns": Waiting()}, max_attempts=1, base_delay_ms=0, max_concurrency=3)

    receipts = d.deliver([(QUEUE, [message(i) for i in range(30)])])

    assert len(receipts) == 30
    assert all(r.delivered for r in receipts)


class FifoQueue:
    """In-memory FIFO queue: entries are stored in request order, a repeated dedup id is accepted but not
    stored again (SQS/SNS FIFO deduplication), and the entries named in `throttle_once` fail once."""

    def __init__(self, throttle_once: set[str]) -> None:
        self.throttle_once = set(throttle_once)
        self.stored: list[OutgoingMessage] = []
        self._seen: set[str | None] = set()

    def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
        failures = []
        for i, m in enumerate(messages):
            if m.record_id in self.throttle_once:
                self.throttle_once.discard(m.record_id)
                failures.append(EntryFailure(i, "InternalError", "try again"))
            elif m.dedup_id not in self._seen:
                self._seen.add(m.dedup_id)
                self.stored.append(m)
        return BatchOutcome(tuple(failures))

    def order_by_group(self) -> dict[str | None, list[str]]:
        groups: dict[str | None, list[str]] = {}
        for m in self.stored:
            groups.setdefault(m.group_id, []).append(m.record_id)
        return groups


def fifo_message(i: int, group: str) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", "ordered", "x", (), f"c{i}", 1, group_id=group, dedup_id=f"d{i}")


def test_fifo_entry_failing_once_keeps_the_order_within_its_group() -> None:
    # given: one message group in one request, its last entry throttled once (nothing after it accepted)
    queue = FifoQueue(throttle_once={"orders-0-2"})

    # when
    receipts = Deliverer({"sqs": queue, "sns": queue}, max_attempts=4, base_delay_ms=0, sleep=lambda s: None).deliver(
        [(FIFO, [fifo_message(i, "g") for i in range(3)])])

    # then: retried in place, accepted in Kafka order, every receipt delivered
    assert queue.order_by_group() == {"g": ["orders-0-0", "orders-0-1", "orders-0-2"]}
    assert [(r.message.record_id, r.delivered) for r in receipts] == [(f"orders-0-{i}", True) for i in range(3)]


def test_fifo_order_is_kept_per_group_when_groups_share_batches() -> None:
    # a's first entry fails after a's later ones were accepted: an order break, a's first is not resent;
    # b's second entry fails with nothing of b after it: retried in place
    queue = FifoQueue(throttle_once={"orders-0-0", "orders-0-3"})
    groups = ["a", "b", "a", "b", "a", "c"]

    receipts = Deliverer({"sqs": queue, "sns": queue}, max_attempts=4, base_delay_ms=0, sleep=lambda s: None).deliver(
        [(FIFO, [fifo_message(i, g) for i, g in enumerate(groups)])])

    assert queue.order_by_group() == {"a": ["orders-0-2", "orders-0-4"],
                                      "b": ["orders-0-1", "orders-0-3"], "c": ["orders-0-5"]}
    assert [(r.message.record_id, r.order_break) for r in receipts if not r.delivered] == [("orders-0-0", True)]
