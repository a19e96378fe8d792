"""The signing-key rotation function, step by step, against moto's Secrets Manager (in process)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from bridge.rotation import KEY_LENGTH, RotationError, rotate
from moto import mock_aws

NAME = "orders-bridge/producers/payment-service/signing-key"


class Rotating:
    """moto's client as the rotation function sees it after RotateSecret: the new version id is staged
    AWSPENDING but has no value until `createSecret` writes one (moto cannot stage a version without one)."""

    def __init__(self, client: Any, token: str) -> None:
        self._client = client
        self.token = token
        self.exceptions = client.exceptions
        self.written: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def describe_secret(self, **kw: Any) -> Any:
        out = self._client.describe_secret(**kw)
        out.setdefault("VersionIdsToStages", {}).setdefault(self.token, ["AWSPENDING"])
        return out

    def get_secret_value(self, **kw: Any) -> Any:
        if kw.get("VersionId") == self.token and not self.written:
            raise self._client.exceptions.ResourceNotFoundException(
                {"Error": {"Code": "ResourceNotFoundException"}}, "GetSecretValue")
        return self._client.get_secret_value(**kw)

    def put_secret_value(self, **kw: Any) -> Any:
        self.written.append(kw["SecretString"])
        return self._client.put_secret_value(**kw)


@pytest.fixture
def sm(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(k, v)
    with mock_aws():
        client = boto3.client("secretsmanager", region_name="us-east-1")
        client.create_secret(Name=NAME, SecretString="old-key")
        yield client


def test_a_rotation_makes_a_new_random_key_current_and_the_old_one_previous(sm: Any) -> None:
    client = Rotating(sm, str(uuid.uuid4()))

    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotate(client, NAME, client.token, step)

    (key,) = client.written
    assert len(key) == KEY_LENGTH
    assert key.isalnum()
    current = sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")
    assert (current["VersionId"], current["SecretString"]) == (client.token, key)
    assert sm.get_secret_value(SecretId=NAME, VersionStage="AWSPREVIOUS")["SecretString"] == "old-key"


def test_a_retried_step_writes_nothing_twice(sm: Any) -> None:
    client = Rotating(sm, str(uuid.uuid4()))

    rotate(client, NAME, client.token, "createSecret")
    rotate(client, NAME, client.token, "createSecret")
    rotate(client, NAME, client.token, "finishSecret")
    rotate(client, NAME, client.token, "finishSecret")

    assert len(client.written) == 1
    assert sm.get_secret_value(SecretId=NAME, VersionStage="AWSCURRENT")["VersionId"] == client.token


def test_an_unknown_version_is_refused(sm: Any) -> None:
    with pytest.raises(RotationError, match="does not exist"):
        rotate(sm, NAME, str(uuid.uuid4()), "createSecret")
