"""FIFO guarantees that batching hot groups and sending groups concurrently must keep.

- a group's messages are accepted in Kafka order, whatever entry of a request fails (every position);
- nothing is lost or sent twice: each message is accepted once or comes back failed (to be parked);
- an entry that fails after a later entry of its group was accepted is an order break: counted,
  parked, and the rest of its group held back and parked in order;
- two requests holding one group are never in flight at once, while different groups overlap.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bridge.adapters.checkpoint_writer import CheckpointWriter
from bridge.config import SQS_MAX_MESSAGE_BYTES, BridgeConfig
from bridge.delivery import HELD_BACK, BatchOutcome, Deliverer, DeliveryReceipt, EntryFailure, SendCallError, Target
from bridge.envelope import OutgoingMessage
from bridge.service import Bridge, OutageRetryError

from tests.helpers import (
    FakeCheckpoints,
    FakeKeys,
    FakeSender,
    FakeStore,
    Multiplexed,
    audit_events,
    kafka_event,
    kafka_record,
    make_config,
    make_settings,
    no_sleep,
    parked_docs,
    signed_record,
)

FIFO = Target("ordered", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/t.fifo", SQS_MAX_MESSAGE_BYTES,
              fifo=True)
QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", SQS_MAX_MESSAGE_BYTES)


def msg(i: int, group: str | None, dest: str = "ordered") -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", dest, "x", (), f"c{i}", 1, group_id=group,
                           dedup_id=None if group is None else f"d{i}")


class FifoQueue:
    """In-memory FIFO queue: entries stored in request order, a repeated dedup id accepted but not stored
    again; `fail(call_number, position, message)` returns (code, sender_fault) to fail that entry.
    Records every request and checks that no group is in two requests in flight at once; with `latency`,
    each request waits that long off the CPU (as a request to AWS does) and `peak` is the most at once."""

    def __init__(self, fail: Callable[[int, int, OutgoingMessage], tuple[str, bool] | None] = lambda c, p, m: None,
                 pause: threading.Barrier | None = None, *, dedup: bool = True, latency: float = 0.0) -> None:
        self.fail = fail
        self.latency = latency
        self.peak = 0
        self._requests_in_flight = 0
        self.pause = pause  # the first `pause.parties` requests wait there for each other
        self.dedup = dedup  # False: a standard queue, which stores every accepted entry
        self.stored: list[OutgoingMessage] = []
        self.requests: list[list[str]] = []
        self.overlaps: list[str] = []
        self._seen: set[str | None] = set()
        self._in_flight: dict[str | None, int] = {}
        self._lock = threading.Lock()

    def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
        groups = {m.group_id for m in messages}
        with self._lock:
            call = len(self.requests)
            self.requests.append([m.record_id for m in messages])
            for g in groups:
                if self._in_flight.get(g):
                    self.overlaps.append(str(g))
                self._in_flight[g] = self._in_flight.get(g, 0) + 1
            self._requests_in_flight += 1
            self.peak = max(self.peak, self._requests_in_flight)
        if self.pause is not None and call < self.pause.parties:
            self.pause.wait()
        if self.latency:
            time.sleep(self.latency)
        failures = []
        with self._lock:
            for i, m in enumerate(messages):
                verdict = self.fail(call, i, m)
                if verdict is not None:
                    failures.append(EntryFailure(i, verdict[0], "injected", verdict[1]))
                elif not self.dedup or m.dedup_id not in self._seen:
                    self._seen.add(m.dedup_id)
                    self.stored.append(m)
            for g in groups:
                self._in_flight[g] -= 1
            self._requests_in_flight -= 1
        return BatchOutcome(tuple(failures))

    def order_by_group(self) -> dict[str | None, list[int]]:
        out: dict[str | None, list[int]] = {}
        for m in self.stored:
            out.setdefault(m.group_id, []).append(int(m.record_id.rsplit("-", 1)[1]))
        return out


# Each guarantee is checked on both ways a run sends: send threads, and one thread multiplexing requests
# left in flight (`MultiplexedRun`, when the senders are on the direct path).
PATHS = pytest.mark.parametrize("one_thread", [False, True], ids=["send-threads", "one-thread"])


def deliverer(queue: Any, concurrency: int = 1, attempts: int = 4, *, one_thread: bool = False,
              hold: bool = False, at_once: bool = False) -> Deliverer:
    """With `one_thread`, a run with checkpoints (`on_delivered`) hands its writes to the writer thread."""
    sender = Multiplexed(queue, at_once=at_once) if one_thread else queue
    built = Deliverer({"sqs": sender, "sns": sender}, max_attempts=attempts, base_delay_ms=0,
                      max_concurrency=concurrency, sleep=lambda s: None, hold_failed_groups=hold,
                      hand_off=CheckpointWriter if one_thread else None)
    assert built.multiplexed() == one_thread
    return built


def assert_nothing_lost_or_doubled(messages: list[OutgoingMessage], receipts: list[DeliveryReceipt],
                                   stored: list[OutgoingMessage]) -> None:
    ids = [r.message.record_id for r in receipts]
    assert sorted(ids) == sorted(m.record_id for m in messages), "one receipt per message"
    stored_ids = [m.record_id for m in stored]
    assert len(stored_ids) == len(set(stored_ids)), "a message stored twice"
    assert {r.message.record_id for r in receipts if r.delivered} == set(stored_ids)


def assert_kafka_order(queue: FifoQueue) -> None:
    for group, order in queue.order_by_group().items():
        assert order == sorted(order), f"group {group} out of order: {order}"


@PATHS
def test_a_hot_group_goes_ten_messages_per_request_in_order(one_thread: bool) -> None:
    queue = FifoQueue()

    receipts = deliverer(queue, concurrency=8, one_thread=one_thread).deliver(
        [(FIFO, [msg(i, "hot") for i in range(35)])])

    assert [len(r) for r in queue.requests] == [10, 10, 10, 5]
    assert queue.order_by_group() == {"hot": list(range(35))}
    assert all(r.delivered for r in receipts)


@PATHS
@pytest.mark.parametrize("sender_fault", [False, True], ids=["retryable", "sender-fault"])
@pytest.mark.parametrize("position", range(10))
def test_an_entry_failing_at_any_position_keeps_every_group_in_order(position: int, sender_fault: bool,
                                                                    one_thread: bool) -> None:
    # given: a hot group with a second group woven in; the entry at `position` of the first request fails once
    groups = ["hot" if i % 4 else "other" for i in range(30)]
    messages = [msg(i, g) for i, g in enumerate(groups)]
    queue = FifoQueue(fail=lambda call, pos, m: ("InternalError", sender_fault)
                      if (call, pos) == (0, position) else None)

    # when
    receipts = deliverer(queue, one_thread=one_thread).deliver([(FIFO, messages)])

    # then: nothing lost or doubled, each group in Kafka order
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert_kafka_order(queue)
    failed = messages[position]
    later_in_request = [m for m in messages[position + 1:10] if m.group_id == failed.group_id]
    by_id = {r.message.record_id: r for r in receipts}
    if later_in_request:
        # an order break: counted on the failed entry, the rest of its group held back after the request
        assert by_id[failed.record_id].order_break
        rest = [m for m in messages[10:] if m.group_id == failed.group_id]
        assert [by_id[m.record_id].code for m in rest] == [HELD_BACK] * len(rest)
        others = [m for m in messages if m.group_id != failed.group_id]
        assert all(by_id[m.record_id].delivered for m in others), "the other group goes on"
    elif sender_fault:
        # the last of its group in the request: parked, its group goes on (as it always did)
        assert not by_id[failed.record_id].delivered
        assert not by_id[failed.record_id].order_break
        assert sum(not r.delivered for r in receipts) == 1
    else:
        assert all(r.delivered for r in receipts), "retried in place, order intact"


@PATHS
@pytest.mark.parametrize("sender_fault", [False, True], ids=["retryable", "sender-fault"])
@pytest.mark.parametrize("position", range(10))
def test_with_checkpoints_an_entry_failing_at_any_position_keeps_order_and_only_what_was_stored_is_recorded(
        position: int, sender_fault: bool, one_thread: bool) -> None:
    # given: the groups of the test above, 8 requests at once, and a checkpoint per request (on the one-thread
    # path written by the writer thread, after the planning thread went on)
    groups = ["hot" if i % 4 else "other" for i in range(60)]
    messages = [msg(i, g) for i, g in enumerate(groups)]
    queue = FifoQueue(fail=lambda call, pos, m: ("InternalError", sender_fault)
                      if (call, pos) == (0, position) else None, latency=0.001)
    recorded: list[str] = []
    built = deliverer(queue, concurrency=8, one_thread=one_thread)

    def on_delivered(done: Any) -> None:
        recorded.extend(m.record_id for m in done)

    # when
    receipts = built.deliver([(FIFO, messages)], on_delivered)

    # then: order and receipts as without checkpoints, and exactly what the queue stored was recorded, once
    assert built.multiplexed(on_delivered) == one_thread
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert_kafka_order(queue)
    assert sorted(recorded) == sorted(m.record_id for m in queue.stored)


@PATHS
@pytest.mark.parametrize("hold", [True, False], ids=["outage-fail-back", "parking"])
def test_a_group_whose_request_fails_every_attempt_waits_for_it_when_the_batch_comes_back(
        hold: bool, one_thread: bool) -> None:
    # given: groups a and b in every request, c not in the second; every attempt at the second request
    # fails whole (an outage that outlasts its retries)
    groups = ["c" if (i < 10 or i >= 20) and i % 3 == 0 else "a" if i % 2 else "b" for i in range(30)]
    messages = [msg(i, g) for i, g in enumerate(groups)]

    class Outage(FifoQueue):
        def send_batch(self, target: Target, batch: Any) -> BatchOutcome:
            if "orders-0-10" in [m.record_id for m in batch]:
                self.requests.append([m.record_id for m in batch])
                raise SendCallError("ServiceUnavailable", "the local AWS restarts")
            return super().send_batch(target, batch)

    queue = Outage()

    # when: outages fail the batch back to the mapping (hold) or park what failed (not hold)
    # (the one-thread run's service answers at once: the test counts on where each request is cut)
    receipts = deliverer(queue, hold=hold, one_thread=one_thread, at_once=True).deliver([(FIFO, messages)])

    # then: with the fail-back, nothing of a or b after the failed request is stored before it (held back:
    # the retried batch sends the failed ones first); c goes on either way
    by_id = {r.message.record_id: r for r in receipts}
    stored = queue.order_by_group()
    assert stored["c"] == [0, 3, 6, 9, 21, 24, 27]
    assert not any(by_id[f"orders-0-{i}"].delivered for i in range(10, 20))
    later_ab = [i for i in range(20, 30) if groups[i] != "c"]
    if hold:
        assert [i for g in "ab" for i in stored[g] if i >= 10] == []
        assert [by_id[f"orders-0-{i}"].code for i in later_ab] == [HELD_BACK] * len(later_ab)
    else:
        assert sorted(i for g in "ab" for i in stored[g] if i >= 10) == later_ab, \
            "parking mode: the groups go on, a redrive brings the failed ones later"


@PATHS
def test_failed_tail_of_a_group_is_retried_in_order(one_thread: bool) -> None:
    # entries 6..9 of the hot group fail once, nothing after them in the request was accepted
    queue = FifoQueue(fail=lambda call, pos, m: ("ThrottlingException", False) if call == 0 and pos >= 6 else None)

    receipts = deliverer(queue, one_thread=one_thread).deliver([(FIFO, [msg(i, "hot") for i in range(20)])])

    assert all(r.delivered for r in receipts)
    assert queue.order_by_group() == {"hot": list(range(20))}
    assert queue.requests[1] == [f"orders-0-{i}" for i in range(6, 10)], "the tail is retried before what follows"


@PATHS
def test_whole_request_throttled_is_retried_whole(one_thread: bool) -> None:
    class Throttled(FifoQueue):
        calls = 0

        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            Throttled.calls += 1
            if Throttled.calls == 2:
                raise SendCallError("ThrottlingException", retryable=True)
            return super().send_batch(target, messages)

    queue = Throttled()

    receipts = deliverer(queue, one_thread=one_thread).deliver([(FIFO, [msg(i, "hot") for i in range(25)])])

    assert all(r.delivered for r in receipts)
    assert queue.order_by_group() == {"hot": list(range(25))}


@PATHS
def test_two_requests_of_one_group_are_never_in_flight_together_while_groups_overlap(one_thread: bool) -> None:
    # given: many groups over four lanes; the first two requests wait for each other (so two are in flight)
    barrier = threading.Barrier(2, timeout=10)
    queue = FifoQueue(pause=barrier)
    messages = [msg(i, f"g{i % 12}") for i in range(240)]

    # when
    receipts = deliverer(queue, concurrency=4, one_thread=one_thread).deliver([(FIFO, messages)])

    # then
    assert queue.overlaps == []
    assert all(r.delivered for r in receipts)
    assert_kafka_order(queue)
    assert len(queue.requests) == 24, "full requests of consecutive messages of each lane"


@PATHS
def test_a_free_thread_sends_another_groups_batch_while_one_groups_request_is_slow(one_thread: bool) -> None:
    # given: two threads; group "slow" (10 messages), then "quick" (10), then "bulk" (300). With groups tied
    # to lanes ("bulk" alone in one, "slow" and "quick" sharing the other) quick's batch waited behind
    # slow's request while the bulk lane's thread was the only other one. The request holding "slow" is
    # answered only once every "quick" message is stored (or after 5 s, too late: the test fails).
    quick_stored = threading.Event()
    seen_while_slow: list[bool] = []

    class SlowGroupQueue(FifoQueue):
        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            if any(m.group_id == "slow" for m in messages):
                seen_while_slow.append(quick_stored.wait(timeout=5))
            outcome = super().send_batch(target, messages)
            with self._lock:
                if sum(m.group_id == "quick" for m in self.stored) == 10:
                    quick_stored.set()
            return outcome

    queue = SlowGroupQueue()
    messages = ([msg(i, "slow") for i in range(10)] + [msg(i, "quick") for i in range(10, 20)]
                + [msg(i, "bulk") for i in range(20, 320)])

    # when
    receipts = deliverer(queue, concurrency=2, one_thread=one_thread).deliver([(FIFO, messages)])

    # then: "quick" went out on the free thread while "slow" was in flight; groups never overlapped
    assert seen_while_slow == [True]
    assert queue.overlaps == []
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert all(r.delivered for r in receipts)
    assert_kafka_order(queue)


@PATHS
def test_a_last_part_full_batch_goes_while_a_request_of_other_groups_is_in_flight(one_thread: bool) -> None:
    # given: a full batch of ten groups, then three messages of three other groups. The last batch cannot be
    # filled by anything in flight (no message waits behind the first request's groups), so it goes at once:
    # the first request is answered only once the last batch is stored (or after 5 s, too late: the test
    # fails). It waited for the first request before, a round trip more at the end of every such run.
    last_stored = threading.Event()
    seen_while_first: list[bool] = []

    class FirstWaitsQueue(FifoQueue):
        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            if messages[0].group_id == "g0":
                seen_while_first.append(last_stored.wait(timeout=5))
            outcome = super().send_batch(target, messages)
            if messages[0].group_id == "h0":
                last_stored.set()
            return outcome

    queue = FirstWaitsQueue()
    messages = [msg(i, f"g{i}") for i in range(10)] + [msg(i, f"h{i - 10}") for i in range(10, 13)]

    # when
    receipts = deliverer(queue, concurrency=2, one_thread=one_thread).deliver([(FIFO, messages)])

    # then: still two requests, the minimum (the last one recorded first: the first is recorded as answered)
    assert seen_while_first == [True]
    assert queue.requests == [[m.record_id for m in messages[10:]], [m.record_id for m in messages[:10]]]
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert all(r.delivered for r in receipts)


@PATHS
def test_a_last_part_full_batch_waits_for_a_request_whose_group_has_messages_behind_it(one_thread: bool) -> None:
    # given: a full batch of ten groups in flight, then one more message of its first group and two of new
    # groups: the first request's answer frees g0's message, which fills the last batch with the other two
    first_answered = threading.Event()

    class SlowFirstQueue(FifoQueue):
        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            if len(self.requests) == 0:
                time.sleep(0.05)  # the last batch would go meanwhile if it did not wait
            outcome = super().send_batch(target, messages)
            first_answered.set()
            return outcome

    queue = SlowFirstQueue()
    messages = [msg(i, f"g{i}") for i in range(10)] + [msg(10, "g0"), msg(11, "h0"), msg(12, "h1")]

    # when
    receipts = deliverer(queue, concurrency=2, one_thread=one_thread).deliver([(FIFO, messages)])

    # then: two requests, the second with all three, g0's in order
    assert [len(r) for r in queue.requests] == [10, 3]
    assert queue.overlaps == []
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert_kafka_order(queue)


@PATHS
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_two_fifo_destinations_and_a_queue_on_shared_threads_keep_every_group_whole_and_in_order(
        seed: int, one_thread: bool) -> None:
    # given: two FIFO destinations (one with byte-limited requests) and a standard queue fed in turn from
    # 8 threads; requests are answered in a shuffled order (tiny random pauses) and a tenth of entries fail
    rng = random.Random(seed)
    small = Target("small", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/s.fifo", 1_000, fifo=True)

    class Shuffled(FifoQueue):
        def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
            with self._lock:
                pause = rng.random() / 1000
            threading.Event().wait(pause)
            assert sum(m.size for m in messages) <= target.max_bytes, "a request over the byte limit"
            return super().send_batch(target, messages)

    def flaky(call: int, pos: int, m: OutgoingMessage) -> tuple[str, bool] | None:
        return ("ThrottlingException", False) if rng.random() < 0.1 else None  # under the queue's lock

    queue = Shuffled(fail=flaky)
    plans: list[tuple[Target, list[OutgoingMessage]]] = [(FIFO, []), (small, []), (QUEUE, [])]
    for i in range(900):
        target, messages = plans[i % 3]
        group = None if target is QUEUE else f"{target.name}-g{rng.randrange(40)}"  # groups are per queue
        messages.append(OutgoingMessage(f"orders-0-{i}", target.name, "x", (), f"c{i}", rng.randrange(50, 400),
                                        group_id=group, dedup_id=f"d{i}"))

    # when
    receipts = deliverer(queue, concurrency=8, attempts=8, one_thread=one_thread).deliver(plans)

    # then: no group in two requests at once, each group in Kafka order, nothing lost or stored twice
    assert queue.overlaps == []
    for group, order in queue.order_by_group().items():
        assert group is None or order == sorted(order), f"group {group} out of order: {order}"
    assert_nothing_lost_or_doubled([m for _, ms in plans for m in ms], receipts, queue.stored)


@PATHS
@pytest.mark.parametrize("target", [QUEUE, FIFO], ids=["standard", "fifo"])
def test_concurrent_requests_that_fail_and_retry_lose_nothing_and_send_nothing_twice(
        target: Target, one_thread: bool) -> None:
    # given: about a quarter of all entries fail (throttled), on up to 8 threads (each request waits 2 ms,
    # so they are used)
    rng = random.Random(7)

    def flaky(call: int, pos: int, m: OutgoingMessage) -> tuple[str, bool] | None:
        return ("ThrottlingException", False) if rng.random() < 0.25 else None  # called under the queue's lock

    queue = FifoQueue(fail=flaky, dedup=target.fifo, latency=0.002)
    messages = [msg(i, f"g{i % 37}" if target.fifo else None, target.name) for i in range(1000)]

    # when
    receipts = deliverer(queue, concurrency=8, attempts=6, one_thread=one_thread).deliver([(target, messages)])

    # then
    assert queue.peak > 1, "the requests were not concurrent: this test would prove nothing about them"
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    if target.fifo:
        assert_kafka_order(queue)


# --- through the Bridge: the order break is parked in order, counted in the summary and the audit event ----


def hot_fifo_config() -> Any:
    return make_config(destinations=[{"name": "ledger", "type": "sqs", "fifo": True, "group_id": "static:acct-1"}],
                       routes=[{"name": "all", "match": {}, "to": ["ledger"]}])


@PATHS
def test_order_break_parks_the_rest_of_the_group_in_order_and_is_counted(
    make_bridge: Callable[..., Bridge], sqs: FakeSender, sns: FakeSender, one_thread: bool) -> None:
    # given: 25 records of one group; the 4th entry of the first request fails, the ones after it pass
    state = {"failed": False}

    def reject(target: Target, m: OutgoingMessage) -> tuple[str, bool] | None:
        if target.fifo and m.record_id == "orders-0-3" and not state["failed"]:
            state["failed"] = True
            return ("InternalError", False)
        return None

    sqs.reject = reject
    one_thread_senders = {"sqs": Multiplexed(sqs), "sns": Multiplexed(sns)}
    bridge = make_bridge(hot_fifo_config(), **(one_thread_senders if one_thread else {}))
    event = kafka_event([kafka_record(offset=i, key=f"k{i}") for i in range(25)])

    # when
    report = bridge.handle(event)

    # then: 0-2 and 4-9 delivered; 3 parked as the break; 10-24 held back, parked in order
    delivered = [m.record_id for m in sqs.sent["ledger"]]
    assert delivered == [f"orders-0-{i}" for i in (0, 1, 2, 4, 5, 6, 7, 8, 9)]
    parked = parked_docs(sqs, "test-bridge-dev-bridge-dlq")
    assert [d["record_id"] for d in parked] == [f"orders-0-{i}" for i in [3, *range(10, 25)]]
    assert {d["reason"] for d in parked} == {"delivery_failed"}
    assert "later message of its FIFO group" in parked[0]["detail"]
    assert all("earlier message of its FIFO group" in d["detail"] for d in parked[1:])
    assert report.summary["fifo_order_breaks"] == 1
    assert report.summary["parked"] == {"delivery_failed": 16}
    (audit,) = audit_events(sns, "test-bridge-dev-audit")
    assert audit["fifo_order_breaks"] == 1
    assert one_thread_senders["sqs"].started > 0 or not one_thread, "the requests were not left in flight"


# --- FIFO lanes fed during planning: requests go out before the last message is added -------------------


class Watched(FifoQueue):
    """A FifoQueue that says when its first request arrived."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.first_call = threading.Event()

    def send_batch(self, target: Target, messages: Any) -> BatchOutcome:
        self.first_call.set()
        return super().send_batch(target, messages)


@PATHS
@pytest.mark.parametrize("groups", [1, 12], ids=["hot-group", "many-groups"])
def test_fifo_lanes_send_while_messages_are_still_added_in_order_one_request_per_group_at_a_time(
        groups: int, one_thread: bool) -> None:
    # given: four lanes, so lanes open once 4 x 100 messages have come
    queue = Watched()
    messages = [msg(i, f"g{i % groups}") for i in range(1000)]

    with deliverer(queue, concurrency=4, one_thread=one_thread).start() as run:
        for m in messages[:600]:
            run.add(FIFO, m)
        # then: requests are out before the rest is added (and before `finish`)
        assert queue.first_call.wait(timeout=10)
        for m in messages[600:]:
            run.add(FIFO, m)
        receipts = run.finish()

    assert queue.overlaps == []
    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert all(r.delivered for r in receipts)
    assert_kafka_order(queue)
    lanes = min(groups, 4)
    assert len(queue.requests) <= 100 + lanes - 1, "full requests but for one part-full request per lane"


@PATHS
def test_a_group_first_seen_after_the_lanes_opened_keeps_its_order_and_one_request_in_flight(
        one_thread: bool) -> None:
    queue = FifoQueue()
    early = [msg(i, f"g{i % 3}") for i in range(400)]
    late = [msg(i, f"late{i % 5}") for i in range(400, 700)]

    receipts = deliverer(queue, concurrency=4, one_thread=one_thread).deliver([(FIFO, early + late)])

    assert queue.overlaps == []
    assert all(r.delivered for r in receipts)
    assert_kafka_order(queue)
    assert set(queue.order_by_group()) == {"g0", "g1", "g2", *(f"late{i}" for i in range(5))}


@PATHS
@pytest.mark.parametrize("position", [0, 5, 9])
def test_an_order_break_while_lanes_are_fed_holds_back_the_rest_of_the_group_in_order(
        position: int, one_thread: bool) -> None:
    # given: one hot group of 1,200 messages on 8 possible lanes (streamed from the 800th); the entry at
    # `position` of the 3rd request fails by the sender's fault while the later entries pass
    messages = [msg(i, "hot") for i in range(1200)]
    queue = FifoQueue(fail=lambda call, pos, m: ("InvalidParameterValue", True) if (call, pos) == (2, position)
                      else None)

    receipts = deliverer(queue, concurrency=8, one_thread=one_thread).deliver([(FIFO, messages)])

    assert_nothing_lost_or_doubled(messages, receipts, queue.stored)
    assert_kafka_order(queue)
    by_id = {r.message.record_id: r for r in receipts}
    failed = 20 + position
    stored = [int(m.record_id.rsplit("-", 1)[1]) for m in queue.stored]
    if position < 9:  # a later entry of the request was accepted: an order break, the rest held back
        assert by_id[f"orders-0-{failed}"].order_break
        assert stored == [i for i in range(30) if i != failed]
        assert {by_id[f"orders-0-{i}"].code for i in range(30, 1200)} == {HELD_BACK}
    else:  # the last of the request: parked, its group goes on
        assert not by_id[f"orders-0-{failed}"].order_break
        assert stored == [i for i in range(1200) if i != failed]


def test_messages_added_while_an_order_break_is_being_answered_come_back_after_it_in_order() -> None:
    # given: one group; the 4th entry of its first request fails while the later ones are accepted, and
    # five more messages of the group are added after the break is known, before its request has finished
    broken, added = threading.Event(), threading.Event()
    queue = FifoQueue(fail=lambda call, pos, m: ("InternalError", False) if (call, pos) == (0, 3) else None)

    def on_delivered(messages: Any) -> None:  # runs after the break is known, before release
        broken.set()
        assert added.wait(timeout=10)

    with deliverer(queue, concurrency=4).start(on_delivered) as run:
        for i in range(10):
            run.add(FIFO, msg(i, "hot"))
        assert broken.wait(timeout=10)
        for i in range(10, 15):
            run.add(FIFO, msg(i, "hot"))
        added.set()
        receipts = run.finish()

    # then: the break, then the held-back messages in Kafka order
    failed = [(r.message.record_id, r.code) for r in receipts if not r.delivered]
    assert failed == [("orders-0-3", "InternalError"), *((f"orders-0-{i}", HELD_BACK) for i in range(10, 15))]


def _signed_fifo_config() -> BridgeConfig:
    """A signed producer to a FIFO queue that accepts only it; checkpoints on, outage_retry_seconds 60."""
    return make_config(
        producers=[{"name": "payer", "topics": ["payments"], "signing": True,
                    "aws_principal": "arn:aws:iam::123456789012:role/payer"}],
        destinations=[{"name": "ledger", "type": "sqs", "fifo": True, "accept_from": ["payer"]}],
        routes=[{"name": "all", "match": {}, "to": ["ledger"]}],
        settings={"checkpoints": "on", "outage_retry_seconds": 60})


def test_a_secrets_manager_blip_is_over_for_the_mappings_retry_of_a_fifo_batch() -> None:
    # A signing key read failed during a short outage (the fault tier's local AWS restart): the batch is
    # failed back (outage_retry_seconds) and the mapping retries it at once, Secrets Manager back by then.
    # The retry must read the key again: answering from the failure remembered by the failed invocation
    # spent every retry of the mapping in seconds, the batch went to the on-failure destination, the
    # partition went on, and the redrive delivered the batch's messages after their successors.
    key = b"k" * 32
    config = _signed_fifo_config()
    keys = FakeKeys({"payer": key})
    keys.fail = True
    sqs = FakeSender()
    bridge = Bridge(config, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=keys, checkpoints=FakeCheckpoints(), sleep=no_sleep)
    event = kafka_event([signed_record(key, "payer", "payments", offset=i, key=f"acct-{i % 3}") for i in range(9)])
    with pytest.raises(OutageRetryError):
        bridge.handle(event)

    keys.fail = False  # well inside trust.KEY_RETRY_SECONDS of the failed read
    report = bridge.handle(event)

    assert report.summary["parked"] == {}
    assert [m.origin[0].offset for m in sqs.sent["ledger"]] == list(range(9))
    assert keys.fetched == ["payer", "payer"]  # the failed read, then one read for the retry


class _Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 1, 20, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _signed_fifo_bridge_with_keys_and_table_down() -> tuple[bytes, FakeKeys, FakeCheckpoints, FakeSender, _Clock,
                                                            Bridge]:
    """A signed producer to a FIFO queue, checkpoints on, outage_retry_seconds 60; Secrets Manager and the
    checkpoint table both failing (a local AWS restart)."""
    key = b"k" * 32
    config = _signed_fifo_config()
    keys, table, sqs, clock = FakeKeys({"payer": key}), FakeCheckpoints(), FakeSender(), _Clock()
    keys.fail = table.fail = True
    bridge = Bridge(config, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=keys, checkpoints=table, sleep=no_sleep, clock=clock)
    return key, keys, table, sqs, clock, bridge


def test_an_outage_that_takes_the_checkpoint_table_too_fails_the_fifo_batch_back_within_the_window() -> None:
    # The local AWS restart took DynamoDB with Secrets Manager: the checkpoint table could not say when the
    # batch first failed back, so the bridge parked the batch's FIFO messages, and the redrive delivered
    # them after their successors. Now the process's own note bounds the retries, as the table would.
    key, keys, table, sqs, clock, bridge = _signed_fifo_bridge_with_keys_and_table_down()
    event = kafka_event([signed_record(key, "payer", "payments", offset=i, key=f"acct-{i % 3}") for i in range(9)])
    with pytest.raises(OutageRetryError):
        bridge.handle(event)
    assert sqs.sent["test-bridge-dev-bridge-dlq"] == []

    keys.fail = table.fail = False
    clock.now += timedelta(seconds=1)
    report = bridge.handle(event)
    assert report.summary["parked"] == {}
    assert [m.origin[0].offset for m in sqs.sent["ledger"]] == list(range(9))


def test_an_outage_the_checkpoint_table_cannot_time_still_parks_once_the_window_is_over() -> None:
    # no endless failing back while the table stays down: the note made at the first failure bounds it
    key, _keys, _table, _sqs, clock, bridge = _signed_fifo_bridge_with_keys_and_table_down()
    event = kafka_event([signed_record(key, "payer", "payments", offset=i) for i in range(3)])
    with pytest.raises(OutageRetryError):
        bridge.handle(event)
    clock.now += timedelta(seconds=59)
    with pytest.raises(OutageRetryError):
        bridge.handle(event)
    clock.now += timedelta(seconds=1)
    report = bridge.handle(event)
    assert report.summary["parked"] == {"signing_key_unavailable": 3}
