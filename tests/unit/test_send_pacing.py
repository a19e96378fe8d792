"""Pacing: how many requests a run has in flight follows what its requests measure (`SendPacing`).

Driven by real senders that are slow (they wait, as on the network) or instant (the work is all CPU, as a
stubbed sender or a loopback endpoint answering at once); the assertions are on the concurrency the sender
observed and on which thread sent, never on how long anything took.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import SQS_MAX_MESSAGE_BYTES
from bridge.delivery import PACE_SAMPLES, BatchOutcome, Deliverer, Target
from bridge.envelope import OutgoingMessage

QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", SQS_MAX_MESSAGE_BYTES)
CAP = 8


class Observed:
    """A sender whose requests take `wait(call)` seconds off the CPU (0: answered at once); records the
    requests in flight at once, the peak, and the thread that sent each request."""

    def __init__(self, wait: Callable[[int], float]) -> None:
        self.wait = wait
        self.calls = 0
        self.in_flight = 0
        self.peak = 0
        self.threads: list[int] = []
        self.stored: list[str] = []
        self._lock = threading.Lock()

    def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
        with self._lock:
            call = self.calls
            self.calls += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            self.threads.append(threading.get_ident())
        pause = self.wait(call)
        if pause:
            time.sleep(pause)
        with self._lock:
            self.in_flight -= 1
            self.stored += [m.record_id for m in messages]
        return BatchOutcome()


def send(deliverer: Deliverer, count: int, first: int = 0) -> None:
    receipts = deliverer.deliver([(QUEUE, [OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1)
                                           for i in range(first, first + count)])])
    assert len(receipts) == count
    assert all(r.delivered for r in receipts)


def deliverer(sender: Observed) -> Deliverer:
    return Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0, max_concurrency=CAP)


def test_requests_that_wait_on_the_network_grow_to_max_concurrency() -> None:
    # given: every request waits 20 ms off the CPU, as a request to AWS does
    sender = Observed(lambda call: 0.02)

    # when: 60 requests' worth
    send(deliverer(sender), 600)

    # then: the run grew to the cap, and sent every message once
    assert sender.peak == CAP
    assert sorted(sender.stored) == sorted(f"orders-0-{i}" for i in range(600))


def test_requests_that_are_all_cpu_stay_on_the_planning_thread() -> None:
    # given: a sender that answers at once (its work is all CPU, like a stubbed sender)
    sender = Observed(lambda call: 0.0)
    d = deliverer(sender)

    # when: a first run measures the requests (before anything is measured a run starts one send thread,
    # which on a loaded machine may look stalled and get a second), then three more runs
    send(d, 200)
    first_run = len(sender.threads)
    sender.peak = 0
    for run in range(3):
        send(d, 500, first=1000 * (run + 1))

    # then: after the first run, never two requests at once, every one sent on the caller's thread (no
    # hand-off at all), though max_concurrency allows 8
    assert sender.peak == 1
    assert set(sender.threads[first_run:]) == {threading.get_ident()}


def test_a_run_whose_requests_start_waiting_midway_grows_to_the_cap() -> None:
    # given: requests answered at once, so runs send on the planning thread; then, in the middle of a run,
    # every request from the 30th on waits 20 ms
    slow_from = [10**9]
    sender = Observed(lambda call: 0.02 if call >= slow_from[0] else 0.0)
    d = deliverer(sender)
    send(d, 200)
    calls_before = sender.calls
    slow_from[0] = calls_before + 30

    # when: 90 requests' worth in one run
    send(d, 900)

    # then: the first requests of the run went out on the caller's thread, and once they waited the run
    # grew to the cap within the same run
    assert set(sender.threads[calls_before:calls_before + 30]) == {threading.get_ident()}
    assert sender.peak == CAP


def test_a_run_whose_requests_stop_waiting_midway_sends_from_one_thread_and_the_next_run_inline() -> None:
    # given: the first 40 requests of a run wait 20 ms each, the rest are answered at once
    sender = Observed(lambda call: 0.02 if call < 40 else 0.0)
    d = deliverer(sender)

    # when: 240 requests' worth in one run, then another run
    send(d, 2400)
    after = sender.threads[-PACE_SAMPLES * 10:]
    calls_before = sender.calls
    send(d, 300, first=10_000)

    # then: the run grew while requests waited, and its last requests went out on one thread; the next
    # run sends on the caller's thread
    assert sender.peak == CAP
    assert len(set(after)) == 1
    assert set(sender.threads[calls_before:]) == {threading.get_ident()}


def send_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("bridge-send")]


def test_no_send_thread_outlives_its_run_whether_it_finished_or_planning_failed() -> None:
    # given: requests that wait, so runs send from threads
    sender = Observed(lambda call: 0.005)
    d = deliverer(sender)

    # when: a run finishes, and another is abandoned by an error in planning after 30 full batches
    send(d, 300)
    after_finish = send_threads()
    def plan_then_fail() -> None:
        with d.start() as run:
            for i in range(305):
                run.add(QUEUE, OutgoingMessage(f"orders-1-{i}", "out", "x", (), f"c{i}", 1))
            raise RuntimeError("planning failed")

    with pytest.raises(RuntimeError, match="planning failed"):
        plan_then_fail()

    # then: no send thread is left running either way, and what was handed over before the error was sent
    assert sender.peak > 1
    assert after_finish == []
    assert send_threads() == []
    assert sorted(m for m in sender.stored if m.startswith("orders-1-")) == sorted(f"orders-1-{i}" for i in range(300))


def test_a_lone_batch_goes_out_on_the_callers_thread_even_when_requests_wait() -> None:
    # given: requests that wait, and a run that measured it (the next runs start their threads at once)
    sender = Observed(lambda call: 0.005)
    d = deliverer(sender)
    send(d, 300)
    assert sender.peak > 1

    # when: a run with one batch (the audit event, a few parked records)
    calls_before = sender.calls
    send(d, 7, first=5000)

    # then: it went out on the caller's thread, not handed to a send thread
    assert sender.threads[calls_before:] == [threading.get_ident()]
