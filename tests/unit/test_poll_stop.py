"""How a poll decides that a local service is gone, and what it says then (bridge_local.services / poller / cli).

Real processes stand in for the services: a `sleep` per service, killed as `kill -9` kills Tansu or MiniStack.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge.config import load_config_file

from bridge_local.cli import _poll_stack_gone
from bridge_local.poller import Poller, PollerSettings, StackGoneError
from bridge_local.services import (
    ServiceState,
    StackState,
    gone_services,
    pid_alive,
    private_stack_gone,
    state_path,
)
from tests.helpers import ROOT


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for p in started:
        p.kill()
        p.wait()


def _service(processes: list[subprocess.Popen[bytes]], name: str, port: int) -> ServiceState:
    proc = subprocess.Popen(["sleep", "60"])
    processes.append(proc)
    return ServiceState(name, proc.pid, port, f"/nonexistent/{name}-{port}.log")


def _kill(processes: list[subprocess.Popen[bytes]], service: ServiceState) -> None:
    proc = next(p for p in processes if p.pid == service.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, as the real services' parent would
    assert not pid_alive(service.pid)


def _stack(processes: list[subprocess.Popen[bytes]]) -> StackState:
    return StackState(_service(processes, "tansu", 19092), _service(processes, "ministack", 14566),
                      "config/dev.yaml", time.time())


def test_a_restart_aws_during_a_poll_is_not_taken_for_a_dead_local_aws(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    # given: the poll's view of the stack, whose local AWS was then replaced (bridge restart-aws records the new one)
    polled = _stack(processes)
    _kill(processes, polled.aws)
    restarted = StackState(polled.kafka, _service(processes, "ministack", polled.aws.port), polled.config_path,
                           polled.started_at)
    tmp_path.mkdir(exist_ok=True)
    state_path(tmp_path).write_text(restarted.to_json(), encoding="utf-8")

    # when / then: the state file wins (same broker), so nothing is gone
    assert gone_services(polled, tmp_path) is None
    # and: a state file of another stack (another broker) does not hide the death
    other = StackState(_service(processes, "tansu", 29092), restarted.aws, polled.config_path, polled.started_at)
    state_path(tmp_path).write_text(other.to_json(), encoding="utf-8")
    problem = gone_services(polled, tmp_path)
    assert problem is not None
    assert f"ministack (pid {polled.aws.pid}, port {polled.aws.port}) is gone" in problem


def test_the_next_poll_reads_the_batch_again_is_said_only_while_the_broker_runs(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    aws_dead = _stack(processes)
    _kill(processes, aws_dead.aws)
    problem = _poll_stack_gone(aws_dead, tmp_path)
    assert problem is not None
    assert "Fix: bridge restart-aws" in problem
    assert problem.endswith("the next bridge poll reads it again")

    broker_dead = _stack(processes)
    _kill(processes, broker_dead.kafka)
    problem = _poll_stack_gone(broker_dead, tmp_path)
    assert problem is not None
    assert "the broker's records are gone with it" in problem
    assert "reads it again" not in problem


def test_the_demo_s_private_stack_gets_the_demo_s_fix_not_one_for_a_bridge_up_stack(
        tmp_path: Path, processes: list[subprocess.Popen[bytes]]) -> None:
    stack = _stack(processes)
    assert private_stack_gone(stack, tmp_path) is None
    _kill(processes, stack.aws)
    problem = private_stack_gone(stack, tmp_path)
    assert problem is not None
    assert problem.startswith(f"the demo's private stack is broken: ministack (pid {stack.aws.pid}, ")
    assert problem.endswith("Fix: make demo again (a new private stack)")
    assert "restart-aws" not in problem
    assert "bridge down" not in problem


def _poller(looks: list[str | None]) -> Poller:
    config = load_config_file(ROOT / "config" / "dev.yaml")
    settings = PollerSettings(health_interval_seconds=0.01, health_failures_to_stop=3)
    answers = iter(looks)
    return Poller(config, "127.0.0.1:9", lambda event, context: None, settings, health_check=lambda: next(answers))


def test_a_failure_confirmed_by_three_looks_stops_the_poll_with_how_far_it_got() -> None:
    poller = _poller(["tansu is gone. Fix: x"] * 3)
    poller.stats.records = 40
    with pytest.raises(StackGoneError) as stopped:
        poller._stop_if_stack_gone(confirm=True)
    assert str(stopped.value) == "poll stopped with 40 records handled and committed: tansu is gone. Fix: x"


def test_a_failure_whose_service_answers_again_within_the_looks_goes_on_to_the_retries() -> None:
    # a restart-aws under way: gone at the first look, back at the second
    poller = _poller(["ministack is gone. Fix: x", None])
    poller._stop_if_stack_gone(confirm=True)
    assert poller.stack_problem is None
    assert not poller.stack_gone.is_set()
