"""Claim check through the local AWS, read back by the AWS extended client library (PyPI).

A 2 MiB record goes to an SQS queue and to an SNS topic with a subscribed queue (raw delivery);
`amazon-sqs-extended-client` receives both messages whole, with the correlation id and attributes.
The SNS extended client, publishing a large message itself, produces the same pointer format.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from bridge.claim_check import KEY_PREFIX, POINTER_CLASS
from bridge.config import CLAIM_CHECK_SIZE_ATTRIBUTE
from bridge.service import Bridge

from tests.helpers import kafka_event, kafka_record
from tests.integration.conftest import HERE, Deployed

pytestmark = pytest.mark.integration

Deploy = Callable[..., Deployed]
TWO_MIB = 2 * 1024 * 1024


def _extended_client_sessions() -> tuple[Any, Any]:
    """The libraries' session classes, imported without their side effect.

    Importing either package replaces `boto3.Session` and the default session process-wide, which
    would turn every other boto3 client of the test process (the bridge's included) into an extended
    client. Their classes are used explicitly here, and boto3 is put back as it was.
    """
    saved = (boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION)
    try:
        from sns_extended_client import SNSExtendedClientSession  # type: ignore[import-untyped]  # noqa: PLC0415
        from sqs_extended_client import SQSExtendedClientSession  # type: ignore[import-untyped]  # noqa: PLC0415
    finally:
        boto3.session.Session, boto3.Session, boto3.DEFAULT_SESSION = saved  # type: ignore[misc]
    return SQSExtendedClientSession, SNSExtendedClientSession


SQSExtendedClientSession, SNSExtendedClientSession = _extended_client_sessions()


@pytest.fixture
def claim_check(deploy: Deploy) -> tuple[Deployed, str]:
    """The claim-check config in the local AWS, with its bucket set up as the stack sets it up."""
    env = deploy(HERE / "claim_check.yaml")
    assert not hasattr(boto3.client("sqs", region_name="us-east-1"), "large_payload_support"), "boto3 was patched"
    bucket = f"{env.config.name}-claim-check"
    env.s3.create_bucket(Bucket=bucket)
    env.s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": [
        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    env.s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
        "ID": "expire-claim-checks", "Filter": {"Prefix": KEY_PREFIX}, "Status": "Enabled",
        "Expiration": {"Days": env.config.settings.claim_check_retention_days}}]})
    return env, bucket


def extended_sqs(env: Deployed) -> Any:
    client = SQSExtendedClientSession(region_name=env.settings.region).client("sqs", endpoint_url=env.endpoint)
    client.s3_client = env.s3  # the library's own S3 client, on the local AWS
    return client


def receive_whole(client: Any, queue_url: str) -> dict[str, Any]:
    (message,) = client.receive_message(QueueUrl=queue_url, MessageAttributeNames=["All"],
                                        MaxNumberOfMessages=10, WaitTimeSeconds=0)["Messages"]
    return dict(message)


def test_a_2_mib_record_reaches_a_queue_and_a_topics_queue_and_the_extended_client_reads_it_whole(
    claim_check: tuple[Deployed, str],
) -> None:
    env, bucket = claim_check
    value = json.dumps({"order": 7, "blob": "x" * TWO_MIB})
    record = kafka_record(offset=7, key="order-7", value=value,
                          headers=[("event-type", "OrderPlaced"), ("correlation-id", "corr-7")])
    settings = dataclasses.replace(env.settings, claim_check_bucket=bucket)
    # when
    report = Bridge(env.config, settings).handle(kafka_event([record]))
    # then: both destinations took a pointer, nothing was parked
    assert report.summary["delivered"] == {"big-queue": 1, "big-topic": 1}
    assert report.summary["parked"] == {}
    client = extended_sqs(env)
    for queue in ("cc-bridge-dev-big-queue", "cc-bridge-dev-big-topic-copy"):
        message = receive_whole(client, env.url(queue))
        assert message["Body"] == value, f"{queue}: the extended client did not read the whole record back"
        attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
        assert attributes["correlation-id"] == "corr-7"
        assert attributes["record-id"] == "orders-0-7"
        assert attributes["event-type"] == "OrderPlaced"
        # the library resolved a pointer (its receipt handle names the object) and hid its size attribute
        assert "-..s3Key..-claim-check/" in message["ReceiptHandle"]
        assert CLAIM_CHECK_SIZE_ATTRIBUTE not in attributes
    objects = env.s3.list_objects_v2(Bucket=bucket, Prefix=KEY_PREFIX)["Contents"]
    assert sorted(o["Key"].split("/")[1] for o in objects) == ["big-queue", "big-topic"]
    for o in objects:
        head = env.s3.head_object(Bucket=bucket, Key=o["Key"])
        assert head["ContentLength"] == len(value.encode("utf-8"))
        assert head["ServerSideEncryption"] == "AES256"
        rule = env.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"][0]
        print(f"\nclaim check: s3://{bucket}/{o['Key']} {head['ContentLength']} bytes, "
              f"encryption {head['ServerSideEncryption']}, expires after {rule['Expiration']['Days']} days "
              f"(rule {rule['ID']}){', ' + head['Expiration'] if head.get('Expiration') else ''}")


def test_the_sns_extended_client_writes_the_same_pointer_format(claim_check: tuple[Deployed, str]) -> None:
    env, bucket = claim_check
    # given: a large message published by the SNS extended client library itself
    session = SNSExtendedClientSession(region_name=env.settings.region)
    sns = session.client("sns", endpoint_url=env.endpoint)
    sns.s3_client = env.s3
    sns.large_payload_support = bucket
    sns.always_through_s3 = True
    topic = env.settings.topic_arn("cc-bridge-dev-big-topic")
    sns.publish(TopicArn=topic, Message="x" * 300_000,
                MessageAttributes={"event-type": {"DataType": "String", "StringValue": "OrderPlaced"}})
    (theirs,) = env.sqs.receive_message(QueueUrl=env.url("cc-bridge-dev-big-topic-copy"), MessageAttributeNames=["All"],
                                        WaitTimeSeconds=0)["Messages"]
    # when: the bridge sends a large record to the same topic
    settings = dataclasses.replace(env.settings, claim_check_bucket=bucket)
    Bridge(env.config, settings).handle(kafka_event([kafka_record(value="y" * 300_000)]))
    (ours,) = env.sqs.receive_message(QueueUrl=env.url("cc-bridge-dev-big-topic-copy"), MessageAttributeNames=["All"],
                                      WaitTimeSeconds=0)["Messages"]
    # then: same pointer class, same keys, same JSON layout; the same size attribute and type
    their_pointer, our_pointer = json.loads(theirs["Body"]), json.loads(ours["Body"])
    assert their_pointer[0] == our_pointer[0] == POINTER_CLASS
    assert set(their_pointer[1]) == set(our_pointer[1]) == {"s3BucketName", "s3Key"}
    assert theirs["Body"] == json.dumps([POINTER_CLASS, their_pointer[1]])
    assert ours["Body"] == json.dumps([POINTER_CLASS, our_pointer[1]])
    their_size, our_size = (m["MessageAttributes"][CLAIM_CHECK_SIZE_ATTRIBUTE] for m in (theirs, ours))
    assert their_size["DataType"] == our_size["DataType"] == "Number"
