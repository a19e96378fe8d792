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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

    def up(self) -> None:
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


def _handler_through(aws: LocalAws, calls: list[float], restart_seconds: float | None = None) -> Any:
    """A handler whose work needs the local AWS: it connects to its port, refused while the port is closed.
    With `restart_seconds`, its first call finds the local AWS restarting: the port opens that much later."""

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        if restart_seconds is not None and len(calls) == 1:
            aws.down()
            threading.Timer(restart_seconds, aws.up).start()
        socket.create_connection((HOST, aws.port), timeout=2).close()
        return {"batchItemFailures": []}

    return handler


def _poller(tmp_path: Path, broker: ServiceState, aws: LocalAws, calls: list[float], notices: list[str],
            on_failure: RecordingOnFailure, restart_seconds: float | None = None) -> Poller:
    bootstrap = f"{HOST}:{broker.port}"
    _topic_with_records(bootstrap)
    state = StackState(broker, aws.service, str(ROOT / "config" / "dev.yaml"), time.time())
    state_path(tmp_path).write_text(state.to_json(), encoding="utf-8")
    settings = PollerSettings(batch_size=10, batching_window_seconds=0.2, idle_seconds=3, join_timeout_seconds=60)
    handler = _handler_through(aws, calls, restart_seconds)
    return Poller(load_config_file(ROOT / "config" / "dev.yaml"), bootstrap, handler, settings, on_failure,
                  topics=("orders",), notice=notices.append,
                  health_check=lambda: _poll_stack_gone(state, tmp_path),
                  aws_settling=lambda: local_aws_settling(state, tmp_path))


def test_a_batch_whose_handler_failed_during_an_aws_restart_waits_for_it_and_is_delivered(
        tmp_path: Path, broker: ServiceState, aws: LocalAws) -> None:
    # given: the first batch finds the local AWS restarting, silent for 2.5 s: longer than the retries take (0.6 s)
    aws.up()
    calls: list[float] = []
    notices: list[str] = []
    on_failure = RecordingOnFailure()
    poller = _poller(tmp_path, broker, aws, calls, notices, on_failure, restart_seconds=2.5)

    # when
    stats = poller.run()

    # then: one refused call, a wait said on stderr, then the retry delivered the batch: nothing to on-failure
    assert on_failure.sent == []
    assert stats.records == RECORDS
    assert len(calls) == 2, calls
    assert calls[1] - calls[0] >= 2.0  # the retry waited for the port, not 0.2 s
    assert any("waits up to 90 s" in n for n in notices), notices
    assert any("answers again after" in n for n in notices), notices


def test_a_handler_failing_while_the_local_aws_answers_still_goes_to_on_failure_after_its_retries(
        tmp_path: Path, broker: ServiceState, aws: LocalAws) -> None:
    # given: the local AWS answers, and the handler fails anyway (a bug, a bad record): no restart to wait for
    aws.up()
    calls: list[float] = []
    notices: list[str] = []
    on_failure = RecordingOnFailure()
    poller = _poller(tmp_path, broker, aws, calls, notices, on_failure)

    def failing(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        calls.append(time.monotonic())
        raise RuntimeError("a handler bug")

    poller.handler = failing

    # when
    poller.run()

    # then: the retries as Lambda's, 0.2 s then 0.4 s apart, then the on-failure destination; no wait said
    assert [attempts for _, attempts in on_failure.sent] == [3]
    assert len(calls) == 3
    assert calls[-1] - calls[0] < 5.0
    assert not any("waits up to" in n for n in notices), notices


def test_a_local_aws_gone_for_good_stops_the_poll_with_its_fix_instead_of_waiting_out_the_90_s(
        tmp_path: Path, broker: ServiceState, aws: LocalAws) -> None:
    # given: the local AWS killed (kill -9) and no restart coming
    aws.kill()
    calls: list[float] = []
    notices: list[str] = []
    on_failure = RecordingOnFailure()
    poller = _poller(tmp_path, broker, aws, calls, notices, on_failure)
    began = time.monotonic()

    # when / then: the health watch's verdict ends the wait, with the Fix, and no on-failure object
    with pytest.raises(StackGoneError) as stopped:
        poller.run()
    assert time.monotonic() - began < 30
    assert f"ministack (pid {aws.service.pid}, port {aws.port}) is gone" in str(stopped.value)
    assert "Fix:" in str(stopped.value)
    assert on_failure.sent == []
