"""boto3 clients, created once per cold start with the endpoint and retry settings the bridge needs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config

from bridge.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

# SQS and SNS sends are retried by bridge.delivery (bounded by max_delivery_attempts, with jitter),
# so botocore must not retry them again underneath; S3 and Secrets Manager keep botocore's retries.
# `total_max_attempts` counts the first request; botocore's `max_attempts` counts retries only, so
# `max_attempts: 1` meant two HTTP requests per attempt (up to 8 per message with 4 attempts).
# Sends skip botocore's parameter validation (about a quarter of the client's CPU per batch): their
# entries are built by bridge.adapters.batching from typed messages (strings only, sizes and
# characters checked before packing), and a request the service still refuses comes back as a
# sender-fault error that is parked without retrying, as a ParamValidationError would be.
SEND_TOTAL_ATTEMPTS = 1
_SEND_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": SEND_TOTAL_ATTEMPTS},
                      connect_timeout=5, read_timeout=20, parameter_validation=False)
_OTHER_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=20)
# Signing keys are read while a batch waits; a Secrets Manager outage must fail fast (the record is
# parked signing_key_unavailable and the failure remembered), not eat the function's timeout.
_SECRETS_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5)


# Checkpoints are read and written while a batch waits: a slow table must cost little, and a failed
# write only costs a possible duplicate later, so timeouts are short.
_CHECKPOINT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2,
                            read_timeout=5)


def _client(service: str, settings: Settings, config: Config) -> Any:
    return boto3.client(service, region_name=settings.region, endpoint_url=settings.endpoint_url,  # type: ignore[call-overload]
                        config=config)


def sqs_client(settings: Settings) -> SQSClient:
    """SQS client for destinations and the bridge DLQ."""
    client: SQSClient = _client("sqs", settings, _SEND_CONFIG)
    return client


def sns_client(settings: Settings) -> SNSClient:
    """SNS client for destinations and the audit topic."""
    client: SNSClient = _client("sns", settings, _SEND_CONFIG)
    return client


def s3_client(settings: Settings) -> S3Client:
    """S3 client for the parking bucket."""
    client: S3Client = _client("s3", settings, _OTHER_CONFIG)
    return client


def secrets_client(settings: Settings) -> SecretsManagerClient:
    """Secrets Manager client for producers' signing keys."""
    client: SecretsManagerClient = _client("secretsmanager", settings, _SECRETS_CONFIG)
    return client


def dynamodb_client(settings: Settings) -> DynamoDBClient:
    """DynamoDB client for the checkpoint table."""
    client: DynamoDBClient = _client("dynamodb", settings, _CHECKPOINT_CONFIG)
    return client
