"""Production ports over botocore clients, for whichever ports a `Bridge` was not given.

Each client is created when its port is first used, not when the Bridge is built: a batch that only
delivers to SQS never pays for the SNS, S3 or Secrets Manager clients (S3's alone is about 30 ms of
cold start), and a function whose records never need a signing key never creates that client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from bridge.adapters import clients
from bridge.adapters.dynamodb import DynamoDbCheckpointStore
from bridge.adapters.s3 import S3ObjectStore
from bridge.adapters.secrets import SecretsManagerSigningKeys
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.checkpoints import CheckpointStore
from bridge.config import BridgeConfig
from bridge.delivery import BatchOutcome, BatchSender, InFlight, Target
from bridge.envelope import OutgoingMessage
from bridge.parking import ObjectStore
from bridge.settings import Settings, SettingsError
from bridge.trust import SigningKeys

P = TypeVar("P")


class _OnFirstUse(Generic[P]):
    """Builds a port (and its client) once, on the first call; safe from delivery's threads."""

    def __init__(self, build: Callable[[], P]) -> None:
        self._build = build
        self._port: P | None = None
        self._lock = threading.Lock()

    def port(self) -> P:
        port = self._port
        if port is None:
            with self._lock:
                if self._port is None:
                    self._port = self._build()
                port = self._port
        return port


class _LazySender(_OnFirstUse[BatchSender]):
    """A sender built on first use; a `MultiplexedSender` when the one it builds is (`direct`: whether it
    may be, before it is built: settings.direct_sends)."""

    def __init__(self, build: Callable[[], BatchSender], *, direct: bool) -> None:
        super().__init__(build)
        self._direct = direct

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        return self.port().send_batch(target, messages)

    @property
    def multiplexed(self) -> bool:
        port = self._port
        return self._direct if port is None else bool(getattr(port, "multiplexed", False))

    @property
    def ready(self) -> bool:
        """The built sender's `ready`; True before it is built (it is built on the first `start`, on the
        caller's thread, as botocore's session is not for several threads at once)."""
        port = self._port
        return port is None or bool(getattr(port, "ready", True))

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> InFlight | None:
        start = getattr(self.port(), "start", None)
        return None if start is None else start(target, messages)


class _LazyStore(_OnFirstUse[ObjectStore]):
    def put(self, key: str, body: bytes) -> str:
        return self.port().put(key, body)


class _LazyKeys(_OnFirstUse[SigningKeys]):
    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        return self.port().keys_for(producer)


def sqs_sender(settings: Settings, *, create_now: bool = False) -> BatchSender:
    """SendMessageBatch over an SQS client created on the first send, or now with `create_now`."""
    sender = _LazySender(lambda: SqsBatchSender(clients.sqs_client(settings)), direct=settings.direct_sends)
    if create_now:
        sender.port()
    return sender


def sns_sender(settings: Settings, *, create_now: bool = False) -> BatchSender:
    """PublishBatch over an SNS client created on the first publish, or now with `create_now`."""
    sender = _LazySender(lambda: SnsBatchSender(clients.sns_client(settings)), direct=settings.direct_sends)
    if create_now:
        sender.port()
    return sender


def parking_store(settings: Settings) -> ObjectStore:
    """The parking bucket over an S3 client created on the first write."""
    return _LazyStore(lambda: S3ObjectStore(clients.s3_client(settings), settings.parking_bucket))


def claim_check_store(settings: Settings) -> ObjectStore:
    """The claim-check bucket over a new S3 client; SettingsError when the stack did not name one."""
    if not settings.claim_check_bucket:
        raise SettingsError("a destination has oversize: claim-check but BRIDGE_CLAIM_CHECK_BUCKET is not set. "
                            "Fix: deploy the stack from this config (it creates the bucket and sets the variable)")
    return S3ObjectStore(clients.s3_client(settings), settings.claim_check_bucket, content_type=None)


def signing_keys(settings: Settings, config: BridgeConfig) -> SigningKeys:
    """Producers' signing keys over a Secrets Manager client created on the first read."""
    return _LazyKeys(lambda: SecretsManagerSigningKeys(clients.secrets_client(settings), config))


def checkpoint_store(settings: Settings, config: BridgeConfig) -> CheckpointStore:
    """The checkpoint table over a new DynamoDB client (settings.checkpoints: on). Created with the
    Bridge, not on first use: every batch reads its checkpoints first, and a missing table variable is
    reported at once."""
    if not settings.checkpoint_table:
        raise SettingsError("settings.checkpoints is on but BRIDGE_CHECKPOINT_TABLE is not set. Fix: set it to the "
                            f"checkpoint table ({config.checkpoint_table_name}; the CDK stack does), or set "
                            "settings.checkpoints: off")
    return DynamoDbCheckpointStore(clients.dynamodb_client(settings), settings.checkpoint_table,
                                   config.checkpoint_ttl_seconds)
