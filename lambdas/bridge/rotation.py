"""Rotation function of the producers' signing keys (Secrets Manager's four-step rotation protocol).

`createSecret` writes a new random key (64 letters and digits, like the first one) as AWSPENDING;
`setSecret` and `testSecret` have nothing to change or test outside the secret itself (producers
and the bridge read it); `finishSecret` moves AWSCURRENT to the new version, which makes the old
one AWSPREVIOUS. The bridge verifies with AWSPREVIOUS only for `settings.signing_key_grace_seconds`
after the new version was created, so producers must re-read their key within that grace.

Deployed with the bridge's own package (handler `bridge.rotation.handler`); boto3 is the runtime's.
It imports boto3, not the bridge's botocore session (bridge.adapters.clients): it runs four steps per
key per rotation period, off the record path, and a client from boto3 measured 145-210 ms against
botocore's 145-170 ms on a cold process, a difference lost in the noise of a function that runs a few
times a quarter; it needs no other package either way.
"""

from __future__ import annotations

import secrets
import string
from typing import Any

CURRENT, PENDING = "AWSCURRENT", "AWSPENDING"
KEY_LENGTH = 64  # as generated for the first version (infra.constructs.producers)
# Letters and digits, like the first version; drawn with `secrets` (the OS's CSPRNG), which spares the
# function secretsmanager:GetRandomPassword, an action IAM grants only on "*".
KEY_ALPHABET = string.ascii_letters + string.digits


class RotationError(RuntimeError):
    """The secret is not in a state this step can act on; Secrets Manager retries the rotation."""


def rotate(client: Any, secret_id: str, token: str, step: str) -> None:
    """Run one step of the rotation of `secret_id` to version `token`."""
    versions = client.describe_secret(SecretId=secret_id).get("VersionIdsToStages", {})
    if token not in versions:
        raise RotationError(f"version {token} of {secret_id} does not exist")
    if CURRENT in versions[token]:
        return  # already finished: a retried invocation
    if PENDING not in versions[token]:
        raise RotationError(f"version {token} of {secret_id} is not AWSPENDING")
    if step == "createSecret":
        client.get_secret_value(SecretId=secret_id, VersionStage=CURRENT)  # fails if there is no current key
        try:
            client.get_secret_value(SecretId=secret_id, VersionId=token, VersionStage=PENDING)
            return  # written by an earlier attempt
        except client.exceptions.ResourceNotFoundException:
            pass
        key = "".join(secrets.choice(KEY_ALPHABET) for _ in range(KEY_LENGTH))
        client.put_secret_value(SecretId=secret_id, ClientRequestToken=token, SecretString=key,
                                VersionStages=[PENDING])
    elif step in ("setSecret", "testSecret"):
        return
    elif step == "finishSecret":
        current = next(v for v, stages in versions.items() if CURRENT in stages)
        client.update_secret_version_stage(SecretId=secret_id, VersionStage=CURRENT, MoveToVersionId=token,
                                           RemoveFromVersionId=current)
    else:
        raise RotationError(f"unknown rotation step {step!r}")


def handler(event: dict[str, Any], context: Any) -> None:
    """Lambda entry point; Secrets Manager invokes it once per step."""
    import boto3  # noqa: PLC0415 - the runtime's boto3, imported where the function runs

    rotate(boto3.client("secretsmanager"), event["SecretId"], event["ClientRequestToken"], event["Step"])
