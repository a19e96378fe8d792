"""The window checkpoints leave open: requests that took effect before their checkpoint was written.

With checkpoints on, `settings.checkpoint_in_flight` (N) caps the requests to standard destinations,
all together, that are under way at once, each until its checkpoint is written, and each carries
`settings.checkpoint_request_entries` (E, default 4) messages, so a crash re-sends at most N x E messages
(each copied to a topic's subscribers). FIFO destinations are not capped: SQS drops their re-sends by
deduplication id.

Each guarantee is checked on both ways a checkpointed run sends: send threads writing each checkpoint after
their request, and one thread leaving requests in flight while a writer thread makes the checkpoint writes
(`MultiplexedRun` with `CheckpointHandOff`, when the senders are on the direct path).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
from bridge.adapters.checkpoint_writer import CheckpointWriter
from bridge.checkpoints import CHECKPOINTED_SWITCH_INTERVAL_SECONDS, BatchProgress, CheckpointUnavailable, ProgressEntry
from bridge.config import MAX_BATCH_ENTRIES, BridgeConfig, ConfigError
from bridge.delivery import BatchOutcome, Deliverer, DeliveryRun, MultiplexedRun, SendCallError, Target
from bridge.envelope import OutgoingMessage
from bridge.parking import ParkingFailedError
from bridge.records import decode_record
from bridge.service import Bridge

from tests.helpers import (
    FakeCheckpoints,
    FakeKeys,
    FakeStore,
    Multiplexed,
    kafka_event,
    kafka_record,
    make_config,
    make_settings,
)

STANDARD = ("alerts", "events")
PATHS = pytest.mark.parametrize("one_thread", [False, True], ids=["send-threads", "one-thread"])


def config(**settings: Any) -> BridgeConfig:
    return make_config(
        destinations=[{"name": "alerts", "type": "sqs"}, {"name": "events", "type": "sns"},
                      {"name": "ledger", "type": "sqs", "fifo": True, "group_id": "key"}],
        routes=[{"name": "all", "match": {}, "to": ["alerts", "events", "ledger"]}],
        settings={"checkpoints": "on", "max_concurrency": 8, **settings},
    )


def event(n: int) -> dict[str, Any]:
    return kafka_event([kafka_record("orders", 0, i, key=f"k{i % 50}", value=json.dumps({"n": i}))
                        for i in range(n)])


class World:
    """What outlives the process: the messages destinations stored and the checkpoints written. It
    counts messages stored whose checkpoint is not written yet (the window: per target, and for all
    standard targets together), and can crash
    the process the moment a given request is stored: nothing the dead process does afterwards
    reaches the destinations or the table (it keeps running in the test, harmlessly)."""

    def __init__(self, answer_seconds: float = 0.002, write_seconds: float = 0.0) -> None:
        self.answer_seconds = answer_seconds  # the answer's way back: the request took effect already
        self.write_seconds = write_seconds  # a checkpoint write's latency (DynamoDB's, before it takes effect)
        self.writing = 0  # checkpoint writes under way
        self.started_while_writing = 0  # requests the run started while a checkpoint write was under way
        self.runs: list[type[DeliveryRun]] = []  # which way each run of the bridge sent
        self.stored: Counter[tuple[str, str]] = Counter()
        self.unrecorded: dict[str, set[str]] = {}
        self.widest: Counter[str] = Counter()  # target or "standard" -> most stored and unrecorded at once
        self.crash_at: int | None = None  # crash right after this many requests were stored
        self.crashed = False
        self.requests = 0
        self.request_sizes: dict[str, set[int]] = {}  # target -> messages per request seen
        self.switch_intervals: set[float] = set()  # the interpreter's switch interval during sends
        self.table = FakeCheckpoints()
        self.lock = threading.Lock()

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        with self.lock:
            if self.crashed:
                raise SendCallError("ProcessDead", retryable=False)
            window = self.unrecorded.setdefault(target.name, set())
            for m in messages:
                self.stored[(target.name, m.record_id)] += 1
                window.add(m.record_id)
            self.widest[target.name] = max(self.widest[target.name], len(window))
            standard = sum(len(self.unrecorded.get(name, ())) for name in STANDARD)
            self.widest["standard"] = max(self.widest["standard"], standard)
            self.requests += 1
            self.request_sizes.setdefault(target.name, set()).add(len(messages))
            self.switch_intervals.add(sys.getswitchinterval())
            if self.requests == self.crash_at:
                self.crashed = True
        time.sleep(self.answer_seconds)
        return BatchOutcome(())

    def read(self, shards: Sequence[str]) -> list[ProgressEntry]:
        return self.table.read(shards)

    def write(self, entries: Sequence[ProgressEntry]) -> None:
        with self.lock:
            self.writing += 1
        try:
            time.sleep(self.write_seconds)
        finally:
            with self.lock:
                self.writing -= 1
        with self.lock:
            if self.crashed:
                return
            for e in entries:
                topic_partition = e.shard.split("/", 1)[0]
                self.unrecorded.get(e.destination, set()).difference_update(
                    f"{topic_partition}-{t.split('.', 1)[0]}" for t in e.tokens)
        self.table.write(entries)

    def delivered(self) -> dict[str, int]:
        """Records stored per destination (the audit topic left out), each stored exactly once."""
        per: Counter[str] = Counter()
        for (target, _), n in self.stored.items():
            if target in (*STANDARD, "ledger"):
                assert n == 1, f"stored {n} times in {target}"
                per[target] += 1
        return dict(per)

    def duplicates(self, target: str) -> int:
        return sum(n - 1 for (t, _), n in self.stored.items() if t == target)

    def bridge(self, cfg: BridgeConfig, *, one_thread: bool = False) -> Bridge:
        """The bridge over this world; `one_thread`: its senders can leave requests in flight (the direct
        path), so its runs send from the planning thread and write checkpoints on the writer thread."""
        sender = _Started(self) if one_thread else self
        bridge = Bridge(cfg, make_settings(), sqs=sender, sns=sender, parking_store=FakeStore(),
                        signing_keys=FakeKeys(), checkpoints=self)
        start = bridge._deliverer.start

        def noted(*args: Any, **kwargs: Any) -> DeliveryRun:
            run = start(*args, **kwargs)
            self.runs.append(type(run))
            return run

        bridge._deliverer.start = noted  # type: ignore[method-assign]
        return bridge


class _Started(Multiplexed):
    """`Multiplexed` over a `World` that notes the requests started while a checkpoint write is under way."""

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.world = world

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> Any:
        with self.world.lock:
            if self.world.writing:
                self.world.started_while_writing += 1
        return super().start(target, messages)


def assert_path(world: World, one_thread: bool) -> None:
    """Every run of the world's bridges sent the way the test asked for."""
    assert world.runs
    assert set(world.runs) == {MultiplexedRun if one_thread else DeliveryRun}, world.runs


@PATHS
@pytest.mark.parametrize(("n", "entries"), [(1, None), (2, None), (1, 10), (3, 2)])
def test_standard_destinations_never_have_more_than_n_requests_stored_and_unrecorded(n: int, entries: int | None,
                                                                                    one_thread: bool) -> None:
    world = World()
    knobs = {"checkpoint_in_flight": n} | ({"checkpoint_request_entries": entries} if entries else {})
    world.bridge(config(**knobs), one_thread=one_thread).handle(event(300))
    per_request = entries or 4
    assert 0 < world.widest["standard"] <= n * per_request, (n, per_request, dict(world.widest))
    assert_path(world, one_thread)


@pytest.mark.parametrize("n", [1, 3])
def test_a_slow_checkpoint_write_holds_the_cap_but_no_other_request_on_one_thread(n: int) -> None:
    # given: checkpoint writes that take 5x a request (a slow table), on the one-thread path
    world = World(answer_seconds=0.002, write_seconds=0.01)

    # when
    report = world.bridge(config(checkpoint_in_flight=n), one_thread=True).handle(event(300))

    # then: standard requests still wait for their checkpoint (the cap holds however slow the write), the
    # planning thread started requests while writes were under way (they are made on the writer thread), the
    # writes covered several requests each, and every message was delivered once and recorded
    assert_path(world, one_thread=True)
    assert 0 < world.widest["standard"] <= n * 4, dict(world.widest)
    assert world.started_while_writing > 0
    assert world.table.writes < world.requests, (world.table.writes, world.requests)
    assert world.delivered() == dict.fromkeys((*STANDARD, "ledger"), 300)
    assert report.summary["checkpoint"] == {"on": True, "skipped": 0, "errors": 0}
    again = world.bridge(config(checkpoint_in_flight=n), one_thread=True).handle(event(300))
    assert again.summary["checkpoint"]["skipped"] == 900, "every delivery was recorded"
    assert world.delivered() == dict.fromkeys((*STANDARD, "ledger"), 300)


@PATHS
def test_a_failed_checkpoint_write_is_counted_frees_its_slot_and_delivery_goes_on(one_thread: bool) -> None:
    # given: a table that answers reads but fails every write (throttled past its retries)
    world = World()
    fail = world.table.write

    def failing(entries: Sequence[ProgressEntry]) -> None:
        fail(entries)
        raise CheckpointUnavailable("throttled")

    world.table.write = failing  # type: ignore[method-assign]

    # when
    report = world.bridge(config(), one_thread=one_thread).handle(event(120))

    # then: everything delivered once, each failed write counted, the run not stuck on the cap
    assert_path(world, one_thread)
    assert world.delivered() == dict.fromkeys((*STANDARD, "ledger"), 120)
    assert report.summary["checkpoint"]["errors"] > 0
    assert report.summary["delivered"] == {"alerts": 120, "events": 120, "ledger": 120}


@PATHS
def test_standard_requests_carry_checkpoint_request_entries_and_fifo_requests_ten(one_thread: bool) -> None:
    on, off = World(), World()
    on.bridge(config(), one_thread=one_thread).handle(event(300))
    off.bridge(config(checkpoints="off"), one_thread=one_thread).handle(event(300))
    assert_path(on, one_thread)
    # 300 messages per destination: standard ones in requests of 4 with checkpoints on, 10 without; FIFO
    # destinations fill their requests either way
    assert {name: on.request_sizes[name] for name in STANDARD} == {"alerts": {4}, "events": {4}}
    assert {name: off.request_sizes[name] for name in STANDARD} == {"alerts": {10}, "events": {10}}
    assert max(on.request_sizes["ledger"]) == max(off.request_sizes["ledger"]) == MAX_BATCH_ENTRIES


@PATHS
def test_a_checkpointed_run_switches_threads_often_and_restores_the_interval(one_thread: bool) -> None:
    before = sys.getswitchinterval()
    on, off = World(), World()
    on.bridge(config(), one_thread=one_thread).handle(event(100))
    off.bridge(config(checkpoints="off"), one_thread=one_thread).handle(event(100))
    # the audit event goes out after the run: the interval is back by then
    assert CHECKPOINTED_SWITCH_INTERVAL_SECONDS in on.switch_intervals
    assert before in on.switch_intervals
    assert off.switch_intervals == {before}
    assert sys.getswitchinterval() == before


@PATHS
def test_without_the_cap_requests_to_one_destination_overlap_and_fifo_lanes_are_never_capped(one_thread: bool) -> None:
    # given: the same batch with up to 8 requests under way (the cap at max_concurrency), and with 1
    wide, narrow = World(), World()
    wide.bridge(config(checkpoint_in_flight=8), one_thread=one_thread).handle(event(300))
    narrow.bridge(config(checkpoint_in_flight=1), one_thread=one_thread).handle(event(300))
    assert_path(narrow, one_thread)
    # then: standard requests overlap without the cap; FIFO lanes overlap either way
    assert wide.widest["standard"] > MAX_BATCH_ENTRIES
    assert narrow.widest["ledger"] > MAX_BATCH_ENTRIES


@PATHS
@pytest.mark.parametrize("crash_at", [1, 7, 20, 33])
def test_a_crash_re_sends_at_most_n_requests_to_standard_destinations(crash_at: int, one_thread: bool) -> None:
    # given: the process dies right after its crash_at-th request took effect
    world = World()
    world.crash_at = crash_at
    batch = event(300)
    with pytest.raises(ParkingFailedError):  # the dead process's later sends and parks go nowhere
        world.bridge(config(checkpoint_in_flight=1), one_thread=one_thread).handle(batch)

    # when: the mapping delivers the batch again to a new process
    world.crashed, world.crash_at = False, None
    world.bridge(config(checkpoint_in_flight=1), one_thread=one_thread).handle(batch)
    assert_path(world, one_thread)

    # then: every record reached every destination, and standard ones got at most one request of
    # checkpoint_request_entries (4) messages again
    for name in (*STANDARD, "ledger"):
        assert len({rid for (t, rid) in world.stored if t == name}) == 300
    assert sum(world.duplicates(name) for name in STANDARD) <= 4


def test_checkpoints_off_keeps_requests_uncapped() -> None:
    world = World()
    world.bridge(config(checkpoints="off", checkpoint_in_flight=1)).handle(event(300))
    assert world.widest["standard"] > MAX_BATCH_ENTRIES


@pytest.mark.parametrize("value", [0, 65, "two", 1.5])
def test_checkpoint_in_flight_outside_1_to_64_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"settings\.checkpoint_in_flight"):
        config(checkpoint_in_flight=value)


def test_checkpoint_in_flight_defaults_to_one() -> None:
    assert config().settings.checkpoint_in_flight == 1


@pytest.mark.parametrize("value", [0, 11, "five", 2.5])
def test_checkpoint_request_entries_outside_1_to_10_is_refused_naming_the_field(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"settings\.checkpoint_request_entries"):
        config(checkpoint_request_entries=value)


def test_checkpoint_request_entries_defaults_to_four() -> None:
    assert config().settings.checkpoint_request_entries == 4


@pytest.mark.parametrize("n", [1, 3])
def test_an_interrupt_on_the_one_thread_path_writes_what_was_handed_over_and_leaves_no_thread(n: int) -> None:
    # given: a one-thread run with slow checkpoint writes, interrupted (Ctrl-C) while it plans, with requests
    # in flight, answered ones handed over and a write under way
    world = World(answer_seconds=0.002, write_seconds=0.01)
    sender = _Started(world)
    handed: list[str] = []

    class Noted(CheckpointWriter):
        def hand_over(self, messages: Sequence[OutgoingMessage], ticket: object) -> None:
            handed.extend(m.record_id for m in messages)
            super().hand_over(messages, ticket)

    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=3, base_delay_ms=0, max_concurrency=8,
                          hand_off=Noted)
    alerts = Target("alerts", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/alerts", 262_144)
    progress = BatchProgress(world, [], redrive=False)

    def recorded(messages: Sequence[OutgoingMessage]) -> None:
        progress.record("delivered", [(m.origin[0], m.destination) for m in messages])

    def plan_until_interrupted() -> None:
        with deliverer.start(recorded, standard_in_flight=n, standard_entries=4) as run:
            assert isinstance(run, MultiplexedRun)
            for i in range(400):
                record = decode_record(kafka_record("orders", 0, i))
                run.add(alerts, OutgoingMessage(f"orders-0-{i}", "alerts", "x", (), f"c{i}", 1,
                                                origin=(record, "all", None)))
                if i == 200:
                    assert world.writing or handed, "nothing handed over yet: this test would prove nothing"
                    raise KeyboardInterrupt

    # when
    with pytest.raises(KeyboardInterrupt):
        plan_until_interrupted()

    # then: every hand-over was written before the run let go, nothing else was, at most N requests of 4 are
    # stored unrecorded (what a redelivery re-sends), and no writer or send thread is left
    written = {t for e in world.table.entries for t in e.tokens}
    assert sorted(f"orders-0-{t.split('.')[0]}" for t in written) == sorted(handed)
    assert len(world.unrecorded["alerts"]) <= n * 4, world.unrecorded["alerts"]
    assert not [t for t in threading.enumerate() if t.name.startswith(("bridge-checkpoints", "bridge-send"))]
