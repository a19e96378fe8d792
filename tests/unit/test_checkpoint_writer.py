"""The checkpoint writer thread of a one-thread run (bridge.adapters.checkpoint_writer): hand-overs written in
order, those queued while a write is under way coalesced into the next one whatever their targets, their
tickets given back through a file descriptor a selector can watch, and everything handed over written before
`close` returns."""

from __future__ import annotations

import selectors
import socket
import threading
from collections.abc import Sequence
from typing import Any

import pytest
from bridge.adapters.checkpoint_writer import CheckpointWriter
from bridge.delivery import Deliverer, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import FakeSender, Multiplexed


def messages(*ids: int, to: str = "out") -> list[OutgoingMessage]:
    return [OutgoingMessage(f"orders-0-{i}", to, "x", (), f"c{i}", 1) for i in ids]


class GatedStore:
    """An `on_delivered` whose first call waits for `gate`: what is handed over meanwhile queues up."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls: list[list[tuple[str, str]]] = []

    def __call__(self, done: Sequence[OutgoingMessage]) -> None:
        self.entered.set()
        self.gate.wait(10)
        self.calls.append([(m.destination, m.record_id) for m in done])


def wait_written(writer: CheckpointWriter, count: int) -> list[tuple[object, BaseException | None]]:
    """The tickets, taken as a run takes them: when the selector says the writer's descriptor is readable."""
    got: list[tuple[object, BaseException | None]] = []
    with selectors.DefaultSelector() as selector:
        selector.register(writer.fileno(), selectors.EVENT_READ)
        while len(got) < count:
            assert selector.select(10), "the writer never signalled"
            got += writer.written()
    return got


def test_hand_overs_queued_during_a_write_go_in_the_next_one_whatever_their_target_in_order() -> None:
    # given: a first write under way
    store = GatedStore()
    writer = CheckpointWriter(store)
    writer.hand_over(messages(0, 1), "a")
    assert store.entered.wait(10)

    # when: four more requests are answered meanwhile, to two targets
    writer.hand_over(messages(2, 3), "b")
    writer.hand_over(messages(4, to="topic"), "c")
    writer.hand_over(messages(5), "d")
    writer.hand_over(messages(6, to="topic"), "e")
    store.gate.set()

    # then: the first write alone, then one write covering the four, in the order handed over
    assert [ticket for ticket, _ in wait_written(writer, 5)] == ["a", "b", "c", "d", "e"]
    writer.close()
    assert store.calls == [[("out", "orders-0-0"), ("out", "orders-0-1")],
                           [("out", "orders-0-2"), ("out", "orders-0-3"), ("topic", "orders-0-4"),
                            ("out", "orders-0-5"), ("topic", "orders-0-6")]]
    assert writer.writes == 2


def test_close_writes_everything_handed_over_before_it_returns() -> None:
    # given: hand-overs queued behind a write under way (a run interrupted with answered requests)
    store = GatedStore()
    writer = CheckpointWriter(store)
    for i in range(5):
        writer.hand_over(messages(i), i)
    assert store.entered.wait(10)
    threading.Timer(0.05, store.gate.set).start()

    # when
    writer.close()

    # then: all of them written, and the thread is gone
    assert sorted(i for call in store.calls for _, i in call) == [f"orders-0-{i}" for i in range(5)]
    assert not [t for t in threading.enumerate() if t.name == "bridge-checkpoints"]
    with pytest.raises(RuntimeError, match="closed"):
        writer.hand_over(messages(9), 9)


def test_an_exception_from_the_callback_comes_back_with_its_tickets_and_the_writer_goes_on() -> None:
    calls: list[int] = []

    def on_delivered(done: Sequence[OutgoingMessage]) -> None:
        calls.append(len(done))
        if len(calls) == 1:
            raise ValueError("a bug")

    writer = CheckpointWriter(on_delivered)
    writer.hand_over(messages(0), "first")
    first = wait_written(writer, 1)
    writer.hand_over(messages(1), "second")
    second = wait_written(writer, 1)
    writer.close()
    assert [(t, type(e).__name__) for t, e in first] == [("first", "ValueError")]
    assert second == [("second", None)]


def test_a_writer_nothing_was_handed_to_starts_no_thread() -> None:
    writer = CheckpointWriter(lambda done: None)
    assert writer.written() == []
    writer.close()
    assert writer.writes == 0
    assert not [t for t in threading.enumerate() if t.name == "bridge-checkpoints"]


class _WakeFailsOnce:
    """A socket pair's writing end whose first `send` fails (the writer thread's one step outside its write)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.failed = False

    def send(self, data: bytes) -> int:
        if not self.failed:
            self.failed = True
            raise OSError("no buffer space")
        return self.sock.send(data)

    def close(self) -> None:
        self.sock.close()


def test_a_writer_thread_that_fails_outside_a_write_gives_every_ticket_back_with_the_error() -> None:
    # given: a writer whose wake-up fails after its first write
    store = GatedStore()
    store.gate.set()
    writer = CheckpointWriter(store)
    writer._theirs = _WakeFailsOnce(writer._theirs)  # type: ignore[assignment]

    # when: a first hand-over (written, then the wake-up fails), and one after the thread is gone
    writer.hand_over(messages(0), "first")
    first = wait_written(writer, 1)
    writer.hand_over(messages(1), "second")
    second = wait_written(writer, 1)
    writer.close()

    # then: both tickets come back (nobody waits for ever), the second with the error and never written
    assert first == [("first", None)]
    assert [(t, type(e).__name__) for t, e in second] == [("second", "OSError")]
    assert store.calls == [[("out", "orders-0-0")]]


def test_a_one_thread_run_whose_writer_thread_failed_raises_from_finish_instead_of_waiting() -> None:
    # given: a one-thread run whose checkpoint writer's thread fails after its first write
    def broken_writer(on_delivered: Any) -> CheckpointWriter:
        writer = CheckpointWriter(on_delivered)
        writer._theirs = _WakeFailsOnce(writer._theirs)  # type: ignore[assignment]
        return writer

    port = Multiplexed(FakeSender())
    deliverer = Deliverer({"sqs": port, "sns": port}, max_attempts=1, base_delay_ms=0, max_concurrency=4,
                          hand_off=broken_writer)
    queue = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", 262_144)

    raised: list[BaseException] = []

    def deliver() -> None:
        try:
            with deliverer.start(lambda done: None, standard_in_flight=1) as run:
                for i in range(40):
                    run.add(queue, messages(i)[0])
                run.finish()
        except OSError as exc:
            raised.append(exc)

    # when: on a thread of its own, so a run that waits for ever fails the test instead of hanging it
    runner = threading.Thread(target=deliver, daemon=True)
    runner.start()
    runner.join(20)

    # then: finish raised the writer's error (before, it waited for tickets that never came back)
    assert not runner.is_alive(), "the run is still waiting for its checkpoint writes"
    assert [str(e) for e in raised] == ["no buffer space"]
    assert not [t for t in threading.enumerate() if t.name == "bridge-checkpoints"]
