"""A poll whose handler fails while the local AWS is being replaced (`bridge restart-aws`) waits for it.

A real Tansu broker feeds a real Poller. The local AWS is a process the state file names, and its port is a real
listening socket that the test closes and opens: closed, the handler's connection is refused, as the bridge's is
while MiniStack restarts. Before the wait, the batch's retries (0.2 s, then 0.4 s) were used up within a restart,
and its on-failure write then reached a MiniStack still starting: the poll exited 1 (session 9's CI, the e2e test
test_a_restart_aws_under_a_running_poll_is_not_taken_for_a_dead_local_aws).
"""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from bridge.config import load_config_file
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge_local.cli import _poll_stack_gone
from bridge_local.poller import Poller, PollerSettings, StackGoneError
from bridge_local.services import (
    HOST,
    ServiceState,
    StackState,
    free_port,
    local_aws_settling,
    start_kafka,
    state_path,
    stop_process,
)

ROOT = Path(__file__).resolve().parents[2]
RECORDS = 5


class RecordingOnFailure:
    """The on-failure destination as an observer: what the poller handed it (the S3 one writes the same)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send(self, event: dict[str, Any], error: str, attempts: int) -> str:
        self.sent.append((error, attempts))
        return f"on-failure/{len(self.sent)}"


class LocalAws:
    """A process the state file names as MiniStack, and its port: a listening socket while `up`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(["sleep", "120"])
        self.service = ServiceState("ministack", self.process.pid, self.port, "/nonexistent/ministack.log")
        self._listener: socket.socket | None = None
        self._timers: list[threading.Timer] = []

    def later(self, seconds: float, action: Callable[[], object]) -> None:
        """Run `action` in `seconds`, on a timer the fixture cancels (a restart that outlives its test)."""
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def up(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((HOST, self.port))
        listener.listen(64)
        self._listener = listener

    def down(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def kill(self) -> None:
        self.down()
        self.process.kill()
        self.process.wait()

    def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self.kill()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ServiceState]:
    kafka = start_kafka(tmp_path)
    try:
        yield kafka
    finally:
        stop_process(kafka.pid)


@pytest.fixture
def aws() -> Iterator[LocalAws]:
    local = LocalAws()
    try:
        yield local
    finally:
        local.close()


def _topic_with_records(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(RECORDS):
        producer.produce("orders", key=f"k{i}".encode(), value=b"{}")
    producer.flush(10)


def _handler_through(aws: LocalAws, calls: list[float], on_first_call: Callable[[], object] | None) -> Any:
    """A handler whose work needs the local AWS: it connects to its port, refused while the port is closed.
    `on_first_call` runs at its first call, before it connects: what happens to the local AWS meanwhile."""

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        if on_first_call is not None and len(calls) == 1:
            on_first_call()
        socket.create_connection((HOST, aws.port), timeout=2).close()
        return {"batchItemFailures": []}

    return handler


def _restart(aws: LocalAws, seconds: float) -> Callable[[], object]:
    """A restart-aws under way: the port closes, and opens again `seconds` later (the same process)."""

    def begin() -> None:
        aws.down()
        aws.later(seconds, aws.up)

    return begin


class Poll:
    """A poll of the test's topic through the fake local AWS, as `bridge poll` builds it (health watch included)."""

    def __init__(self, tmp_path: Path, broker: ServiceState, aws: LocalAws) -> None:
        self.tmp_path, self.broker, self.aws = tmp_path, broker, aws
        self.bootstrap = f"{HOST}:{broker.port}"
        _topic_with_records(self.bootstrap)
        self.state = StackState(broker, aws.service, str(ROOT / "config" / "dev.yaml"), time.time())
        state_path(tmp_path).write_text(self.state.to_json(), encoding="utf-8")
        self.calls: list[float] = []
        self.notices: list[str] = []
        self.on_failure = RecordingOnFailure()

    def poller(self, on_first_call: Callable[[], object] | None = None, **settings: Any) -> Poller:
        self.calls.clear()
        options: dict[str, Any] = {"batch_size": 10, "batching_window_seconds": 0.2, "idle_seconds": 3,
                                   "join_timeout_seconds": 60, **settings}
        return Poller(load_config_file(ROOT / "config" / "dev.yaml"), self.bootstrap,
                      _handler_through(self.aws, self.calls, on_first_call), PollerSettings(**options),
                      self.on_failure, topics=("orders",), notice=self.notices.append,
                      health_check=lambda: _poll_stack_gone(self.state, self.tmp_path),
                      aws_settling=lambda: local_aws_settling(self.state, self.tmp_path))

    def read_again(self) -> int:
        """Records a fresh poll handles, the local AWS answering: what the interrupted poll left uncommitted."""
        self.aws.up()
        return self.poller().run().records


@pytest.fixture
def poll(tmp_path: Path, broker: ServiceState, aws: LocalAws) -> Poll:
    aws.up()
    return Poll(tmp_path, broker, aws)


@pytest.mark.parametrize("max_retries", [2, 0])
def test_a_batch_whose_handler_failed_during_an_aws_restart_waits_for_it_and_is_delivered(
        poll: Poll, max_retries: int) -> None:
    # given: the first batch finds the local AWS restarting, silent for 2.5 s: longer than the retries take (0.6 s);
    # with max_retries 0, a failure that counted would send the batch to on-failure at once
    poller = poll.poller(_restart(poll.aws, 2.5), max_retries=max_retries)

    # when
    stats = poller.run()

    # then: one refused call, a wait said on stderr, then the batch handed over again and delivered, the refused
    # call not counted as a retry: nothing to on-failure
    assert poll.on_failure.sent == []
    assert stats.records == RECORDS
    assert len(poll.calls) == 2, poll.calls
    assert poll.calls[1] - poll.calls[0] >= 2.0  # it waited for the port, not 0.2 s
    assert any("waits for it, up to 90 s more" in n for n in poll.notices), poll.notices
    assert any("answers again after" in n and "does not count as a retry" in n for n in poll.notices), poll.notices


def test_a_call_refused_during_a_restart_does_not_use_up_a_retry(poll: Poll) -> None:
    # given: one retry allowed; the first call meets a restart, the second fails on its own (the AWS answers),
    # the third goes through
    poller = poll.poller(_restart(poll.aws, 1.5), max_retries=1)
    first_call = poller.handler

    def flaky_once(event: dict[str, Any], context: Any) -> dict[str, Any]:
        if len(poll.calls) == 1:
            poll.calls.append(time.monotonic())
            raise RuntimeError("a transient handler failure")
        return cast("dict[str, Any]", first_call(event, context))

    poller.handler = flaky_once

    # when
    stats = poller.run()

    # then: the refused call was not counted, so the one retry was left for the real failure: delivered
    assert poll.on_failure.sent == []
    assert stats.records == RECORDS
    assert len(poll.calls) == 3, poll.calls


def test_a_handler_failing_while_the_local_aws_answers_still_goes_to_on_failure_after_its_retries(poll: Poll) -> None:
    # given: the local AWS answers, and the handler fails anyway (a bug, a bad record): no restart to wait for
    poller = poll.poller()

    def failing(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        poll.calls.append(time.monotonic())
        raise RuntimeError("a handler bug")

    poller.handler = failing

    # when
    poller.run()

    # then: the retries as Lambda's, 0.2 s then 0.4 s apart, then the on-failure destination; no wait said
    assert [attempts for _, attempts in poll.on_failure.sent] == [3]
    assert len(poll.calls) == 3
    assert poll.calls[-1] - poll.calls[0] < 5.0
    assert not any("waits for it" in n for n in poll.notices), poll.notices


def test_a_local_aws_that_never_answers_again_stops_the_poll_at_the_batch_s_wait_budget_with_its_fix(
        poll: Poll) -> None:
    # given: the port closes for good while the process lives on (wedged, or a restart that never binds), and a
    # wait budget of 2 s for the batch
    poller = poll.poller(poll.aws.down, aws_settle_seconds=2)
    began = time.monotonic()

    # when / then: one budget for the batch, not one per attempt; then the poll stops with the Fix
    with pytest.raises(StackGoneError) as stopped:
        poller.run()
    assert time.monotonic() - began < 30
    assert "the local AWS did not answer within 2 s while a batch waited for it" in str(stopped.value)
    assert "Fix: bridge status" in str(stopped.value)
    assert len(poll.calls) == 1
    assert poll.on_failure.sent == []
    # and: nothing of the batch was committed, so the next poll reads it again
    assert poll.read_again() == RECORDS


def test_a_local_aws_that_dies_during_the_wait_stops_the_poll_with_its_fix(poll: Poll) -> None:
    # given: a restart that goes wrong: the port closes, then the process dies (kill -9) 1 s into the wait
    def dies() -> None:
        poll.aws.down()
        poll.aws.later(1.0, poll.aws.kill)

    poller = poll.poller(dies)
    began = time.monotonic()

    # when / then: the health watch's verdict ends the wait within seconds, not at the 90 s budget
    with pytest.raises(StackGoneError) as stopped:
        poller.run()
    assert time.monotonic() - began < 30
    assert f"ministack (pid {poll.aws.service.pid}, port {poll.aws.port}) is gone" in str(stopped.value)
    assert "Fix:" in str(stopped.value)
    assert any("waits for it" in n for n in poll.notices), poll.notices
    assert not any("stopped while" in n for n in poll.notices), poll.notices  # that line is Ctrl-C's
    assert poll.on_failure.sent == []


def test_ctrl_c_during_the_wait_stops_the_poll_at_once_and_leaves_the_batch_for_the_next_poll(poll: Poll) -> None:
    # given: a restart that takes 60 s, and Ctrl-C (the poller's stop) 1 s into the wait
    poller = poll.poller(_restart(poll.aws, 60))
    stopped_at: list[float] = []

    def ctrl_c() -> None:
        stopped_at.append(time.monotonic())
        poller.stop()

    poller.handler = _handler_through(poll.aws, poll.calls, lambda: (poll.aws.down(), poll.aws.later(1.0, ctrl_c)))

    # when
    stats = poller.run()

    # then: the poll returned within a second of the stop, with nothing handled or committed, and said so
    assert stopped_at
    assert time.monotonic() - stopped_at[0] < 3
    assert stats.records == 0
    assert poll.on_failure.sent == []
    assert any("stopped while the batch in hand waited" in n for n in poll.notices), poll.notices
    assert poll.read_again() == RECORDS


def test_a_local_aws_killed_before_the_handler_fails_stops_the_poll_before_any_wait(poll: Poll) -> None:
    # given: the local AWS killed (kill -9) and no restart coming: the failed call's own check finds it gone
    poll.aws.kill()
    poller = poll.poller()
    began = time.monotonic()

    # when / then: the poll stops with the Fix, no wait said, no on-failure object
    with pytest.raises(StackGoneError) as stopped:
        poller.run()
    assert time.monotonic() - began < 30
    assert f"ministack (pid {poll.aws.service.pid}, port {poll.aws.port}) is gone" in str(stopped.value)
    assert not any("waits for it" in n for n in poll.notices), poll.notices
    assert poll.on_failure.sent == []
