"""Production ports over boto3 clients, for whichever ports a `Bridge` was not given."""

from __future__ import annotations

from bridge.adapters import clients
from bridge.adapters.dynamodb import DynamoDbCheckpointStore
from bridge.adapters.s3 import S3ObjectStore
from bridge.adapters.secrets import SecretsManagerSigningKeys
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.checkpoints import CheckpointStore
from bridge.config import BridgeConfig
from bridge.delivery import BatchSender
from bridge.parking import ObjectStore
from bridge.settings import Settings, SettingsError
from bridge.trust import SigningKeys


def sqs_sender(settings: Settings) -> BatchSender:
    """SendMessageBatch over a new SQS client."""
    return SqsBatchSender(clients.sqs_client(settings))


def sns_sender(settings: Settings) -> BatchSender:
    """PublishBatch over a new SNS client."""
    return SnsBatchSender(clients.sns_client(settings))


def parking_store(settings: Settings) -> ObjectStore:
    """The parking bucket over a new S3 client."""
    return S3ObjectStore(clients.s3_client(settings), settings.parking_bucket)


def claim_check_store(settings: Settings) -> ObjectStore:
    """The claim-check bucket over a new S3 client; SettingsError when the stack did not name one."""
    if not settings.claim_check_bucket:
        raise SettingsError("a destination has oversize: claim-check but BRIDGE_CLAIM_CHECK_BUCKET is not set. "
                            "Fix: deploy the stack from this config (it creates the bucket and sets the variable)")
    return S3ObjectStore(clients.s3_client(settings), settings.claim_check_bucket, content_type=None)


def signing_keys(settings: Settings, config: BridgeConfig) -> SigningKeys:
    """Producers' signing keys over a new Secrets Manager client (no call until a key is needed)."""
    return SecretsManagerSigningKeys(clients.secrets_client(settings), config)


def checkpoint_store(settings: Settings, config: BridgeConfig) -> CheckpointStore:
    """The checkpoint table over a new DynamoDB client (settings.checkpoints: on)."""
    if not settings.checkpoint_table:
        raise SettingsError("settings.checkpoints is on but BRIDGE_CHECKPOINT_TABLE is not set. Fix: set it to the "
                            f"checkpoint table ({config.checkpoint_table_name}; the CDK stack does), or set "
                            "settings.checkpoints: off")
    return DynamoDbCheckpointStore(clients.dynamodb_client(settings), settings.checkpoint_table,
                                   config.checkpoint_ttl_seconds)
