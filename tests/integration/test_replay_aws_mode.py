"""`bridge replay --aws`: the AWS-mode path (your AWS configuration's credentials and region, queues found by name
from the config), pointed at MiniStack through the SDK's standard AWS_ENDPOINT_URL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from bridge.config import load_config_file

from bridge_local.cli import main
from bridge_local.provision import LocalClients, provision_aws
from tests.helpers import DEV_CONFIG

pytestmark = pytest.mark.integration


def test_replay_in_aws_mode_finds_the_stages_queues_by_name_and_moves_the_dlq_back(
        aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # given: a stage of dev.yaml under its own name, provisioned as the stack names its queues, with 12 messages in
    # analytics' DLQ
    doc = yaml.safe_load(DEV_CONFIG.read_text(encoding="utf-8"))
    doc["name"] = "replay-aws-mode"
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    config = load_config_file(str(path))
    clients = LocalClients.for_endpoint(aws_endpoint)
    provision_aws(config, clients)
    dlq = clients.sqs.get_queue_url(QueueName=f"{config.prefix}-analytics-dlq")["QueueUrl"]
    for i in range(12):
        clients.sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({"n": i}), MessageAttributes={
            "record-id": {"DataType": "String", "StringValue": f"orders-0-{i}"}})
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)

    # when
    code = main(["--config", str(path), "--state-dir", str(tmp_path / "no-local-stack"), "replay", "--from",
                 "analytics-dlq", "--aws", "--region", "us-east-1", "--json"])

    # then
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert (report["where"], report["replayed"], report["to"]) == ("AWS (us-east-1)", 12, f"{config.prefix}-analytics")
    target = clients.sqs.get_queue_url(QueueName=f"{config.prefix}-analytics")["QueueUrl"]
    got = clients.sqs.receive_message(QueueUrl=target, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    assert got["Messages"][0]["MessageAttributes"]["record-id"]["StringValue"].startswith("orders-0-")


def test_replay_in_aws_mode_against_another_stage_says_the_queue_is_not_there(
        aws_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    # given: a config whose stage was never deployed here
    doc = yaml.safe_load(DEV_CONFIG.read_text(encoding="utf-8"))
    doc["name"] = "never-deployed"
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_endpoint)

    # when / then: one line naming the queue and what to check
    assert main(["--config", str(path), "replay", "--from", "analytics-dlq", "--aws", "--region", "us-east-1"]) == 1
    err = capsys.readouterr().err
    assert "queue never-deployed-dev-analytics-dlq does not exist here. Fix: check --config (the stage) and " in err
