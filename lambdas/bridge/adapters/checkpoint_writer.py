"""Checkpoint writes of a one-thread run (bridge.delivery `MultiplexedRun`) on one thread of their own.

A checkpoint write is a blocking DynamoDB call (bridge.checkpoints, bridge.adapters.dynamodb): made on the
planning thread it would hold every request in flight for its 5-10 ms. The run hands each answered
request's stored messages to `CheckpointWriter.hand_over` and goes on; the writer thread takes everything
handed over since its last write and makes it one `on_delivered` call, whatever their targets (so one
BatchWriteItem covers several requests: progress items are per shard and destination, not per request, and
one call takes up to 25), then tells the run which hand-overs are written through a socket pair the run's
selector watches. The run keeps a
standard request's `standard_in_flight` slot until its hand-over is written, as the send threads did by
writing before their next send. Why a thread and not DynamoDB requests on the selector:
docs/decisions.md (2026-12-02, "Checkpointed runs on the one-thread path").
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Sequence

from bridge.delivery import OnDelivered
from bridge.envelope import OutgoingMessage


class CheckpointWriter:
    """`CheckpointHandOff` (bridge.delivery): one writer thread per run, started by the first hand-over.

    Writes are coalesced, never reordered: a write takes all hand-overs queued when it starts, in the order
    they came, as one `on_delivered` call, and a hand-over queued while a write is under way goes in the
    next one. `written` gives back
    each hand-over's ticket once its `on_delivered` call returned, with the exception it raised, if any (a
    failed write is not one: `BatchProgress.record` counts it and returns). `close` waits for every
    hand-over to be written: a run that is interrupted still records what its requests stored."""

    def __init__(self, on_delivered: OnDelivered) -> None:
        self._on_delivered = on_delivered
        self._lock = threading.Lock()
        self._queued = threading.Condition(self._lock)
        self._queue: list[tuple[Sequence[OutgoingMessage], object]] = []
        self._written: list[tuple[object, BaseException | None]] = []
        self._thread: threading.Thread | None = None
        self._closing = False
        self._broken: BaseException | None = None  # what ended the thread outside a write, if anything did
        self._ours, self._theirs = socket.socketpair()  # a byte on `_theirs`: `written` has something
        self._ours.setblocking(False)
        self.writes = 0  # `on_delivered` calls made (each one store write): what coalescing saved is visible

    def fileno(self) -> int:
        """Readable when hand-overs were written since the last `written`."""
        return self._ours.fileno()

    def hand_over(self, messages: Sequence[OutgoingMessage], ticket: object) -> None:
        """Queue `messages` (stored by one request) to be written; `ticket` comes back from `written`."""
        with self._lock:
            if self._closing:
                raise RuntimeError("checkpoint writer closed")
            if self._broken is not None:  # the thread is gone: the ticket comes back at once, with its error
                self._written.append((ticket, self._broken))
                self._theirs.send(b"\0")
                return
            self._queue.append((messages, ticket))
            if self._thread is None:
                thread = threading.Thread(target=self._serve, daemon=True, name="bridge-checkpoints")
                try:
                    thread.start()
                except Exception as exc:  # no thread to be had (Lambda's thread limit, no memory): the ticket
                    self._queue.pop()  # comes back at once with the error, which finish raises; `close`
                    self._broken = exc  # then has no thread to join
                    self._written.append((ticket, exc))
                    self._theirs.send(b"\0")
                    return
                self._thread = thread
            self._queued.notify()

    def written(self) -> list[tuple[object, BaseException | None]]:
        """The tickets written since the last call, in the order they were handed over."""
        try:
            while self._ours.recv(4096):  # first the wake-ups, then the list: a later byte is a spare wake-up
                pass
        except BlockingIOError:
            pass
        with self._lock:
            done, self._written = self._written, []
        return done

    def close(self) -> None:
        """Write what was handed over, then end the thread; idempotent."""
        with self._lock:
            self._closing = True
            self._queued.notify()
            thread = self._thread
        try:
            if thread is not None:
                thread.join()
        finally:
            self._ours.close()
            self._theirs.close()

    def _serve(self) -> None:
        batch: list[tuple[Sequence[OutgoingMessage], object]] = []
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closing:
                        self._queued.wait()
                    if not self._queue:
                        return
                    batch, self._queue = self._queue, []
                error: BaseException | None = None
                try:
                    self._on_delivered(batch[0][0] if len(batch) == 1 else
                                       [m for messages, _ in batch for m in messages])
                except BaseException as exc:  # handed to the run, which re-raises it from finish
                    error = exc
                self.writes += 1
                with self._lock:
                    wake = not self._written
                    self._written += [(ticket, error) for _, ticket in batch]
                    batch = []
                if wake:  # `close` joins this thread before it closes the pair
                    self._theirs.send(b"\0")
        except BaseException as exc:  # never leave the run waiting for tickets that would not come back (a failed
            with self._lock:  # wake-up, no memory): each comes back with the error, which finish raises
                self._broken = exc
                lost, self._queue = batch + self._queue, []
                self._written += [(ticket, exc) for _, ticket in lost]
            with contextlib.suppress(OSError):
                self._theirs.send(b"\0")
