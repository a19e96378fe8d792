"""The one-thread run's failure paths (bridge.delivery `MultiplexedRun` with the checkpoint writer): a thread
that cannot be started, a wake-up byte whose send keeps failing, a retry that fails with no receipt. Each must
end the run with its error, leave no thread or descriptor behind, and keep the checkpoint window at N x E.
Found by a review of the checkpointed one-thread path (session 6); each test fails on the code before it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from bridge.adapters import checkpoint_writer
from bridge.adapters.checkpoint_writer import CheckpointWriter
from bridge.delivery import BatchOutcome, Deliverer, EntryFailure, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import FakeSender, Multiplexed

QUEUE = Target("q", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/q", 262_144)


def _message(i: int) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", "q", "x", (), f"c{i}", 1)


def _deliver(deliverer: Deliverer, on_delivered: Any, count: int, **run: Any) -> None:
    """One checkpointed run of `count` messages to the queue."""
    with deliverer.start(on_delivered, **run) as delivering:
        for i in range(count):
            delivering.add(QUEUE, _message(i))
        delivering.finish()


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


class _NoThreads(threading.Thread):
    def start(self) -> None:
        raise RuntimeError("can't start new thread")


def test_a_writer_thread_that_cannot_start_ends_the_run_with_that_error_and_leaks_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given: checkpoints on, and no thread to be had for the writer (Lambda's thread limit, no memory)
    deliverer = Deliverer({"sqs": Multiplexed(FakeSender(), at_once=True)}, max_concurrency=4, max_attempts=3,
                          base_delay_ms=1, hand_off=CheckpointWriter)
    before = _descriptors()
    monkeypatch.setattr(checkpoint_writer.threading, "Thread", _NoThreads)

    # when: a run delivers
    with pytest.raises(RuntimeError) as caught:
        _deliver(deliverer, lambda messages: None, 40, standard_in_flight=2, standard_entries=4)

    # then: the run ends with the real error (not "cannot join thread before it is started"), and its
    # selector and socket pairs are closed
    assert "can't start new thread" in str(caught.value)
    assert _descriptors() == before


class _ReadyForEight(Multiplexed):
    """In flight at once for the first 8 starts; after that every start wants a starter thread."""

    def __init__(self) -> None:
        super().__init__(FakeSender(), at_once=True)
        self.asked = 0

    @property
    def ready(self) -> bool:
        self.asked += 1
        return self.asked <= 8


def test_a_starter_thread_that_cannot_start_fails_its_request_and_the_writer_thread_still_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given: checkpoints on, writes taking 50 ms, and no thread to be had for a starter
    deliverer = Deliverer({"sqs": _ReadyForEight()}, max_attempts=1, base_delay_ms=0, max_concurrency=8,
                          hand_off=CheckpointWriter)
    before = _descriptors()
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if thread.name.startswith("bridge-start"):
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)

    # when: a run delivers
    with pytest.raises(RuntimeError) as caught:
        _deliver(deliverer, lambda messages: time.sleep(0.05), 40, standard_in_flight=8, standard_entries=1)
    monkeypatch.undo()

    # then: the run raised the start's error, its checkpoint writer's thread ended and nothing leaked
    assert "can't start new thread" in str(caught.value)
    assert [t for t in threading.enumerate() if t.name == "bridge-checkpoints"] == []
    assert _descriptors() == before


class _SendFailsTwice:
    """The writer's end of its socket pair, whose first two sends fail."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.fails = sock, 2

    def send(self, data: bytes) -> int:
        if self.fails:
            self.fails -= 1
            raise OSError("no buffer space available")
        return self.sock.send(data)

    def close(self) -> None:
        self.sock.close()


def test_a_wake_up_that_keeps_failing_delays_the_run_but_never_holds_it() -> None:
    # given: a checkpoint writer whose wake-up byte cannot be sent, twice (the thread breaks on the first,
    # its "broken" handler's send fails too)
    def writer(on_delivered: Any) -> CheckpointWriter:
        made = CheckpointWriter(on_delivered)
        made._theirs = _SendFailsTwice(made._theirs)  # type: ignore[assignment]
        return made

    deliverer = Deliverer({"sqs": Multiplexed(FakeSender())}, max_attempts=1, base_delay_ms=0, max_concurrency=4,
                          hand_off=writer)
    ended: list[BaseException | str] = []

    def deliver() -> None:
        try:
            _deliver(deliverer, lambda messages: None, 40, standard_in_flight=1)
            ended.append("returned")
        except OSError as exc:
            ended.append(exc)

    # when: a run delivers
    runner = threading.Thread(target=deliver, daemon=True)
    runner.start()
    runner.join(20)

    # then: it ends (with the send's error) instead of waiting on its selector for ever
    assert not runner.is_alive()
    assert len(ended) == 1
    assert isinstance(ended[0], OSError)


class _World:
    """A queue whose first request stores 3 of 4 (entry 0 throttled), whose retry raises an error no receipt
    describes, and whose checkpoint writes take 200 ms; it tracks what is stored and not yet recorded."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.unrecorded: set[str] = set()
        self.widest = 0

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        with self.lock:
            self.calls += 1
            call = self.calls
        if call == 2:
            raise ValueError("an answer no parser reads")
        failures = (EntryFailure(0, "Throttled", "slow down", False),) if call == 1 else ()
        with self.lock:
            self.unrecorded.update(m.record_id for i, m in enumerate(messages) if call != 1 or i != 0)
            self.widest = max(self.widest, len(self.unrecorded))
        return BatchOutcome(failures)

    def on_delivered(self, messages: Sequence[OutgoingMessage]) -> None:
        time.sleep(0.2)
        with self.lock:
            self.unrecorded.difference_update(m.record_id for m in messages)


@pytest.mark.parametrize("path", ["one-thread", "send-threads"])
def test_a_retry_failing_with_no_receipt_keeps_its_slot_until_the_first_attempt_is_written(path: str) -> None:
    # given: checkpoints on with N = 1 request of E = 4 messages to standard destinations
    world = _World()
    port: Any = Multiplexed(world) if path == "one-thread" else world
    deliverer = Deliverer({"sqs": port}, max_attempts=3, base_delay_ms=1, max_concurrency=4,
                          hand_off=CheckpointWriter if path == "one-thread" else None)

    # when: 8 messages go, the first request's retry failing with no receipt
    with pytest.raises(ValueError, match="no parser reads"):
        _deliver(deliverer, world.on_delivered, 8, standard_in_flight=1, standard_entries=4)

    # then: never more than N x E messages stored and not yet recorded (a crash re-sends at most that many)
    assert world.widest <= 4
