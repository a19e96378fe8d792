"""Overlapped delivery: requests go out while records are planned, on several threads, and still
nothing is lost, nothing is sent twice, and what is parked does not depend on the overlap."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from bridge.adapters.checkpoint_writer import CheckpointWriter
from bridge.config import MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES
from bridge.delivery import (
    PENDING_BATCHES_PER_THREAD,
    BatchOutcome,
    Deliverer,
    EntryFailure,
    MultiplexedRun,
    SendCallError,
    Target,
)
from bridge.envelope import OutgoingMessage
from bridge.service import Bridge

from tests.helpers import Multiplexed, kafka_event, kafka_record, make_config, parked_docs

QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", SQS_MAX_MESSAGE_BYTES)
DLQ = "test-bridge-dev-bridge-dlq"
# Checked on both ways a run sends: send threads, and one thread multiplexing requests left in flight.
PATHS = pytest.mark.parametrize("one_thread", [False, True], ids=["send-threads", "one-thread"])


class FlakySender:
    """Thread-safe fake SQS/SNS: `entry_fails(message, attempt)` fails an entry (retryable) and
    `call_fails(call)` throttles a whole call; stores every accepted entry (no dedup, so a second send
    of one message would show). With `latency`, each call first waits that long off the CPU, as a request
    to AWS does, so delivery sends from several threads at once; `peak` is the most calls at once."""

    def __init__(self, entry_fails: Callable[[OutgoingMessage, int], bool] = lambda m, a: False,
                 call_fails: Callable[[int], bool] = lambda c: False, latency: float = 0.0) -> None:
        self.entry_fails = entry_fails
        self.call_fails = call_fails
        self.latency = latency
        self.in_flight = 0
        self.peak = 0
        self.accepted: dict[str, list[str]] = {}
        self.attempts: Counter[tuple[str, str]] = Counter()
        self.calls = 0
        self.first_call = threading.Event()
        self.dlq_messages: list[OutgoingMessage] = []
        self._lock = threading.Lock()

    def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
        self.first_call.set()
        flaky = target.name in ("out", "topic", "ledger")  # parking and the audit event succeed here
        if self.latency:
            with self._lock:
                self.in_flight += 1
                self.peak = max(self.peak, self.in_flight)
            time.sleep(self.latency)
            with self._lock:
                self.in_flight -= 1
        with self._lock:
            self.calls += 1
            if flaky and self.call_fails(self.calls):
                raise SendCallError("ThrottlingException", retryable=True)
            failures = []
            for i, m in enumerate(messages):
                self.attempts[(target.name, m.record_id)] += 1
                if flaky and self.entry_fails(m, self.attempts[(target.name, m.record_id)]):
                    failures.append(EntryFailure(i, "InternalError", "injected"))
                else:
                    self.accepted.setdefault(target.name, []).append(m.record_id)
                    if target.name == DLQ:
                        self.dlq_messages.append(m)
        return BatchOutcome(tuple(failures))


@PATHS
def test_requests_go_out_before_the_last_message_is_added(one_thread: bool) -> None:
    sender = FlakySender()
    port = Multiplexed(sender) if one_thread else sender
    deliverer = Deliverer({"sqs": port, "sns": port}, max_attempts=1, base_delay_ms=0, max_concurrency=4)

    with deliverer.start() as run:
        for i in range(25):  # two full batches closed, the third still open
            run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
        # then: the first request is out before `finish`
        assert sender.first_call.wait(timeout=10)
        receipts = run.finish()

    assert len(receipts) == 25
    assert all(r.delivered for r in receipts)
    assert sorted(sender.accepted["out"]) == sorted(f"orders-0-{i}" for i in range(25))


def three_destinations(concurrency: int) -> Any:
    return make_config(
        destinations=[{"name": "out", "type": "sqs"}, {"name": "topic", "type": "sns"},
                      {"name": "ledger", "type": "sqs", "fifo": True, "group_id": "key"}],
        routes=[{"name": "all", "match": {}, "to": ["out", "topic", "ledger"]}],
        # 1 ms backoffs: the send threads sleep through a fake, the one-thread run waits them out for real
        settings={"max_concurrency": concurrency, "max_delivery_attempts": 4, "retry_base_delay_ms": 1})


def records(n: int) -> dict[str, Any]:
    return kafka_event([kafka_record(partition=i % 3, offset=i, key=f"k{i % 17}") for i in range(n)])


def run_bridge(make_bridge: Callable[..., Bridge], sender: FlakySender, concurrency: int,
               event: dict[str, Any], *, one_thread: bool = False) -> tuple[Any, FlakySender]:
    port = Multiplexed(sender) if one_thread else sender
    bridge = make_bridge(three_destinations(concurrency), sqs=port, sns=port)
    return bridge.handle(event), sender


@PATHS
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concurrent_requests_that_fail_and_retry_lose_nothing_and_send_nothing_twice(
    make_bridge: Callable[..., Bridge], seed: int, one_thread: bool,
) -> None:
    # given: 600 records to a queue, a topic and a FIFO queue; a fifth of the entries and a tenth of the
    # calls fail at random (retryable), on up to 8 threads (each call waits 2 ms, so they are used)
    rng = random.Random(seed)
    sender = FlakySender(entry_fails=lambda m, a: rng.random() < 0.2, call_fails=lambda c: rng.random() < 0.1,
                         latency=0.002)

    # when
    report, _ = run_bridge(make_bridge, sender, 8, records(600), one_thread=one_thread)
    assert sender.peak > 1, "the requests were not concurrent: this test would prove nothing about them"

    # then: per destination, each record accepted at most once, and accepted or parked, never both
    parked = [(d["record_id"], d["destination"]) for d in parked_docs(sender_as_fake(sender), DLQ)]
    assert len(parked) == len(set(parked))
    assert sorted(parked) == sorted((p.record.record_id, p.destination) for p in report.parked)
    for name in ("out", "topic", "ledger"):
        accepted = sender.accepted.get(name, [])
        assert len(accepted) == len(set(accepted)), f"{name}: a record sent twice"
        parked_here = {r for r, d in parked if d == name}
        assert not parked_here & set(accepted)
        assert parked_here | set(accepted) == {f"orders-{i % 3}-{i}" for i in range(600)}
    delivered = report.summary["delivered"]
    assert sum(delivered.values()) + len(parked) == 1800


def sender_as_fake(sender: FlakySender) -> Any:
    """The DLQ messages the sender accepted, shaped for `parked_docs`."""
    class Sent:
        sent = {DLQ: sender.dlq_messages}
    return Sent()


def test_parking_is_the_same_whether_requests_overlap_or_not_and_with_or_without_send_threads(
        make_bridge: Callable[..., Bridge]) -> None:
    # given: failures decided by the record alone: every 7th record never gets through, every 5th fails once
    def entry_fails(m: OutgoingMessage, attempt: int) -> bool:
        offset = int(m.record_id.rsplit("-", 1)[1])
        return offset % 7 == 0 or (offset % 5 == 0 and attempt == 1)

    outcomes = []
    for concurrency, one_thread in ((1, False), (8, False), (8, True)):  # the last: no send threads at all
        sender = FlakySender(entry_fails=entry_fails)
        report, _ = run_bridge(make_bridge, sender, concurrency, records(300), one_thread=one_thread)
        outcomes.append((report.summary["delivered"], report.summary["parked"],
                         sorted((p.record.record_id, p.destination, p.reason) for p in report.parked
                                if p.destination != "ledger"),
                         {name: sorted(ids) for name, ids in sender.accepted.items() if name in ("out", "topic")}))

    # then: the standard queue and the topic end the same, parked records included
    sequential, overlapped, multiplexed = outcomes
    assert sequential[2] == overlapped[2] == multiplexed[2]
    assert sequential[3] == overlapped[3] == multiplexed[3]
    assert len(sequential[2]) == 2 * len([i for i in range(300) if i % 7 == 0])


@PATHS
def test_an_error_inside_a_lane_is_raised_by_finish_on_the_callers_thread(one_thread: bool) -> None:
    class Broken:
        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            raise RuntimeError("a bug in a sender")

    sender = Multiplexed(Broken()) if one_thread else Broken()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0, max_concurrency=4)
    assert deliverer.multiplexed() == one_thread

    with deliverer.start() as run:
        for i in range(30):
            run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
        with pytest.raises(RuntimeError, match="a bug in a sender"):
            run.finish()


@PATHS
def test_planning_waits_while_enough_batches_wait_to_be_sent_so_a_large_batch_is_not_held_in_memory(
        one_thread: bool) -> None:
    # given: a sender that holds every request until released, two threads
    release = threading.Event()

    class Gate:
        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            assert release.wait(timeout=30)
            return BatchOutcome()

    gate = Multiplexed(Gate()) if one_thread else Gate()
    deliverer = Deliverer({"sqs": gate, "sns": gate}, max_attempts=1, base_delay_ms=0, max_concurrency=2)
    assert deliverer.multiplexed() == one_thread
    added: list[int] = []
    receipts: list[Any] = []

    def plan() -> None:
        with deliverer.start() as run:
            for i in range(500):
                run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
                added.append(i)
            receipts.extend(run.finish())

    planner = threading.Thread(target=plan, daemon=True)
    planner.start()
    bound = PENDING_BATCHES_PER_THREAD * 2 * MAX_BATCH_ENTRIES  # batches handed over, 10 messages each
    try:
        for _ in range(300):  # until the planner has handed over what it may
            if len(added) >= bound:
                break
            planner.join(timeout=0.01)
        planner.join(timeout=0.3)
        # then: it stops with the bound reached (plus the open batch), and goes on once requests finish
        assert bound <= len(added) <= bound + MAX_BATCH_ENTRIES
    finally:
        release.set()
    planner.join(timeout=30)
    assert len(added) == 500
    assert len(receipts) == 500
    assert all(r.delivered for r in receipts)


class PeakSender:
    """Fake SQS whose requests wait until `wanted` requests are in flight at once (if the bridge never
    gets there, the first to give up after 10 s lets every request through); records the peak."""

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.in_flight = 0
        self.peak = 0
        self.reached = threading.Event()
        self._lock = threading.Lock()

    def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
        with self._lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            if self.in_flight >= self.wanted:
                self.reached.set()
        if target.name == "ledger" and not self.reached.wait(timeout=10):
            self.reached.set()  # never got there: the rest need not wait too
        with self._lock:
            self.in_flight -= 1
        return BatchOutcome()


def test_a_fifo_destination_with_many_groups_has_sixteen_requests_in_flight_by_default(
    make_bridge: Callable[..., Bridge],
) -> None:
    # given: the default settings and 2,000 records of 500 keys to a FIFO queue grouped by key (at 10 ms per
    # request, 8 requests in flight capped it at about half its zero-latency throughput). No request is
    # answered before 16 are in flight, so those 16 hold 160 groups: as many as they can with each
    # group's messages one at a time in the first requests.
    config = make_config(destinations=[{"name": "ledger", "type": "sqs", "fifo": True, "group_id": "key"}],
                         routes=[{"name": "all", "match": {}, "to": ["ledger"]}])
    sender = PeakSender(16)
    event = kafka_event([kafka_record(partition=i % 3, offset=i, key=f"k{i % 500}") for i in range(2000)])

    # when
    report = make_bridge(config, sqs=sender, sns=sender).handle(event)

    # then: 16 requests sent at once, and everything was delivered
    assert sender.peak == 16
    assert report.summary["delivered"] == {"ledger": 2000}


@PATHS
def test_standard_in_flight_caps_the_requests_to_standard_targets_on_either_path(one_thread: bool) -> None:
    # given: requests that wait 5 ms each, eight allowed in flight, but at most two to standard targets
    sender = FlakySender(latency=0.005)
    port = Multiplexed(sender) if one_thread else sender
    deliverer = Deliverer({"sqs": port, "sns": port}, max_attempts=1, base_delay_ms=0, max_concurrency=8)
    assert deliverer.multiplexed() == one_thread

    # when
    with deliverer.start(standard_in_flight=2) as run:
        for i in range(200):
            run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
        receipts = run.finish()

    # then: two at once, never more, and every message delivered once
    assert sender.peak == 2
    assert sorted(sender.accepted["out"]) == sorted(f"orders-0-{i}" for i in range(200))
    assert all(r.delivered for r in receipts)


def test_a_run_that_calls_back_per_request_without_a_hand_off_keeps_its_send_threads_and_calls_back_for_each() -> None:
    # given: senders that could leave requests in flight, and a callback per request (a checkpoint write:
    # it blocks, so without a `hand_off` to make it elsewhere a checkpointed run keeps the send threads)
    sender = FlakySender(latency=0.002)
    port = Multiplexed(sender)
    deliverer = Deliverer({"sqs": port, "sns": port}, max_attempts=1, base_delay_ms=0, max_concurrency=4)
    recorded: list[str] = []

    def on_delivered(messages: Any) -> None:
        recorded.extend(m.record_id for m in messages)

    # when
    with deliverer.start(on_delivered, standard_in_flight=1) as run:
        for i in range(100):
            run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
        receipts = run.finish()

    # then: sent with send_batch (nothing left in flight), every stored message called back once
    assert deliverer.multiplexed()
    assert not deliverer.multiplexed(on_delivered)
    assert not isinstance(run, MultiplexedRun)
    assert port.started == 0
    assert sorted(recorded) == sorted(f"orders-0-{i}" for i in range(100))
    assert all(r.delivered for r in receipts)


@pytest.mark.parametrize("in_flight", [1, None], ids=["capped", "uncapped"])
def test_a_run_that_hands_its_callbacks_off_sends_from_one_thread_and_records_each_stored_message_once(
        in_flight: int | None) -> None:
    # given: senders that leave requests in flight, entries failing their first attempts and calls throttled
    # now and then, and a callback per request handed off to a writer thread (a checkpoint write)
    sender = FlakySender(entry_fails=lambda m, attempt: attempt < 3 and int(m.record_id.rsplit("-", 1)[1]) % 7 == 0,
                         call_fails=lambda call: call % 11 == 0, latency=0.002)
    port = Multiplexed(sender)
    deliverer = Deliverer({"sqs": port, "sns": port}, max_attempts=4, base_delay_ms=1, max_concurrency=4,
                          hand_off=CheckpointWriter)
    recorded: Counter[str] = Counter()
    callers: set[str] = set()

    def on_delivered(messages: Any) -> None:
        callers.add(threading.current_thread().name)
        recorded.update(m.record_id for m in messages)

    # when
    with deliverer.start(on_delivered, standard_in_flight=in_flight) as run:
        for i in range(200):
            run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
        receipts = run.finish()

    # then: one thread sent (requests left in flight, no send thread), the callbacks ran on the writer thread,
    # every stored message was recorded exactly once and nothing that was not stored, and nothing is left
    assert deliverer.multiplexed(on_delivered)
    assert isinstance(run, MultiplexedRun)
    assert port.started > 0
    assert callers == {"bridge-checkpoints"}
    assert recorded == Counter(sender.accepted["out"])
    assert set(recorded) == {r.message.record_id for r in receipts if r.delivered}
    assert len(recorded) > 150, "most messages delivered (a few may run out of attempts)"
    assert not [t for t in threading.enumerate() if t.name.startswith(("bridge-send", "bridge-checkpoints"))]


def test_a_callback_that_raises_on_the_writer_thread_is_raised_by_finish() -> None:
    # given: a callback with a bug (a failed checkpoint write is counted, not raised: this is anything else)
    port = Multiplexed(FlakySender())
    deliverer = Deliverer({"sqs": port, "sns": port}, max_attempts=1, base_delay_ms=0, max_concurrency=4,
                          hand_off=CheckpointWriter)

    def on_delivered(messages: Any) -> None:
        raise ValueError("a bug in the callback")

    def deliver() -> None:
        with deliverer.start(on_delivered, standard_in_flight=1) as run:
            for i in range(30):
                run.add(QUEUE, OutgoingMessage(f"orders-0-{i}", "out", "x", (), f"c{i}", 1))
            run.finish()

    # when / then: the run ends (no slot kept for ever) and finish raises it, as a send thread's error
    with pytest.raises(ValueError, match="a bug in the callback"):
        deliver()
    assert not [t for t in threading.enumerate() if t.name == "bridge-checkpoints"]
