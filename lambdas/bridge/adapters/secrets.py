"""Secrets Manager adapter: producers' signing keys, the current one and the one before a rotation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
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

    The previous key is returned only within `settings.signing_key_grace_seconds` of the current
    version's creation (its CreatedDate): after a rotation, or a revocation, the old key stops
    verifying once the grace is over (plus at most the cache's lifetime), never "forever".
    """

    def __init__(self, client: SecretsManagerClient, config: BridgeConfig,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._grace = config.settings.signing_key_grace_seconds

    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        """The producer's current key, then its previous key when the secret has one still in its grace."""
        name = self._config.signing_secret_name(producer)
        current, created = self._read(name, CURRENT)
        if current is None:
            raise SigningKeyUnavailable(f"{name}: no {CURRENT} version")
        # A current version of unknown age is treated as past the grace: fail closed.
        if created is None or (self._clock() - created).total_seconds() > self._grace:
            return (current,)
        previous, _ = self._read(name, PREVIOUS)
        return (current,) if previous is None or previous == current else (current, previous)

    def _read(self, name: str, stage: str) -> tuple[bytes | None, datetime | None]:
        """The key at `stage` and when that version was created; (None, None) when there is no such version."""
        try:
            response = self._client.get_secret_value(SecretId=name, VersionStage=stage)
            secret, created = response.get("SecretString"), response.get("CreatedDate")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code == "ResourceNotFoundException" and stage != CURRENT:
                return None, None
            raise SigningKeyUnavailable(f"{name} ({stage}): {code}") from exc
        except BotoCoreError as exc:
            raise SigningKeyUnavailable(f"{name} ({stage}): {type(exc).__name__}") from exc
        if not secret:
            raise SigningKeyUnavailable(f"{name} ({stage}) has no SecretString")
        return secret.encode("utf-8"), created if isinstance(created, datetime) else None
