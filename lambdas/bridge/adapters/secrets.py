"""Secrets Manager adapter: producers' signing keys, the current one and the one before a rotation."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from bridge.config import BridgeConfig
from bridge.trust import SigningKeyUnavailable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PREVIOUS = "AWSPREVIOUS"


class SecretsManagerSigningKeys:
    """`SigningKeys`: GetSecretValue of `config.signing_secret_name(producer)` at the AWSCURRENT and
    AWSPREVIOUS stages; each SecretString (UTF-8) is a key.

    Every call reads Secrets Manager (two requests): caching, and remembering failures, is the
    job of `bridge.trust.SigningKeyCache`. A secret never rotated has no AWSPREVIOUS version; any
    other failure, at either stage, raises SigningKeyUnavailable (a record signed with the
    previous key must not be parked `invalid_signature` because that read failed).
    """

    def __init__(self, client: SecretsManagerClient, config: BridgeConfig) -> None:
        self._client = client
        self._config = config

    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        """The producer's current key, then its previous key when the secret has one."""
        name = self._config.signing_secret_name(producer)
        current = self._read(name, CURRENT)
        if current is None:
            raise SigningKeyUnavailable(f"{name}: no {CURRENT} version")
        previous = self._read(name, PREVIOUS)
        return (current,) if previous is None or previous == current else (current, previous)

    def _read(self, name: str, stage: str) -> bytes | None:
        """The key at `stage`, or None when the secret has no version at that stage."""
        try:
            secret = self._client.get_secret_value(SecretId=name, VersionStage=stage).get("SecretString")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ResourceNotFoundException" and stage != CURRENT:
                return None
            raise SigningKeyUnavailable(f"{name} ({stage}): {code}") from exc
        except BotoCoreError as exc:
            raise SigningKeyUnavailable(f"{name} ({stage}): {type(exc).__name__}") from exc
        if not secret:
            raise SigningKeyUnavailable(f"{name} ({stage}) has no SecretString")
        return secret.encode("utf-8")
