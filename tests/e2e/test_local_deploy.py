"""`bridge up --deploy`: the synthesized stack created in MiniStack by the CDK CLI, then driven by the poller.

One deploy for the module (about a minute), of config/dev.yaml with `settings.checkpoints: on`. Checks
moto never allowed:
- the demo scenario through the deployed function gives exactly the summary the in-process handler
  gives (`bridge demo`);
- every created resource read back through the service APIs matches the template: queue attributes
  (FIFO, KMS key, redrive, retention, size), queue and topic policies, subscriptions with their
  filter policies and DLQs, secrets and their keys;
- the deployed function uses its checkpoint table (environment, role, table), a batch delivered again
  skips what it delivered, and it still does after the local AWS restarts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge_local.provision import local_client
from bridge_local.services import pid_alive, read_state
from tests.e2e.conftest import CONFIG_PATH, ROOT

pytestmark = pytest.mark.e2e  # one pytest-xdist worker runs the module (tests/conftest.py GROUPS)


def bridge(state_dir: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass
class Deployed:
    state_dir: Path
    up_output: str
    endpoint: str
    stack: str
    template: dict[str, Any]
    physical: dict[str, str]  # logical id -> physical id

    def client(self, service: str) -> Any:
        return local_client(service, self.endpoint)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployed]:
    state_dir = tmp_path_factory.mktemp("deployed")
    up = bridge(state_dir, "--config", str(_with_checkpoints(state_dir)), "up", "--deploy", "--partitions", "1")
    try:
        assert up.returncode == 0, (up.stdout + up.stderr)[-3000:]
        state = read_state(state_dir)
        assert state is not None
        assert state.deployment is not None
        stack = state.deployment["stack"]
        template = json.loads((state_dir / "cdk.out.local" / f"{stack}.template.json").read_text())
        cfn = local_client("cloudformation", state.endpoint_url)
        physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack)
                    for r in page["StackResourceSummaries"]}
        yield Deployed(state_dir, up.stdout, state.endpoint_url, stack, template, physical)
    finally:
        down = bridge(state_dir, "down")
        state = read_state(state_dir)
        if state is not None:
            for s in state.services:
                if pid_alive(s.pid):
                    os.kill(s.pid, signal.SIGKILL)
        assert down.returncode == 0, down.stderr


def _with_checkpoints(where: Path) -> Path:
    """dev.yaml with checkpoints on (production's default): the table, its key and the role's access."""
    doc = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    doc.setdefault("settings", {})["checkpoints"] = "on"
    path = where / "dev-checkpoints.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def test_up_deploy_says_what_was_created_and_what_was_skipped_and_why(deployed: Deployed) -> None:
    out = deployed.up_output
    m = re.search(r"(\d+) resources in the template, (\d+) created, (\d+) skipped", out)
    assert m, out
    in_template, created, skipped = map(int, m.groups())
    assert created + skipped == in_template
    assert "skipped the console test events" in out
    assert "Powertools layer" in out
    assert "mode: deployed" in bridge(deployed.state_dir, "status").stdout


def test_demo_scenario_through_the_deployed_function_matches_the_in_process_handler(
        deployed: Deployed, tmp_path: Path) -> None:
    # given: the in-process demo's summary
    in_process = bridge(tmp_path, "--config", str(CONFIG_PATH), "demo", "--quiet")
    assert in_process.returncode == 0, in_process.stderr

    # when: the same scenario through the deployed function
    produced = bridge(deployed.state_dir, "produce")
    assert produced.returncode == 0, produced.stderr
    polled = bridge(deployed.state_dir, "poll", "--idle-seconds", "3", "--quiet")
    assert polled.returncode == 0, polled.stderr
    inspected = bridge(deployed.state_dir, "inspect")
    assert inspected.returncode == 0, inspected.stderr

    # then: the same outcome table (delivered per destination, parked per reason)
    assert _outcome_table(polled.stdout) == _outcome_table(in_process.stdout)
    assert _parked_table(inspected.stdout) == _parked_table(in_process.stdout)


def _outcome_table(stdout: str) -> list[str]:
    """The poll's 'outcome / messages' table: delivered per destination, parked per reason."""
    lines = stdout[stdout.index("outcome "):].splitlines()[2:]
    return [" ".join(line.split()) for line in lines[:next((i for i, x in enumerate(lines) if not x.strip()),
                                                            len(lines))]]


def _parked_table(stdout: str) -> dict[str, int]:
    """Parked records by reason, as `inspect` or the demo summary count them in the bridge DLQ."""
    rows = stdout[stdout.index("Bridge DLQ"):].splitlines()[3:]
    out = {}
    for line in rows:
        if not line.strip():
            break
        reason, parked = line.split()[:2]
        out[reason] = int(parked)
    return out


def _queue_attrs(d: Deployed, logical: str) -> dict[str, str]:
    sqs = d.client("sqs")
    url = d.physical[logical]
    return dict(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def _arn_of(d: Deployed, ref: Any) -> str:
    """The physical id a template GetAtt/Ref points at (queue URL -> name, key id, topic ARN)."""
    if isinstance(ref, str):
        return ref  # a literal (an AWS managed key alias, an existing resource's ARN)
    logical = ref["Fn::GetAtt"][0] if "Fn::GetAtt" in ref else ref["Ref"]
    return d.physical[logical]


def test_every_created_resource_reads_back_as_the_template_says(deployed: Deployed) -> None:
    d = deployed
    resources = d.template["Resources"]
    checked = {"queues": 0, "queue_policies": 0, "topic_policies": 0, "subscriptions": 0, "secrets": 0}
    for logical, r in resources.items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::SQS::Queue":
            attrs = _queue_attrs(d, logical)
            assert attrs["QueueArn"].endswith(":" + props["QueueName"])
            assert (attrs.get("FifoQueue") == "true") == bool(props.get("FifoQueue")), logical
            assert int(attrs["MaximumMessageSize"]) == props["MaximumMessageSize"], logical
            if "MessageRetentionPeriod" in props:
                assert int(attrs["MessageRetentionPeriod"]) == props["MessageRetentionPeriod"], logical
            if "KmsMasterKeyId" in props:
                assert _arn_of(d, props["KmsMasterKeyId"]).split("/")[-1] in attrs.get("KmsMasterKeyId", ""), logical
            if "RedrivePolicy" in props:
                redrive = json.loads(attrs["RedrivePolicy"])
                dlq_url = _arn_of(d, props["RedrivePolicy"]["deadLetterTargetArn"])
                assert redrive["deadLetterTargetArn"].endswith(":" + dlq_url.rsplit("/", 1)[1]), logical
                assert int(redrive["maxReceiveCount"]) == props["RedrivePolicy"]["maxReceiveCount"], logical
            checked["queues"] += 1
        elif r["Type"] == "AWS::SQS::QueuePolicy":
            for q in props["Queues"]:
                policy = json.loads(_queue_attrs(d, q["Ref"])["Policy"])
                assert len(policy["Statement"]) == len(props["PolicyDocument"]["Statement"]), logical
                checked["queue_policies"] += 1
        elif r["Type"] == "AWS::SNS::TopicPolicy":
            for t in props["Topics"]:
                attrs = d.client("sns").get_topic_attributes(TopicArn=_arn_of(d, t))["Attributes"]
                policy = json.loads(attrs["Policy"])
                assert len(policy["Statement"]) == len(props["PolicyDocument"]["Statement"]), logical
                checked["topic_policies"] += 1
        elif r["Type"] == "AWS::SNS::Subscription":
            sns = d.client("sns")
            endpoint = _arn_of(d, props["Endpoint"])  # a queue (URL as its physical id) or an email address
            endpoint_name = endpoint.rsplit("/", 1)[-1]
            subs = sns.list_subscriptions_by_topic(TopicArn=_arn_of(d, props["TopicArn"]))["Subscriptions"]
            (sub,) = [x for x in subs if x["Endpoint"] == endpoint or x["Endpoint"].endswith(":" + endpoint_name)]
            attrs = sns.get_subscription_attributes(SubscriptionArn=sub["SubscriptionArn"])["Attributes"]
            assert (attrs.get("RawMessageDelivery") == "true") == bool(props.get("RawMessageDelivery")), logical
            if "FilterPolicy" in props:
                assert json.loads(attrs["FilterPolicy"]) == props["FilterPolicy"], logical
            if "RedrivePolicy" in props:
                dlq_url = _arn_of(d, props["RedrivePolicy"]["deadLetterTargetArn"])
                assert json.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(
                    ":" + dlq_url.rsplit("/", 1)[1]), logical
            checked["subscriptions"] += 1
        elif r["Type"] == "AWS::SecretsManager::Secret":
            desc = d.client("secretsmanager").describe_secret(SecretId=d.physical[logical])
            assert desc["Name"] == props["Name"], logical
            if "KmsKeyId" in props:
                assert _arn_of(d, props["KmsKeyId"]).split("/")[-1] in str(desc.get("KmsKeyId", "")), logical
            value = d.client("secretsmanager").get_secret_value(SecretId=d.physical[logical])["SecretString"]
            assert len(value) == props["GenerateSecretString"]["PasswordLength"], logical
            checked["secrets"] += 1
    print(f"\nfidelity: read back {checked}")
    assert all(checked.values()), checked


def _invoke(d: Deployed, event: str) -> dict[str, Any]:
    done = bridge(d.state_dir, "invoke", "--event", str(ROOT / "events" / event), "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout[done.stdout.index("{"):])
    assert out["error"] is None, out
    assert "deployed function" in out["target"]
    summary: dict[str, Any] = out["result"]["summary"]
    return summary


def test_the_deployed_function_skips_what_a_redelivered_batch_already_delivered_across_a_local_aws_restart(
        deployed: Deployed) -> None:
    d = deployed
    # given: the stack's checkpoint table, and the function pointed at it with access to it only
    (table_id,) = [k for k, r in d.template["Resources"].items() if r["Type"] == "AWS::DynamoDB::Table"]
    props = d.template["Resources"][table_id]["Properties"]
    table = d.client("dynamodb").describe_table(TableName=d.physical[table_id])["Table"]
    assert table["KeySchema"] == props["KeySchema"]
    assert table["BillingModeSummary"]["BillingMode"] == props["BillingMode"] == "PAY_PER_REQUEST"
    # MiniStack's CloudFormation creates the table without these two (tests/infra checks them in the template)
    print(f"\ncheckpoint table: template SSE {props['SSESpecification']['SSEType']}, TTL "
          f"{props['TimeToLiveSpecification']['AttributeName']}; MiniStack applied SSE "
          f"{table.get('SSEDescription')}, TTL "
          f"{d.client('dynamodb').describe_time_to_live(TableName=table['TableName'])['TimeToLiveDescription']}")
    state = read_state(d.state_dir)
    assert state is not None
    assert state.deployment is not None
    fn = d.client("lambda").get_function_configuration(FunctionName=state.deployment["function_name"])
    assert fn["Environment"]["Variables"]["BRIDGE_CHECKPOINT_TABLE"] == table["TableName"]
    iam = d.client("iam")
    role = fn["Role"].rsplit("/", 1)[1]
    statements = [st for name in iam.list_role_policies(RoleName=role)["PolicyNames"]
                  for st in _document(iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"])
                  ["Statement"]]
    table_access = [st for st in statements if any(a.startswith("dynamodb:") for a in _list(st["Action"]))]
    assert [(sorted(_list(st["Action"])), _list(st["Resource"])) for st in table_access] == [
        (["dynamodb:BatchWriteItem", "dynamodb:Query"], [table["TableArn"]])]
    key_use = [st for st in statements if "dynamodb." in json.dumps(st.get("Condition", {}))]
    assert [st["Condition"]["StringEquals"]["kms:ViaService"] for st in key_use] == ["dynamodb.us-east-1.amazonaws.com"]

    # when: one record is handed to the deployed function twice (a redelivered batch)
    depth = _depth(d, "stock-alerts")
    first = _invoke(d, "route-low-stock.json")
    again = _invoke(d, "route-low-stock.json")

    # then: delivered once; the second invocation skipped it from the table
    print(f"checkpoint summaries: first {first['checkpoint']}, again {again['checkpoint']}")
    assert (first["delivered"], first["checkpoint"]) == ({"stock-alerts": 1}, {"on": True, "skipped": 0, "errors": 0})
    assert (again["delivered"], again["checkpoint"]) == ({}, {"on": True, "skipped": 1, "errors": 0})
    assert _depth(d, "stock-alerts") == depth + 1

    # when: the local AWS restarts (the function, its table and the queues come back) and the batch comes again
    restart = bridge(d.state_dir, "restart-aws")
    assert restart.returncode == 0, restart.stderr
    assert "resumed with that state" in restart.stdout
    after = _invoke(d, "route-low-stock.json")

    # then: still skipped, still one message
    assert (after["delivered"], after["checkpoint"]) == ({}, {"on": True, "skipped": 1, "errors": 0})
    assert _depth(d, "stock-alerts") == depth + 1


def _depth(d: Deployed, destination: str) -> int:
    state = read_state(d.state_dir)
    assert state is not None
    sqs = local_client("sqs", state.endpoint_url)
    url = sqs.get_queue_url(QueueName=f"orders-bridge-dev-{destination}")["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _document(doc: Any) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(doc) if isinstance(doc, str) else doc
    return parsed


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
