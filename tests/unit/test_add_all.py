"""`DeliveryRun.add_all`, the planning fast path's hand-off of many messages at once, against `add` one by one.

The fast path (bridge.fast_path) hands a run of records' messages to one call; whatever the chunks, the run must
send the same requests, in the same order, as `add` per message would: the same cut at 10 entries (or the
run's `standard_entries`) and at the byte limit, the same oversize error, FIFO targets and send threads as
before, and a run class that adds its own way (`MultiplexedRun`) still adding its own way.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from bridge.delivery import Deliverer, DeliveryRun, Target
from bridge.envelope import OutgoingMessage
from bridge.packing import MessageTooLargeError

from tests.helpers import FakeSender

LIMIT = 1000
QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/t-out", LIMIT)
OTHER = Target("feed", "sns", "arn:aws:sns:us-east-1:123456789012:t-feed", LIMIT)
FIFO = Target("ordered", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/t.fifo", LIMIT, fifo=True)


def message(i: int, dest: str, size: int, group: str | None = None) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", dest, "x", (), f"c{i}", size, group, f"d{i}" if group else None)


def sizes(rng: random.Random, n: int) -> list[int]:
    """Sizes that hit the byte limit often: small ones, and some near half or all of it."""
    return [rng.choice([1, 7, 90, 333, 499, 500, 501, 999, LIMIT]) for _ in range(n)]


def chunks(rng: random.Random, items: list[Any]) -> list[list[Any]]:
    out, i = [], 0
    while i < len(items):
        n = rng.choice([0, 1, 2, 9, 10, 11, 64])
        out.append(items[i:i + n])
        i += n
    return out


def deliver(messages: Sequence[tuple[Target, OutgoingMessage]], *, all_at_once: bool, rng: random.Random,
            **start: Any) -> list[tuple[str, list[str]]]:
    """Every request the run sends (target, record ids), one sender, one planning thread sending."""
    sender = FakeSender()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0)
    with deliverer.start(keep_delivered=False, **start) as run:
        if all_at_once:
            # runs of one target, cut into chunks of any length (none too: an empty hand-off)
            runs: list[tuple[Target, list[OutgoingMessage]]] = []
            for target, m in messages:
                if runs and runs[-1][0] is target:
                    runs[-1][1].append(m)
                else:
                    runs.append((target, [m]))
            for target, ms in runs:
                for chunk in chunks(rng, ms):
                    run.add_all(target, chunk)
        else:
            for target, m in messages:
                run.add(target, m)
        assert run.finish() == []
    return [(target.name, [m.record_id for m in ms]) for target, ms in sender.calls]


@pytest.mark.parametrize("entries", [10, 4, 1])
@pytest.mark.parametrize("seed", range(20))
def test_add_all_sends_the_requests_add_sends_one_by_one(seed: int, entries: int) -> None:
    # given messages to two standard targets, in runs, sizes that fill a request by bytes as often as by count
    rng = random.Random(seed)
    targets = [QUEUE if rng.random() < 0.7 else OTHER for _ in range(300)]
    # (runs of one target: a fast path hands over one target's messages at a time)
    targets.sort(key=lambda t: rng.random() < 0.5)
    planned = [(t, message(i, t.name, s)) for i, (t, s) in enumerate(zip(targets, sizes(rng, 300), strict=True))]

    # when one run takes them one by one and another in chunks of any length
    one_by_one = deliver(planned, all_at_once=False, rng=random.Random(seed), standard_entries=entries)
    at_once = deliver(planned, all_at_once=True, rng=random.Random(seed), standard_entries=entries)

    # then both send the same requests in the same order
    assert at_once == one_by_one
    assert sum(len(ids) for _, ids in at_once) == 300
    assert max(len(ids) for _, ids in at_once) == entries or entries == 10


@pytest.mark.parametrize("seed", range(10))
def test_add_all_to_a_fifo_target_sends_what_add_sends(seed: int) -> None:
    # given FIFO messages of a few groups
    rng = random.Random(seed)
    planned = [(FIFO, message(i, FIFO.name, s, rng.choice("abc"))) for i, s in enumerate(sizes(rng, 120))]

    # when added one by one and all at once
    one_by_one = deliver(planned, all_at_once=False, rng=random.Random(seed))
    at_once = deliver(planned, all_at_once=True, rng=random.Random(seed))

    # then the requests are the same
    assert at_once == one_by_one


def test_an_oversize_message_raises_as_add_raises_and_the_ones_before_it_still_go() -> None:
    # given messages whose fourth is over the limit
    sender = FakeSender()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0)
    ms = [message(i, "out", 100) for i in range(3)] + [message(3, "out", LIMIT + 1), message(4, "out", 100)]
    with deliverer.start(keep_delivered=False) as run:
        # when they are handed over at once
        with pytest.raises(MessageTooLargeError, match=f"{LIMIT + 1} bytes exceeds the {LIMIT}-byte limit"):
            run.add_all(QUEUE, ms)
        # then the three before it are still open, with their bytes counted: a fourth of 701 bytes closes them
        run.add_all(QUEUE, [message(5, "out", LIMIT - 299)])
        run.finish()
    assert [[m.record_id for m in batch] for _, batch in sender.calls] == [
        ["orders-0-0", "orders-0-1", "orders-0-2"], ["orders-0-5"]]


def test_with_send_threads_add_all_delivers_every_message_once() -> None:
    # given a run that sends from threads (more than one wanted from the start)
    names: set[str] = set()

    class Threaded(FakeSender):
        def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> Any:
            names.add(threading.current_thread().name)
            return super().send_batch(target, messages)

    sender = Threaded()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0, max_concurrency=4)
    ms = [message(i, "out", 50) for i in range(1000)]
    with deliverer.start(keep_delivered=False) as run:
        run._senders = 4  # as the pacing would want for requests that wait on the network
        # when the messages are handed over in chunks
        for i in range(0, 1000, 64):
            run.add_all(QUEUE, ms[i:i + 64])
        assert run.finish() == []

    # then every message went out once, ten per request, from the threads
    assert sorted(m.record_id for m in sender.sent["out"]) == sorted(m.record_id for m in ms)
    assert all(len(batch) == 10 for _, batch in sender.calls)
    assert names
    assert all(n.startswith("bridge-send-") for n in names)


class SlowSender(FakeSender):
    """A request that takes a millisecond: planning outruns the send threads and meets the backlog bound."""

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> Any:
        time.sleep(0.001)
        return super().send_batch(target, messages)


@pytest.mark.parametrize("in_flight", [None, 2])
@pytest.mark.parametrize("all_at_once", [False, True])
def test_with_slow_send_threads_the_backlog_stays_within_its_bound_for_add_all_as_for_add(
        all_at_once: bool, in_flight: int | None) -> None:
    # given a run that sends from threads, and requests slower than planning
    sender = SlowSender()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0, max_concurrency=4)
    rng = random.Random(7)
    ms = [message(i, "out", rng.choice([10, 400, 999])) for i in range(3000)]
    peak = 0
    with deliverer.start(keep_delivered=False, standard_in_flight=in_flight) as run:
        run._senders = 4
        send_standard = run._send_standard

        def counting(target: Target, batch: list[OutgoingMessage]) -> None:  # the pending count as it grows
            nonlocal peak
            send_standard(target, batch)
            peak = max(peak, run._pending)

        run._send_standard = counting  # type: ignore[method-assign]
        # when the messages are handed over: one large hand-off that starts the threads (the whole of a
        # topic's run), then chunks of a fast path's length, each while the backlog is likely full
        if all_at_once:
            run.add_all(QUEUE, ms[:1000])
            for i in range(1000, 3000, 64):
                run.add_all(QUEUE, ms[i:i + 64])
        else:
            for m in ms:
                run.add(QUEUE, m)
        del run._send_standard  # finish sends the open batch whatever the backlog: not counted
        assert run.finish() == []

    # then every message went out once, and the pending requests never passed the bound (and did reach it:
    # the bound was put to the test)
    assert sorted(m.record_id for m in sender.sent["out"]) == sorted(m.record_id for m in ms)
    assert peak == run._max_pending == 16


def test_a_run_class_with_its_own_add_gets_every_message_through_it() -> None:
    # given a run class that adds its own way (as MultiplexedRun does)
    seen: list[str] = []

    class Own(DeliveryRun):
        def add(self, target: Target, message: OutgoingMessage) -> None:
            seen.append(message.record_id)
            super().add(target, message)

    sender = FakeSender()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0)
    with Own(deliverer, keep_delivered=False) as run:
        # when messages are handed over at once
        run.add_all(QUEUE, [message(i, "out", 10) for i in range(25)])
        run.finish()

    # then each went through its add, in order
    assert seen == [f"orders-0-{i}" for i in range(25)]
    assert [len(batch) for _, batch in sender.calls] == [10, 10, 5]
