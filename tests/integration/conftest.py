"""MiniStack (the local AWS) on loopback for the session, and resources provisioned from a bridge config.

Everything goes over real HTTP to 127.0.0.1; nothing here can reach AWS (fake credentials, an
explicit endpoint).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from bridge.config import BridgeConfig
from bridge.settings import Settings

from bridge_local.services import ACCOUNT_ID, start_ministack, stop_process

HERE = Path(__file__).resolve().parent
AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
ACCOUNT = ACCOUNT_ID  # the account MiniStack is started with


@pytest.fixture(scope="session")
def aws_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """MiniStack on a free 127.0.0.1 port (the same start routine as `bridge up`), stopped at the end."""
    service = start_ministack(tmp_path_factory.mktemp("ministack"))
    endpoint = f"http://127.0.0.1:{service.port}"
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    try:
        yield endpoint
    finally:
        stop_process(service.pid)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class Deployed:
    """A bridge config with its queues, topics, bucket and secrets created in MiniStack."""

    config: BridgeConfig
    config_path: Path
    settings: Settings
    endpoint: str
    sqs: Any
    sns: Any
    s3: Any

    def url(self, queue_name: str) -> str:
        return self.settings.queue_url(queue_name)

    def drain(self, queue_name: str) -> list[dict[str, Any]]:
        """Every message in a queue (received and deleted)."""
        out: list[dict[str, Any]] = []
        while True:
            got = self.sqs.receive_message(QueueUrl=self.url(queue_name), MaxNumberOfMessages=10,
                                           MessageAttributeNames=["All"], WaitTimeSeconds=0).get("Messages", [])
            if not got:
                return out
            out.extend(got)
            self.sqs.delete_message_batch(QueueUrl=self.url(queue_name), Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)])

    def env(self) -> dict[str, str]:
        """The function's environment as the stack would set it, pointed at MiniStack."""
        return {**AWS_ENV, "BRIDGE_CONFIG_PATH": str(self.config_path), "BRIDGE_ACCOUNT_ID": ACCOUNT,
                "BRIDGE_PARKING_BUCKET": self.settings.parking_bucket, "AWS_ENDPOINT_URL": self.endpoint}


def provision(config: BridgeConfig, settings: Settings, endpoint: str) -> tuple[Any, Any, Any]:
    """Create what the CDK stack would: destinations (+ subscriptions), bridge DLQ, audit topic and its
    monitoring queue, parking bucket, signing secrets. Only the resources the runtime touches."""
    kw: dict[str, Any] = {"region_name": settings.region, "endpoint_url": endpoint}
    sqs, sns, s3, sm = (boto3.client(s, **kw) for s in ("sqs", "sns", "s3", "secretsmanager"))
    name = config.prefix

    def queue(qname: str, fifo: bool = False) -> str:
        attrs = {"FifoQueue": "true"} if fifo else {}
        url: str = sqs.create_queue(QueueName=qname, Attributes=attrs)["QueueUrl"]
        return url

    def subscribe(topic_arn: str, queue_name: str, filter_policy: Any = None) -> None:
        q_arn = f"arn:aws:sqs:{settings.region}:{ACCOUNT}:{queue_name}"
        attrs = {"RawMessageDelivery": "true"}
        if filter_policy:
            attrs["FilterPolicy"] = json.dumps(filter_policy)
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=q_arn, Attributes=attrs)

    for d in config.destinations:
        if d.type == "sqs":
            queue(d.physical_name(name), d.fifo)
    for d in config.destinations:
        if d.type == "sns":
            attrs = {"FifoTopic": "true"} if d.fifo else {}
            arn = sns.create_topic(Name=d.physical_name(name), Attributes=attrs)["TopicArn"]
            for sub in d.subscriptions:
                subscribe(arn, config.destination(sub.queue).physical_name(name), sub.filter_policy)
    queue(config.bridge_dlq_name)
    audit_arn = sns.create_topic(Name=config.audit_topic_name)["TopicArn"]
    queue(config.audit_queue_name)
    subscribe(audit_arn, config.audit_queue_name)
    s3.create_bucket(Bucket=settings.parking_bucket)
    for p in config.producers:
        if p.signing:
            sm.create_secret(Name=config.signing_secret_name(p.name), SecretString=f"key-of-{p.name}")
    return sqs, sns, s3


@pytest.fixture
def deploy(aws_endpoint: str, tmp_path: Path) -> Callable[..., Deployed]:
    """deploy(yaml_path, name) -> Deployed: a config renamed for this test, provisioned in MiniStack."""

    def build(source: Path = HERE / "bridge.yaml", name: str | None = None) -> Deployed:
        doc = yaml.safe_load(source.read_text(encoding="utf-8"))
        doc["name"] = name or doc["name"]
        path = tmp_path / f"{doc['name']}.json"
        path.write_text(json.dumps(doc), encoding="utf-8")
        config = BridgeConfig.from_dict(doc, str(path))
        settings = Settings(config_path=path, account_id=ACCOUNT, region="us-east-1",
                            parking_bucket=f"{doc['name']}-parking", endpoint_url=aws_endpoint)
        sqs, sns, s3 = provision(config, settings, aws_endpoint)
        return Deployed(config, path, settings, aws_endpoint, sqs, sns, s3)

    return build
