"""`DeliveryRun._send_standard`'s direct path, when the planning thread sends a standard batch itself, against
the hand-off it replaces (`_submit` of a `_collect` of one batch, which runs at once when no send thread is
wanted).

The direct path must come to the same thing in every case: the same requests in the same order, the same
retries and backoffs, the same receipts and delivered counts, `on_delivered` called with the same messages,
an error in a send kept and raised by `finish` while later batches still go, and the pacing fed the same
requests (`SendPacing`: requests counted, samples taken, the estimate taken again at the same points).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from functools import partial
from typing import Any

import pytest
from bridge.delivery import PACE_SAMPLES, BatchOutcome, Deliverer, DeliveryRun, SendCallError, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import FakeSender

LIMIT = 1000
QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/t-out", LIMIT)
OTHER = Target("feed", "sns", "arn:aws:sns:us-east-1:123456789012:t-feed", LIMIT)


class HandedOver(DeliveryRun):
    """The run as it sent an uncapped standard batch before the direct path: counted pending, then handed to
    `_submit` as a `_collect` of one batch (run at once by `_submit` while no send thread is wanted)."""

    def _send_standard(self, target: Target, batch: list[OutgoingMessage]) -> None:
        assert self._standard_in_flight is None
        with self._lock:
            self._pending += 1
        self._submit(partial(self._collect, target, [batch]))


class Flaky(FakeSender):
    """A fake whose entries fail by a seeded plan: a retryable or sender-fault code for some attempts of some
    messages, a call error now and then, and now and then an exception that is not a SendCallError (a bug in
    a sender), which the run keeps for `finish` to raise."""

    def __init__(self, seed: int) -> None:
        super().__init__(reject=self._verdict)
        self._rng = random.Random(seed)
        self.raised_at: list[int] = []  # the calls that raised a RuntimeError (1-based)

    def _verdict(self, target: Target, message: OutgoingMessage) -> tuple[str, bool] | None:
        roll = self._rng.random()
        if roll < 0.12:
            return ("ServiceUnavailable", False)
        if roll < 0.15:
            return ("InvalidParameterValue", True)
        return None

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        roll = self._rng.random()
        if roll < 0.03:
            self.calls.append((target, list(messages)))
            self.raised_at.append(len(self.calls))
            raise RuntimeError(f"sender bug on call {len(self.calls)}")
        if roll < 0.08:
            self.call_errors.append(SendCallError("ThrottlingException", retryable=roll < 0.06))
        return super().send_batch(target, messages)


def run_once(run_class: type[DeliveryRun], seed: int, *, keep_delivered: bool, callback: bool, attempts: int,
             max_concurrency: int, entries: int) -> dict[str, Any]:
    """Everything observable of one run over a seeded plan of messages, chunks and failures."""
    rng = random.Random(seed)
    sender = Flaky(seed)
    sleeps: list[float] = []
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=attempts, base_delay_ms=10,
                          max_concurrency=max_concurrency, sleep=sleeps.append, rand=lambda lo, hi: hi)
    if max_concurrency > 1:  # a warm function whose requests were measured as their own CPU: sends inline
        deliverer.pacing.samples.extend([(0.0, 1e-5)] * PACE_SAMPLES)
    called: list[list[str]] = []
    calls = 0

    def on_delivered(messages: Sequence[OutgoingMessage]) -> None:
        nonlocal calls
        calls += 1
        called.append([m.record_id for m in messages])
        if calls % 17 == 0:
            raise OSError(f"checkpoint write {calls} failed")

    run = run_class(deliverer, on_delivered if callback else None, keep_delivered=keep_delivered,
                    standard_entries=entries)
    error: str | None = None
    with run:
        assert run._senders == 0  # the planning thread sends: the case the direct path is for
        n = rng.choice([1, 9, 10, 11, 95, 240])
        for i in range(n):
            target = QUEUE if rng.random() < 0.75 else OTHER
            size = rng.choice([1, 90, 333, 500, 999, LIMIT])
            m = OutgoingMessage(f"orders-0-{i}", target.name, "x", (), f"c{i}", size)
            if rng.random() < 0.5:
                run.add(target, m)
            else:
                run.add_all(target, [m])
        try:
            receipts = run.finish()
        except (RuntimeError, OSError) as exc:
            error, receipts = f"{type(exc).__name__}: {exc}", run._receipts
    return {
        "requests": [(t.name, [m.record_id for m in ms]) for t, ms in sender.calls],
        "receipts": [(r.message.record_id, r.delivered, r.attempts, r.code, r.sender_fault, r.order_break)
                     for r in receipts],
        "delivered": dict(run.delivered),
        "on_delivered": called,
        "sleeps": sleeps,
        "error": error,
        "errors": [f"{type(e).__name__}: {e}" for e in run._errors],
        "raised_at": sender.raised_at,
        "done": run._done,
        "pending": run._pending,
        "paced_at": run._paced_at,
        "estimated": deliverer.pacing.cpu_per_request is not None,
        "requests_counted": deliverer.pacing.requests,
        "samples": len(deliverer.pacing.samples),
        "in_flight": dict(deliverer.pacing.in_flight),
        "senders": run._senders,
        "threads": len(run._threads),
    }


@pytest.mark.parametrize("max_concurrency", [1, 4])
@pytest.mark.parametrize(("keep_delivered", "callback"), [(False, False), (True, False), (False, True),
                                                          (True, True)])
@pytest.mark.parametrize("seed", range(12))
def test_the_direct_send_comes_to_what_the_hand_off_came_to(seed: int, keep_delivered: bool, callback: bool,
                                                            max_concurrency: int) -> None:
    # given a seeded plan of messages to two standard targets, entries that fail (retryable or not), call
    # errors, a sender that raises now and then, and an on_delivered that fails now and then
    attempts = 1 + seed % 3
    entries = [10, 10, 4, 1][seed % 4]
    options = {"keep_delivered": keep_delivered, "callback": callback, "attempts": attempts,
               "max_concurrency": max_concurrency, "entries": entries}

    # when one run sends each batch directly and another hands it over as before
    direct = run_once(DeliveryRun, seed, **options)
    handed = run_once(HandedOver, seed, **options)

    # then everything either run shows is the same
    assert direct == handed
    assert direct["pending"] == 0
    assert direct["threads"] == 0


def test_the_comparison_covers_retries_failures_errors_and_the_pacing_estimate() -> None:
    # given the seeds the comparison runs
    seen = [run_once(DeliveryRun, seed, keep_delivered=True, callback=True, attempts=1 + seed % 3,
                     max_concurrency=1, entries=[10, 10, 4, 1][seed % 4]) for seed in range(12)]

    # then between them they retry, deliver, fail, raise, and take the estimate again
    receipts = [r for s in seen for r in s["receipts"]]
    assert any(attempt > 1 and ok for _, ok, attempt, *_ in receipts)  # delivered on a retry
    assert any(not ok and fault for _, ok, _, _, fault, _ in receipts)  # a sender fault, not retried
    assert any(not ok and not fault for _, ok, _, _, fault, _ in receipts)  # retries ran out
    assert any(s["sleeps"] for s in seen)
    assert any(s["error"] and s["error"].startswith("RuntimeError") for s in seen)
    assert any(e.startswith("OSError") for s in seen for e in s["errors"])
    assert any(s["estimated"] for s in seen)
    assert any(s["paced_at"] >= PACE_SAMPLES for s in seen)
    # a send raised, and later batches of the same run were still sent
    assert any(s["raised_at"] and s["raised_at"][0] < len(s["requests"]) for s in seen)
