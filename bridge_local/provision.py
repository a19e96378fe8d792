"""Create the bridge's AWS resources in MiniStack and its Kafka topics in Tansu, from the config model only.

Names come from `BridgeConfig` / `Destination` helpers, exactly as the CDK stack names them:
destination queues and topics (`physical_name`), their DLQs (`dlq_physical_name`, FIFO when the
destination is), the bridge DLQ, the audit topic with its monitoring queue and that queue's DLQ,
each subscription's own DLQ (`subscription_dlq_name`, FIFO when the topic is), one signing secret
per signing producer and the parking bucket. Every queue states its MaximumMessageSize as the stack's
do. Every call is idempotent: running it twice leaves the same resources (secrets keep their key).

Local choices the CDK stack makes differently: no KMS keys, no queue or topic policies (MiniStack
does not enforce resource policies). `bridge up --deploy` creates the stack's own resources instead.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError
from bridge.config import SQS_MAX_MESSAGE_BYTES, BridgeConfig, Destination
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bridge_local.checkpoint_table import ensure_checkpoint_table
from bridge_local.services import ACCOUNT_ID, HOST, REGION

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

DLQ_RETENTION_SECONDS = 1_209_600  # 14 days, the SQS maximum: parked records wait for a human
DEFAULT_PARTITIONS = 3
LOCAL_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def parking_bucket_name(config: BridgeConfig) -> str:
    """The local parking bucket (the CDK stack lets CloudFormation name it; the handler reads the env var)."""
    return f"{config.prefix}-parking-{ACCOUNT_ID}"


def claim_check_bucket_name(config: BridgeConfig) -> str:
    """The local claim-check bucket (created only when a destination has oversize: claim-check)."""
    return f"{config.prefix}-claim-check-{ACCOUNT_ID}"


def local_client(service: str, endpoint_url: str, boto_config: BotoConfig | None = None) -> Any:
    """A boto3 client for the local AWS on loopback with dummy credentials; refuses any other host."""
    if not endpoint_url.startswith(f"http://{HOST}:"):
        raise ValueError(f"refusing endpoint {endpoint_url!r}: the local stack only talks to {HOST}")
    boto_config = boto_config or BotoConfig(retries={"max_attempts": 3, "mode": "standard"}, max_pool_connections=50)
    return boto3.client(service, endpoint_url=endpoint_url, region_name=REGION,  # type: ignore[call-overload]
                        config=boto_config, **LOCAL_CREDENTIALS)


@dataclass
class LocalClients:
    """The four clients the local tooling uses, all bound to the local AWS."""

    sqs: SQSClient
    sns: SNSClient
    secretsmanager: SecretsManagerClient
    s3: S3Client

    @classmethod
    def for_endpoint(cls, endpoint_url: str) -> LocalClients:
        return cls(local_client("sqs", endpoint_url), local_client("sns", endpoint_url),
                   local_client("secretsmanager", endpoint_url), local_client("s3", endpoint_url))


def queue_arn(name: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"


def topic_arn(name: str) -> str:
    return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}"


@dataclass
class ProvisionReport:
    """What exists after provisioning: queue name -> URL, topic name -> ARN, secrets, bucket, topics."""

    queues: dict[str, str] = field(default_factory=dict)
    topics: dict[str, str] = field(default_factory=dict)
    subscriptions: list[str] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)
    bucket: str = ""
    checkpoint_table: str = ""
    kafka_topics: dict[str, int] = field(default_factory=dict)


def _create_queue(sqs: SQSClient, name: str, fifo: bool, attributes: dict[str, str]) -> str:
    # Every queue states its size limit, as the stack's do: 1 MiB unless the caller says less.
    attrs = {"MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES), **attributes}
    if fifo:
        attrs["FifoQueue"] = "true"
    try:
        return sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]  # type: ignore[arg-type]
    except ClientError as exc:
        # An existing queue with different attributes: bring it to the wanted state.
        if exc.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs.pop("FifoQueue", None)
        sqs.set_queue_attributes(QueueUrl=url, Attributes=attrs)  # type: ignore[arg-type]
        return url


def _queue_with_dlq(sqs: SQSClient, name: str, dlq_name: str, fifo: bool, max_receive_count: int,
                    report: ProvisionReport, max_message_bytes: int = SQS_MAX_MESSAGE_BYTES) -> str:
    dlq_attrs = {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)}
    report.queues[dlq_name] = _create_queue(sqs, dlq_name, fifo, dlq_attrs)
    attrs = {"RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn(dlq_name),
                                          "maxReceiveCount": max_receive_count}),
             "MaximumMessageSize": str(max_message_bytes)}
    if fifo:
        # High-throughput FIFO: dedup and throughput per message group (the bridge sets explicit dedup ids).
        attrs |= {"DeduplicationScope": "messageGroup", "FifoThroughputLimit": "perMessageGroupId",
                  "ContentBasedDeduplication": "false"}
    url = _create_queue(sqs, name, fifo, attrs)
    report.queues[name] = url
    return url


def _subscribe(sqs: SQSClient, sns: SNSClient, topic: str, queue_name: str, dlq_name: str, filter_policy: Any,
               raw: bool, report: ProvisionReport) -> None:
    # The subscription's own DLQ, as the stack makes it: messages SNS cannot deliver to the queue.
    report.queues[dlq_name] = _create_queue(sqs, dlq_name, dlq_name.endswith(".fifo"),
                                            {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    attrs = {"RawMessageDelivery": "true" if raw else "false",
             "RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn(dlq_name)})}
    if filter_policy:
        attrs["FilterPolicy"] = json.dumps(filter_policy)
    endpoint = queue_arn(queue_name)
    existing = [s for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
                if s.get("Endpoint") == endpoint]
    if existing:
        arn = existing[0]["SubscriptionArn"]
        for k, v in attrs.items():
            sns.set_subscription_attributes(SubscriptionArn=arn, AttributeName=k, AttributeValue=v)
    else:
        arn = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=endpoint, Attributes=attrs,
                            ReturnSubscriptionArn=True)["SubscriptionArn"]
    report.subscriptions.append(f"{topic.rsplit(':', 1)[1]} -> {queue_name}")


def provision_aws(config: BridgeConfig, clients: LocalClients) -> ProvisionReport:
    """Create every queue, topic, subscription, secret and the bucket the bridge needs. Idempotent."""
    report = ProvisionReport()
    name = config.prefix
    # Queues first: topics subscribe them.
    for d in config.destinations:
        if d.type == "sqs":
            _queue_with_dlq(clients.sqs, d.physical_name(name), d.dlq_physical_name(name), d.fifo,
                            d.max_receive_count, report, d.message_limit)
    report.queues[config.bridge_dlq_name] = _create_queue(
        clients.sqs, config.bridge_dlq_name, False, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    _queue_with_dlq(clients.sqs, config.audit_queue_name, config.audit_queue_dlq_name, False, 5, report)

    for d in config.destinations:
        if d.type == "sns":
            _create_topic(clients.sqs, clients.sns, config, d, report)
    audit = clients.sns.create_topic(Name=config.audit_topic_name)["TopicArn"]
    report.topics[config.audit_topic_name] = audit
    _subscribe(clients.sqs, clients.sns, audit, config.audit_queue_name, config.audit_subscription_dlq_name, None,
               True, report)

    for p in config.producers:
        if p.signing:
            secret_name = config.signing_secret_name(p.name)
            _ensure_secret(clients.secretsmanager, secret_name)
            report.secrets.append(secret_name)

    bucket = parking_bucket_name(config)
    for name_ in [bucket] + ([claim_check_bucket_name(config)] if config.claim_check else []):
        try:
            clients.s3.create_bucket(Bucket=name_)
        except ClientError as exc:
            if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
    report.bucket = bucket
    return report


def _create_topic(sqs: SQSClient, sns: SNSClient, config: BridgeConfig, d: Destination,
                  report: ProvisionReport) -> None:
    topic_name = d.physical_name(config.prefix)
    attrs: dict[str, str] = {}
    if d.fifo:
        # The bridge sends explicit dedup ids, as the stack's topics expect.
        attrs = {"FifoTopic": "true", "ContentBasedDeduplication": "false"}
    arn = sns.create_topic(Name=topic_name, Attributes=attrs)["TopicArn"]
    report.topics[topic_name] = arn
    for s in d.subscriptions:
        q = config.destination(s.queue)
        _subscribe(sqs, sns, arn, q.physical_name(config.prefix), config.subscription_dlq_name(d, s.queue),
                   s.filter_policy, s.raw_message_delivery, report)


def _ensure_secret(sm: SecretsManagerClient, name: str) -> None:
    try:
        sm.describe_secret(SecretId=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        sm.create_secret(Name=name, SecretString=secrets.token_hex(32),
                         Description="HMAC key a producer signs its Kafka records with (local stack)")


def signing_key(config: BridgeConfig, producer: str, sm: SecretsManagerClient) -> bytes:
    """The producer's HMAC key from (local) Secrets Manager, as the UTF-8 bytes of the SecretString."""
    return sm.get_secret_value(SecretId=config.signing_secret_name(producer))["SecretString"].encode("utf-8")


def provision_kafka(config: BridgeConfig, bootstrap: str, partitions: int = DEFAULT_PARTITIONS,
                    timeout: float = 15.0) -> dict[str, int]:
    """Create `source.topics` with `partitions` partitions each (existing topics are left as they are)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    existing = admin.list_topics(timeout=timeout).topics
    wanted = [t for t in config.source.topics if t not in existing]
    if wanted:
        futures = admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1) for t in wanted],
                                      operation_timeout=timeout, request_timeout=timeout)
        for topic, fut in futures.items():
            try:
                fut.result(timeout=timeout)
            except Exception as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise RuntimeError(f"could not create Kafka topic {topic!r}: {exc}") from exc
    return wait_for_topics(admin, config.source.topics, timeout)


def wait_for_topics(admin: Any, topics: tuple[str, ...], timeout: float) -> dict[str, int]:
    """Topic -> partition count, once every topic is visible in the metadata (bounded wait)."""
    deadline = time.monotonic() + timeout
    while True:
        md = admin.list_topics(timeout=timeout).topics
        if all(t in md and md[t].partitions for t in topics):
            return {t: len(md[t].partitions) for t in topics}
        if time.monotonic() > deadline:
            missing = [t for t in topics if t not in md]
            raise RuntimeError(f"Kafka topics {missing} did not appear within {timeout:.0f} s")
        time.sleep(0.1)  # metadata propagation, bounded by the deadline




def provision_all(config: BridgeConfig, bootstrap: str, endpoint_url: str,
                  partitions: int = DEFAULT_PARTITIONS) -> ProvisionReport:
    """Provision AWS resources in MiniStack and Kafka topics in Tansu."""
    report = provision_aws(config, LocalClients.for_endpoint(endpoint_url))
    report.checkpoint_table = ensure_checkpoint_table(local_client("dynamodb", endpoint_url), config)
    report.kafka_topics = provision_kafka(config, bootstrap, partitions)
    return report
