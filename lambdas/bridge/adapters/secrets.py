"""Secrets Manager adapter: producers' signing keys, read on first use and cached for the cold start."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from bridge.config import BridgeConfig
from bridge.trust import SigningKeyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient


class SecretsManagerSigningKeys:
    """`SigningKeys`: GetSecretValue of `config.signing_secret_name(producer)`; the SecretString is the key.

    Keys are cached for the life of the function instance (a rotated key reaches the bridge on its
    next cold start); a failed read is not cached, so the next batch tries again.
    """

    def __init__(self, client: SecretsManagerClient, config: BridgeConfig) -> None:
        self._client = client
        self._config = config
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def key_for(self, producer: str) -> bytes:
        """The producer's HMAC key bytes (UTF-8 of the SecretString)."""
        with self._lock:
            cached = self._cache.get(producer)
            if cached is not None:
                return cached
            name = self._config.signing_secret_name(producer)
            try:
                secret = self._client.get_secret_value(SecretId=name).get("SecretString")
            except ClientError as exc:
                raise SigningKeyUnavailable(f"{name}: {exc.response.get('Error', {}).get('Code')}") from exc
            except BotoCoreError as exc:
                raise SigningKeyUnavailable(f"{name}: {type(exc).__name__}") from exc
            if not secret:
                raise SigningKeyUnavailable(f"{name} has no SecretString")
            self._cache[producer] = secret.encode("utf-8")
            return self._cache[producer]
