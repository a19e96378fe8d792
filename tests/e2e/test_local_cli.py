"""The `bridge` CLI across commands: what a killed service, an orphan and a non-default config leave behind.

Each test runs its own stack in its own state directory through the real console entry point
(`python -m bridge_local.cli`), as a user's shell would, and stops it at the end.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bridge_local.services import pid_alive, read_state
from tests.e2e.conftest import CONFIG_PATH, ROOT

pytestmark = pytest.mark.e2e


def bridge(state_dir: Path, *args: str, config: Path | None = None,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    return subprocess.run([*argv, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """A state directory whose stack (if any) is stopped at the end, orphans included."""
    d = tmp_path / "state"
    yield d
    state = read_state(d)
    if state is not None:
        bridge(d, "down")
        for s in state.services:
            if pid_alive(s.pid):
                os.kill(s.pid, signal.SIGKILL)


def test_kill_9_of_the_local_aws_is_reported_by_status_and_up_refuses_to_start_over_the_orphan(
        state_dir: Path) -> None:
    # given: a running stack whose local AWS is killed with SIGKILL
    up = bridge(state_dir, "up", "--partitions", "1")
    assert up.returncode == 0, up.stderr
    state = read_state(state_dir)
    assert state is not None
    os.kill(state.aws.pid, signal.SIGKILL)

    # when / then: status names the dead service and what still runs
    status = bridge(state_dir, "status")
    assert status.returncode == 1
    assert f"ministack (pid {state.aws.pid}, port {state.aws.port}) is gone" in status.stderr
    assert f"still running: tansu pid {state.kafka.pid}" in status.stderr

    # when / then: up refuses to start a second stack beside the orphaned broker, and says what it found
    again = bridge(state_dir, "up", "--partitions", "1")
    assert again.returncode == 1
    assert "found a broken local stack" in again.stderr
    assert f"tansu pid {state.kafka.pid} port {state.kafka.port} still running" in again.stderr
    assert f"ministack pid {state.aws.pid} gone" in again.stderr
    assert read_state(state_dir) == state  # nothing new was started or recorded

    # when / then: down stops the orphan, and a new stack starts
    down = bridge(state_dir, "down")
    assert down.returncode == 0, down.stderr
    assert "tansu" in down.stdout
    assert not pid_alive(state.kafka.pid)
    assert bridge(state_dir, "up", "--partitions", "1").returncode == 0


def test_restart_aws_keeps_what_the_local_aws_holds_and_after_a_kill_9_says_it_is_gone(state_dir: Path) -> None:
    # given: a running stack with a record parked in the bridge DLQ
    assert bridge(state_dir, "up", "--partitions", "1").returncode == 0
    state = read_state(state_dir)
    assert state is not None
    invoke = bridge(state_dir, "invoke", "--event", str(ROOT / "events" / "fail-unroutable.json"), "--json")
    assert invoke.returncode == 0, invoke.stderr

    # when: the local AWS is restarted
    restart = bridge(state_dir, "restart-aws")

    # then: same port, new process, the parked record still there
    assert restart.returncode == 0, restart.stderr
    assert f"local AWS on port {state.aws.port} stopped: it stopped cleanly and saved its state" in restart.stdout
    assert "resumed with that state" in restart.stdout
    restarted = read_state(state_dir)
    assert restarted is not None
    assert (restarted.aws.port, restarted.kafka.pid) == (state.aws.port, state.kafka.pid)
    assert restarted.aws.pid != state.aws.pid
    dry = bridge(state_dir, "redrive", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would redrive 1 record(s) from 1 park(s)" in dry.stdout

    # when: it is killed with SIGKILL instead
    os.kill(restarted.aws.pid, signal.SIGKILL)

    # then: the next command says it is gone and what was lost; restart-aws starts it empty and provisions again
    status = bridge(state_dir, "status")
    assert status.returncode == 1
    assert "did not save its state (killed, not stopped" in status.stderr
    again = bridge(state_dir, "restart-aws")
    assert again.returncode == 0, again.stderr
    assert "started empty" in again.stdout
    assert "provisioned the config's queues" in again.stdout
    assert bridge(state_dir, "status").returncode == 0
    empty = bridge(state_dir, "redrive", "--dry-run")
    assert empty.returncode == 1
    assert "is empty: nothing to redrive" in empty.stderr


def _other_bridge(tmp_path: Path) -> Path:
    """dev.yaml under another bridge name: other queues, topics, secrets and consumer groups."""
    doc = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    doc["name"] = "other-bridge"
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_up_with_a_config_is_remembered_by_later_commands_and_another_bridge_is_refused(
        state_dir: Path, tmp_path: Path) -> None:
    # given: a stack started with a non-default config
    other = _other_bridge(tmp_path)
    up = bridge(state_dir, "up", "--partitions", "1", config=other)
    assert up.returncode == 0, up.stderr

    # when: later commands name no config
    produced = bridge(state_dir, "produce", "--count", "2")
    polled = bridge(state_dir, "poll", "--idle-seconds", "1", "--quiet")
    inspected = bridge(state_dir, "inspect")
    status = bridge(state_dir, "status")

    # then: they use the stack's config: its secrets signed, its queues received
    assert produced.returncode == 0, produced.stderr
    assert polled.returncode == 0, polled.stderr
    assert "other-bridge-dev-fulfilment.fifo" in inspected.stdout
    assert "orders-bridge" not in inspected.stdout
    assert "Bridge DLQ (other-bridge-" in inspected.stdout
    assert "{'" not in inspected.stdout
    assert str(other) in status.stdout
    assert "parked: unroutable" in polled.stdout  # the demo scenario's unroutable records, handled

    # when / then: a config for another bridge is refused in one line naming both
    mixed = bridge(state_dir, "poll", "--idle-seconds", "1", config=CONFIG_PATH)
    assert mixed.returncode == 1
    (line,) = mixed.stderr.strip().splitlines()
    assert f"started with --config {other}" in line
    assert "'orders-bridge'" in line
    assert "Fix: leave out --config" in line


def test_status_says_which_config_and_mode(state_dir: Path) -> None:
    # given: the service logs of five earlier stacks in the state dir (each `bridge up` writes two new files)
    state_dir.mkdir(parents=True)
    for i in range(5):
        for name in ("tansu", "ministack"):
            old = state_dir / f"{name}-{1000 + i}.log"
            old.write_text("old\n", encoding="ascii")
            os.utime(old, (1_000_000 + i, 1_000_000 + i))
    up = bridge(state_dir, "up", "--partitions", "1")
    assert up.returncode == 0, up.stderr
    # then: the three newest earlier logs of each service are kept, and the new stack's
    for name in ("tansu", "ministack"):
        assert sorted(p.name for p in state_dir.glob(f"{name}-*.log") if p.name.startswith(f"{name}-100")) == [
            f"{name}-1002.log", f"{name}-1003.log", f"{name}-1004.log"], name
        assert len(list(state_dir.glob(f"{name}-*.log"))) == 4
    status = bridge(state_dir, "status", "--json")
    assert status.returncode == 0, status.stderr
    doc = json.loads(status.stdout)
    assert doc["running"] is True
    assert doc["mode"] == "in-process"
    assert doc["config"] == str(CONFIG_PATH)
    assert {s["name"] for s in doc["services"]} == {"tansu", "ministack"}


@pytest.mark.parametrize("delay", [0.5, 3.0], ids=["while-joining", "while-polling"])
def test_ctrl_c_during_poll_leaves_the_next_poll_working(state_dir: Path, delay: float) -> None:
    # given: records on the broker and a poll under way
    assert bridge(state_dir, "up").returncode == 0
    produced = bridge(state_dir, "produce", "--count", "100")
    assert produced.returncode == 0, produced.stderr
    total = int(produced.stdout.split()[1])  # "produced N records in ..."
    argv = [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), "poll", "--batch-size", "20"]
    first = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().startswith("polling ")
        time.sleep(delay)  # let the interrupt land while the consumer groups join, or while batches flow

        # when: Ctrl-C
        first.send_signal(signal.SIGINT)
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 130, err

    # then: the next poll gets its partitions and handles the rest; nothing is lost
    second = bridge(state_dir, "poll", "--idle-seconds", "2", "--quiet", timeout=90)
    assert second.returncode == 0, second.stderr
    handled_first = _polled(out)
    handled_second = _polled(second.stdout)
    assert handled_first + handled_second >= total


def _polled(stdout: str) -> int:
    """N from the 'polled N records' line (0 when the poll stopped before printing one)."""
    for line in stdout.splitlines():
        if line.startswith("polled "):
            return int(line.split()[1])
    return 0


@pytest.mark.parametrize("service", ["kafka", "aws"])
def test_a_service_killed_mid_poll_stops_the_poll_at_once_with_the_fix(state_dir: Path, service: str) -> None:
    # given: batches flowing through a poll
    assert bridge(state_dir, "up", "--partitions", "1").returncode == 0
    state = read_state(state_dir)
    assert state is not None
    produced = bridge(state_dir, "produce", "--count", "300")
    assert produced.returncode == 0, produced.stderr
    total = int(produced.stdout.split("produced ", 1)[1].split()[0])
    argv = [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), "poll", "--batch-size", "20"]
    poll = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert poll.stdout is not None
        assert poll.stdout.readline().startswith("polling ")
        assert " records in " in poll.stdout.readline()  # the first progress line: a batch was handled

        # when: the broker or the local AWS is killed with SIGKILL
        killed = state.kafka if service == "kafka" else state.aws
        os.kill(killed.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        out, err = poll.communicate(timeout=120)
        seconds = time.monotonic() - killed_at
    finally:
        if poll.poll() is None:
            poll.kill()
            poll.wait()

    # then: the poll stops on its own, saying which service is gone and the fix `bridge status` gives,
    # instead of retrying batches into it (the local AWS: minutes, then "check the region and your network")
    # or waiting out the group join (the broker: 30 s, then "are the topics created")
    assert poll.returncode == 1, out + err
    status = bridge(state_dir, "status")
    fix = status.stderr[status.stderr.index("Fix: "):].strip()
    last = err.strip().splitlines()[-1]
    assert last.startswith("bridge: error: poll stopped with "), err
    handled = int(last.split("poll stopped with ", 1)[1].split()[0])
    assert " handled and committed: the local stack is broken: " in last
    assert f"{killed.name} (pid {killed.pid}, port {killed.port}) is gone" in last
    assert fix in last
    assert err.count(f"{killed.name} (pid {killed.pid}") == 1, err  # the problem is printed once
    # "the next poll reads it again" only while the broker runs: a dead one took its records with it
    assert ("the next bridge poll reads it again" in last) == (service == "aws"), last
    assert seconds < 30, f"took {seconds:.0f} s"
    # and: the Kafka client's reconnect attempts (a line every 50 ms per consumer) go to a log file
    assert not [line for line in err.splitlines() if line.startswith("%")], err[:2000]
    if service == "kafka":
        assert "Connection refused" in (state_dir / "poller-kafka.log").read_text(encoding="utf-8")

    if service == "aws":
        # and: what the fix says works: the next poll reads exactly what the stopped one did not commit,
        # the batch in hand included (had it been committed undelivered, it would read fewer and lose them)
        assert 0 < handled < total
        assert bridge(state_dir, "restart-aws").returncode == 0
        again = bridge(state_dir, "poll", "--idle-seconds", "2", "--quiet", timeout=120)
        assert again.returncode == 0, again.stderr
        assert _polled(again.stdout) == total - handled, (total, handled, again.stdout)


def test_the_local_aws_killed_while_invoke_runs_is_reported_with_the_fix_not_as_a_network_problem(
        state_dir: Path) -> None:
    # given: an invocation under way (its first line printed: the stack was found running)
    assert bridge(state_dir, "up", "--partitions", "1").returncode == 0
    state = read_state(state_dir)
    assert state is not None
    argv = [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), "invoke", "--event",
            str(ROOT / "events" / "route-order-lifecycle.json")]
    invoke = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert invoke.stdout is not None
        assert invoke.stdout.readline().startswith("invoking ")

        # when: the local AWS is killed with SIGKILL
        os.kill(state.aws.pid, signal.SIGKILL)
        _, err = invoke.communicate(timeout=120)
    finally:
        if invoke.poll() is None:
            invoke.kill()
            invoke.wait()

    # then: one line saying the local AWS went away during the command, with bridge status's fix, not
    # botocore's endpoint error with "check the region and your network" (advice for AWS, not 127.0.0.1)
    assert invoke.returncode == 1, err
    status = bridge(state_dir, "status")
    fix = status.stderr[status.stderr.index("Fix: "):].strip()
    (line,) = [x for x in err.splitlines() if x.startswith("bridge: error: ")]
    assert line.startswith("bridge: error: the local AWS stopped while the command ran (Could not connect to the "
                           f"endpoint URL: \"{state.endpoint_url}/"), line
    assert f"ministack (pid {state.aws.pid}, port {state.aws.port}) is gone" in line
    assert line.endswith(fix)
    assert "check the region" not in err


def test_a_restart_aws_under_a_running_poll_is_not_taken_for_a_dead_local_aws(state_dir: Path) -> None:
    # given: batches flowing through a poll
    assert bridge(state_dir, "up", "--partitions", "1").returncode == 0
    produced = bridge(state_dir, "produce", "--count", "300")
    assert produced.returncode == 0, produced.stderr
    total = int(produced.stdout.split("produced ", 1)[1].split()[0])
    argv = [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), "poll", "--batch-size", "20",
            "--idle-seconds", "3"]
    poll = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert poll.stdout is not None
        assert poll.stdout.readline().startswith("polling ")
        assert " records in " in poll.stdout.readline()

        # when: the local AWS is replaced under it, as the Fix for a dead one says (the old pid is gone for good)
        restarted = bridge(state_dir, "restart-aws")
        out, err = poll.communicate(timeout=180)
    finally:
        if poll.poll() is None:
            poll.kill()
            poll.wait()

    # then: the poll goes on against the new one (the state file names it) and handles every record
    assert restarted.returncode == 0, restarted.stderr
    assert poll.returncode == 0, err[-2000:]
    assert "is gone" not in err
    assert _polled(out) == total, out
