"""`bridge smoke` against moto (in-process `mock_aws`): the real Bridge answers the invoke, SNS fans the audit
event out to the monitoring queue, CloudFormation serves the outputs. One test per outcome line."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.service import Bridge
from moto import mock_aws

from bridge_local.cli import main
from bridge_local.smoke import (
    CloudFormationOutputs,
    SmokeFailure,
    SqsProbe,
    lambda_invoke,
    run_smoke,
    smoke_event,
)
from tests.helpers import FakeKeys, FakeStore, dev_config, make_settings, no_sleep

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
STACK = "KafkaBridge-orders-bridge-dev"
ALIAS = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:KafkaBridge-orders-bridge-dev-BridgeFunction:live"


@dataclass
class World:
    cfn: Any
    sqs: Any
    sns: Any
    audit_url: str
    dlq_url: str
    outputs: dict[str, str]

    def deploy(self, outputs: Mapping[str, str] | None = None) -> None:
        """A CloudFormation stack whose outputs are what the bridge stack outputs (moto needs one resource)."""
        values = self.outputs if outputs is None else outputs
        template = {"Resources": {"Marker": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "marker"}}},
                    "Outputs": {k: {"Value": v} for k, v in values.items()}}
        self.cfn.create_stack(StackName=STACK, TemplateBody=json.dumps(template))

    def bridge_invoke(self, function: str, event: dict[str, Any]) -> Mapping[str, Any]:
        """The deployed function, in-process: the real Bridge over moto's SQS and SNS."""
        assert function == ALIAS
        config = dev_config()
        bridge = Bridge(config, make_settings(parking_bucket="parking"), sqs=SqsBatchSender(self.sqs),
                        sns=SnsBatchSender(self.sns), parking_store=FakeStore(), signing_keys=FakeKeys(),
                        sleep=no_sleep)
        return bridge.handle(event).result()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(var, value)
    with mock_aws():
        config = dev_config()
        sqs, sns = boto3.client("sqs", region_name=REGION), boto3.client("sns", region_name=REGION)
        audit_url = sqs.create_queue(QueueName=config.audit_queue_name)["QueueUrl"]
        dlq_url = sqs.create_queue(QueueName=config.bridge_dlq_name)["QueueUrl"]
        topic = sns.create_topic(Name=config.audit_topic_name)["TopicArn"]
        queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{config.audit_queue_name}"
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
        outputs = {"FunctionAliasArn": ALIAS, "AuditQueueUrl": audit_url, "BridgeDlqUrl": dlq_url}
        yield World(boto3.client("cloudformation", region_name=REGION), sqs, sns, audit_url, dlq_url, outputs)


def _smoke(world: World, invoke: Any = None, timeout: float = 5.0) -> Any:
    return run_smoke(STACK, CloudFormationOutputs(world.cfn), invoke or world.bridge_invoke, SqsProbe(world.sqs),
                     timeout_seconds=timeout, wait_seconds=0)


def test_passes_and_leaves_other_audit_events_in_the_queue(world: World) -> None:
    # given: a deployed stack and an audit event of real traffic waiting in the monitoring queue
    world.deploy()
    world.sqs.send_message(QueueUrl=world.audit_url, MessageBody=json.dumps({"type": "bridge.batch",
                                                                            "batch_id": "real-traffic"}))
    # when
    report = _smoke(world)
    # then: its own audit event was found (and deleted), the other one is visible again, nothing parked
    assert report.batch_id
    assert report.dlq_depths == {"BridgeDlqUrl": (0, 0)}
    left = world.sqs.receive_message(QueueUrl=world.audit_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"])["batch_id"] for m in left] == ["real-traffic"]


def test_the_smoke_event_has_no_records_so_it_routes_nowhere() -> None:
    event = smoke_event("run-1", REGION, ACCOUNT)
    assert event["records"] == {}
    assert event["eventSourceArn"] == f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/bridge-smoke/run-1"


def test_a_missing_stack_is_one_line(world: World) -> None:
    with pytest.raises(SmokeFailure) as info:
        _smoke(world)
    assert str(info.value) == (f"stack {STACK} does not exist in {REGION}. Fix: --stack "
                               "KafkaBridge-<name>-<environment> and the region it was deployed to")


def test_a_stack_without_the_alias_output_is_one_line(world: World) -> None:
    world.deploy({k: v for k, v in world.outputs.items() if k != "FunctionAliasArn"})
    with pytest.raises(SmokeFailure, match=rf"^stack {STACK} has no output FunctionAliasArn\. Fix: deploy"):
        _smoke(world)


def test_no_audit_event_is_one_line(world: World) -> None:
    # given: the audit topic no longer delivers into the monitoring queue
    world.deploy()
    for sub in world.sns.list_subscriptions()["Subscriptions"]:
        world.sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])
    with pytest.raises(SmokeFailure, match=r"^no audit event for the smoke batch \S+ reached the monitoring queue "
                                           r"within 1 s\. Fix: check the audit topic"):
        _smoke(world, timeout=1.0)


def test_a_growing_dlq_is_one_line(world: World) -> None:
    world.deploy()

    def invoke_while_something_parks(function: str, event: dict[str, Any]) -> Mapping[str, Any]:
        world.sqs.send_message(QueueUrl=world.dlq_url, MessageBody='{"reason": "delivery_failed"}')
        return world.bridge_invoke(function, event)

    with pytest.raises(SmokeFailure, match=r"^BridgeDlqUrl grew from 0 to 1 message\(s\) during the smoke check"):
        _smoke(world, invoke_while_something_parks)


def test_a_function_error_is_one_line() -> None:
    client = boto3.client("lambda", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    payload = json.dumps({"errorType": "ConfigError", "errorMessage": "bridge_config.json has 1 problem(s)"})
    stub.add_response("invoke", {"StatusCode": 200, "FunctionError": "Unhandled",
                                 "Payload": io.BytesIO(payload.encode())})  # type: ignore[dict-item]
    with stub, pytest.raises(SmokeFailure) as info:
        lambda_invoke(client)(ALIAS, smoke_event("r"))
    assert str(info.value) == (f"{ALIAS} failed on the smoke event (ConfigError: bridge_config.json has 1 "
                               "problem(s)). Fix: read the function's logs; CodeDeploy rolls the alias back on errors")


def test_a_function_that_delivers_the_empty_event_somewhere_fails(world: World) -> None:
    world.deploy()

    def wrong(function: str, event: dict[str, Any]) -> Mapping[str, Any]:
        result = dict(world.bridge_invoke(function, event))
        result["summary"] = {**result["summary"], "delivered": {"fulfilment": 1}}
        return result

    with pytest.raises(SmokeFailure, match=r"did something with the smoke event, which has no records"):
        _smoke(world, wrong)


def test_cli_smoke_without_credentials_says_what_to_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Any,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert main(["smoke", "--region", REGION]) == 1
    assert capsys.readouterr().err.startswith("bridge: error: no AWS credentials found. Fix:")
