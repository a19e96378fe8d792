"""The local AWS service: MiniStack started on loopback only, answering, and stopped with all it spawned."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from bridge_local.services import (
    AWS_PROVISIONING_MARKER,
    AWS_STARTED_MARKER,
    HOST,
    READY_TIMEOUT_SECONDS,
    SAVE_GRACE_SECONDS,
    LocalStack,
    StackError,
    StackNotRunningError,
    aws_state_dir,
    check_port_free,
    pid_alive,
    read_state,
    require_running,
    restart_aws,
    service_problem,
    start_ministack,
    start_stack,
    stop_process,
)

DEV_CONFIG = Path(__file__).resolve().parents[2] / "config" / "dev.yaml"

pytestmark = pytest.mark.integration


def _listening_addresses(pid: int) -> set[str]:
    """host:port of every TCP socket the process listens on (from /proc, so nothing is guessed)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            local, state, inode = cols[1], cols[3], cols[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            addr_hex, port_hex = local.split(":")
            v4 = width == 8
            addr = socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr_hex)[::-1]) if v4 else f"v6:{addr_hex}"
            found.add(f"{addr}:{int(port_hex, 16)}")
    return found


def test_ministack_listens_on_127_0_0_1_only_serves_what_the_bridge_needs_and_stops_cleanly(tmp_path: Path) -> None:
    # given: MiniStack started by the same routine as `bridge up`
    service = start_ministack(tmp_path)
    try:
        # then: one listening socket, on loopback, on the port it was given
        assert _listening_addresses(service.pid) == {f"{HOST}:{service.port}"}
        kw = {"endpoint_url": f"http://{HOST}:{service.port}", "region_name": "us-east-1",
              "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        # and: the services the bridge, its checkpoints and its parking use answer
        assert boto3.client("sts", **kw).get_caller_identity()["Account"] == "123456789012"
        boto3.client("sqs", **kw).create_queue(QueueName="probe")
        boto3.client("s3", **kw).create_bucket(Bucket="probe-bucket")
        ddb = boto3.client("dynamodb", **kw)
        ddb.create_table(TableName="probe-table", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        ddb.put_item(TableName="probe-table", Item={"pk": {"S": "a"}}, ConditionExpression="attribute_not_exists(pk)")
        with pytest.raises(ddb.exceptions.ConditionalCheckFailedException):
            ddb.put_item(TableName="probe-table", Item={"pk": {"S": "a"}},
                         ConditionExpression="attribute_not_exists(pk)")
    finally:
        # when
        was_running = stop_process(service.pid)
    # then: it was running, is gone, and nothing answers on its port
    assert was_running
    assert not pid_alive(service.pid)
    with socket.socket() as s:
        assert s.connect_ex((HOST, service.port)) != 0


def _aws(endpoint: str, service: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_a_clean_restart_of_the_local_aws_keeps_queues_messages_items_secrets_and_objects(tmp_path: Path) -> None:
    # given: a stack whose local AWS holds what the bridge uses: messages, a FIFO dedup id, table items,
    # a secret, a parked object
    with LocalStack(str(DEV_CONFIG), tmp_path, write_state=True) as state:
        sqs, ddb, sm, s3 = (_aws(state.endpoint_url, s) for s in ("sqs", "dynamodb", "secretsmanager", "s3"))
        url = sqs.create_queue(QueueName="kept")["QueueUrl"]
        for i in range(3):
            sqs.send_message(QueueUrl=url, MessageBody=f"m{i}")
        fifo = sqs.create_queue(QueueName="kept.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        sqs.send_message(QueueUrl=fifo, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d-1")
        ddb.create_table(TableName="kept-table", BillingMode="PAY_PER_REQUEST",
                         KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                         AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
        ddb.put_item(TableName="kept-table", Item={"pk": {"S": "a"}})
        sm.create_secret(Name="kept-secret", SecretString="key")
        s3.create_bucket(Bucket="kept-bucket")
        s3.put_object(Bucket="kept-bucket", Key="parked/x.json", Body=b"{}")

        # when: it is restarted (SIGTERM, then started again on its port)
        done = restart_aws(tmp_path)

        # then: a new process on the same port, and everything is still there (only we can read it on disk)
        assert aws_state_dir(tmp_path, state.aws.port).stat().st_mode & 0o777 == 0o700
        assert done.how == "stopped"
        assert done.found.saved, done.describe()
        assert done.state.aws.port == state.aws.port
        assert done.state.aws.pid != state.aws.pid
        assert require_running(tmp_path).aws.pid == done.state.aws.pid
        assert sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] == "3"
        sqs.send_message(QueueUrl=fifo, MessageBody="x", MessageGroupId="g", MessageDeduplicationId="d-1")
        assert sqs.get_queue_attributes(QueueUrl=fifo, AttributeNames=["ApproximateNumberOfMessages"])[
            "Attributes"]["ApproximateNumberOfMessages"] == "1"  # the dedup id survived too
        assert ddb.get_item(TableName="kept-table", Key={"pk": {"S": "a"}})["Item"] == {"pk": {"S": "a"}}
        assert sm.get_secret_value(SecretId="kept-secret")["SecretString"] == "key"
        assert s3.get_object(Bucket="kept-bucket", Key="parked/x.json")["Body"].read() == b"{}"
    # and: the stack's exit stopped the new process, and `down` left no saved state behind
    assert not pid_alive(done.state.aws.pid)
    assert not aws_state_dir(tmp_path, state.aws.port).exists()


def test_a_killed_local_aws_is_reported_as_having_lost_its_state_by_the_next_command(tmp_path: Path) -> None:
    # given: a stack whose local AWS was restarted cleanly once (so an older saved state is on disk)
    with LocalStack(str(DEV_CONFIG), tmp_path, write_state=True) as state:
        _aws(state.endpoint_url, "sqs").create_queue(QueueName="gone")
        pid = restart_aws(tmp_path).state.aws.pid

        # when: it is killed
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)  # until the kernel has it gone (bounded: SIGKILL cannot be ignored)

        # then: the next command says it is gone and did not save (the older saved state is not taken for it)
        with pytest.raises(StackNotRunningError) as err:
            require_running(tmp_path)
        assert "ministack" in str(err.value)
        assert "did not save its state (killed, not stopped" in str(err.value)
        assert "Fix: bridge restart-aws (starts it empty and provisions the config again" in str(err.value)
        # and: `bridge up` refuses to start over the orphaned broker with the same advice, word for word
        with pytest.raises(StackError) as up_err:
            start_stack(str(DEV_CONFIG), tmp_path)
        assert "found a broken local stack" in str(up_err.value)
        assert _fix(str(up_err.value)) == _fix(str(err.value))
        # and: restarting it starts empty and says so
        done = restart_aws(tmp_path)
        assert done.how == "was gone"
        assert "started empty" in done.describe()
        assert "gone" not in str(_aws(done.state.endpoint_url, "sqs").list_queues().get("QueueUrls", []))


def test_a_cleanly_stopped_local_aws_can_be_resumed_and_the_next_command_says_how(tmp_path: Path) -> None:
    with LocalStack(str(DEV_CONFIG), tmp_path, write_state=True) as state:
        _aws(state.endpoint_url, "sqs").create_queue(QueueName="resumed")
        stop_process(state.aws.pid, SAVE_GRACE_SECONDS)

        with pytest.raises(StackNotRunningError, match=r"stopped cleanly and saved its state .* Fix: bridge "
                                                       r"restart-aws resumes it"):
            require_running(tmp_path)
        with pytest.raises(StackError, match=r"found a broken local stack .* Fix: bridge restart-aws resumes it") as up:
            start_stack(str(DEV_CONFIG), tmp_path)
        with pytest.raises(StackNotRunningError) as inspect:
            require_running(tmp_path)
        assert _fix(str(up.value)) == _fix(str(inspect.value))
        done = restart_aws(tmp_path)
        assert done.found.saved
        assert any(u.endswith("/resumed") for u in _aws(done.state.endpoint_url, "sqs").list_queues()["QueueUrls"])


def test_the_local_aws_and_functions_deployed_into_it_do_not_inherit_the_bridge_s_variables(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a shell (or a process that ran the handler in-process) with the function's variables set
    monkeypatch.setenv("BRIDGE_CONFIG_PATH", str(tmp_path / "some-other-config.yaml"))
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")

    # when: MiniStack is started (a deployed function runs as its child, under its environment)
    service = start_ministack(tmp_path)
    try:
        environ = Path(f"/proc/{service.pid}/environ").read_bytes().split(b"\0")
    finally:
        stop_process(service.pid)

    # then: neither reaches it, so a deployed function reads the config packaged with it
    names = {e.split(b"=", 1)[0].decode() for e in environ if e}
    assert not {n for n in names if n.startswith(("BRIDGE_", "POWERTOOLS_"))}
    assert "PERSIST_STATE" in names


def _bridge_cli(state_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), *args],
                            cwd=DEV_CONFIG.parents[1], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_restart_aws_interrupted_while_the_new_local_aws_starts_leaves_nothing_wedged(
        tmp_path: Path, sig: signal.Signals) -> None:
    # given: a stack whose local AWS holds a message, and `bridge restart-aws` under way
    with LocalStack(str(DEV_CONFIG), tmp_path, write_state=True) as state:
        sqs = _aws(state.endpoint_url, "sqs")
        url = sqs.create_queue(QueueName="kept")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="m")
        marker = aws_state_dir(tmp_path, state.aws.port) / AWS_STARTED_MARKER
        first_start = marker.stat().st_mtime_ns
        cli = _bridge_cli(tmp_path, "restart-aws")
        # when: it is interrupted as soon as the new local AWS is being started (the old one has saved)
        while marker.stat().st_mtime_ns == first_start and cli.poll() is None:
            time.sleep(0.01)  # until the restart writes the new start marker; bounded by the command's own run
        cli.send_signal(sig)
        _, err = cli.communicate(timeout=60)

        # then: Ctrl-C says what it left; either way the state file names the new local AWS, which becomes
        # usable with what the old one saved, and no second MiniStack holds the port
        assert cli.returncode == (130 if sig == signal.SIGINT else -signal.SIGKILL), err
        if sig == signal.SIGINT:
            assert "interrupted: the local " in err, err
        recorded = read_state(tmp_path)
        assert recorded is not None
        assert recorded.aws.pid != state.aws.pid
        assert pid_alive(recorded.aws.pid)
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while (problem := service_problem(recorded.aws, tmp_path)) is not None and time.monotonic() < deadline:
            assert "yet: it started" in problem  # a starting local AWS is said to be starting, not broken
            with pytest.raises(StackNotRunningError, match=r"the local stack is starting: .* Fix: none needed"):
                require_running(tmp_path)
            time.sleep(0.2)  # until the new local AWS answers; bounded by its start timeout
        assert require_running(tmp_path).aws.pid == recorded.aws.pid
        assert sqs.receive_message(QueueUrl=url)["Messages"][0]["Body"] == "m"
    # and: the stack's exit (bridge down) stopped it and left neither a process on the port nor its folders
    assert not pid_alive(recorded.aws.pid)
    check_port_free(state.aws.port, "the test")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ministack-") and p.is_dir()) == []


def test_an_interrupted_reprovisioning_is_reported_and_the_next_restart_provisions_again(tmp_path: Path) -> None:
    # given: a stack whose last restart-aws emptied the local AWS and was interrupted while provisioning
    with LocalStack(str(DEV_CONFIG), tmp_path, write_state=True):
        (tmp_path / AWS_PROVISIONING_MARKER).write_text("0\n", encoding="ascii")

        # then: the next command says so, with the fix
        with pytest.raises(StackNotRunningError, match=r"provisioning it again was interrupted.*Fix: bridge "
                                                       r"restart-aws"):
            require_running(tmp_path)
        # and: restart-aws provisions again although the local AWS resumed its saved state
        cli = _bridge_cli(tmp_path, "restart-aws")
        out, err = cli.communicate(timeout=120)
        assert cli.returncode == 0, err
        assert "interrupted while provisioning the emptied local AWS: provisioning again" in out
        assert "provisioned the config's queues" in out
        assert not (tmp_path / AWS_PROVISIONING_MARKER).exists()
        assert require_running(tmp_path) is not None


def _fix(message: str) -> str:
    """The advice part of a one-line error: from its `Fix:` on."""
    assert "Fix: " in message
    return message[message.index("Fix: "):]
