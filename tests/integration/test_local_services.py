"""The local AWS service: MiniStack started on loopback only, answering, and stopped with all it spawned."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import boto3
import pytest

from bridge_local.services import HOST, pid_alive, start_ministack, stop_process

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
