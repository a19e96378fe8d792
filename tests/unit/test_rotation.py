"""The signing-key rotation function, step by step, against an in-memory Secrets Manager whose every
request is validated against botocore's model of the real API."""

from __future__ import annotations

import uuid
from typing import Any

import botocore.session
import pytest
from botocore.exceptions import ClientError
from botocore.validate import validate_parameters
from bridge.rotation import KEY_LENGTH, RotationError, rotate

NAME = "orders-bridge/producers/payment-service/signing-key"
_MODEL = botocore.session.get_session().get_service_model("secretsmanager")


class _NotFound(ClientError):
    pass


class FakeSecretsManager:
    """One secret's versions and stages, as Secrets Manager keeps them during a rotation."""

    class exceptions:
        ResourceNotFoundException = _NotFound

    def __init__(self, current: str) -> None:
        self.first = str(uuid.uuid4())
        self.values: dict[str, str | None] = {self.first: current}
        self.stages: dict[str, list[str]] = {self.first: ["AWSCURRENT"]}
        self.calls: list[str] = []

    def _call(self, operation: str, params: dict[str, Any]) -> None:
        validate_parameters(params, _MODEL.operation_model(operation).input_shape)
        self.calls.append(operation)

    def start_rotation(self) -> str:
        """What RotateSecret does before invoking the function: a new version id, AWSPENDING, no value yet."""
        token = str(uuid.uuid4())
        self.values[token], self.stages[token] = None, ["AWSPENDING"]
        return token

    def describe_secret(self, **kw: Any) -> dict[str, Any]:
        self._call("DescribeSecret", kw)
        return {"VersionIdsToStages": {v: list(s) for v, s in self.stages.items() if s}}

    def get_secret_value(self, **kw: Any) -> dict[str, Any]:
        self._call("GetSecretValue", kw)
        version = kw.get("VersionId") or next((v for v, s in self.stages.items() if kw["VersionStage"] in s), None)
        if version is None or self.values.get(version) is None or \
                ("VersionStage" in kw and kw["VersionStage"] not in self.stages.get(version, [])):
            raise _NotFound({"Error": {"Code": "ResourceNotFoundException"}}, "GetSecretValue")
        return {"VersionId": version, "SecretString": self.values[version]}

    def put_secret_value(self, **kw: Any) -> dict[str, Any]:
        self._call("PutSecretValue", kw)
        self.values[kw["ClientRequestToken"]] = kw["SecretString"]
        return {}

    def update_secret_version_stage(self, **kw: Any) -> dict[str, Any]:
        self._call("UpdateSecretVersionStage", kw)
        stage, new, old = kw["VersionStage"], kw.get("MoveToVersionId"), kw.get("RemoveFromVersionId")
        if old:
            self.stages[old].remove(stage)
            if stage == "AWSCURRENT":  # as Secrets Manager does: the old current becomes previous
                for s in self.stages.values():
                    if "AWSPREVIOUS" in s:
                        s.remove("AWSPREVIOUS")
                self.stages[old].append("AWSPREVIOUS")
        if new:
            self.stages[new] = [s for s in self.stages[new] if s != "AWSPENDING"] + [stage]
        return {}


def test_a_rotation_makes_a_new_random_key_current_and_the_old_one_previous() -> None:
    sm = FakeSecretsManager("old-key")
    token = sm.start_rotation()

    for step in ("createSecret", "setSecret", "testSecret", "finishSecret"):
        rotate(sm, NAME, token, step)

    key = sm.values[token]
    assert key is not None
    assert len(key) == KEY_LENGTH
    assert key.isalnum()
    assert sm.stages[token] == ["AWSCURRENT"]
    assert sm.stages[sm.first] == ["AWSPREVIOUS"]


def test_a_retried_step_writes_nothing_twice() -> None:
    sm = FakeSecretsManager("old-key")
    token = sm.start_rotation()

    for step in ("createSecret", "createSecret", "finishSecret", "finishSecret"):
        rotate(sm, NAME, token, step)

    assert sm.calls.count("PutSecretValue") == 1
    assert sm.calls.count("UpdateSecretVersionStage") == 1


def test_two_rotations_draw_different_keys() -> None:
    sm = FakeSecretsManager("old-key")
    first, second = sm.start_rotation(), sm.start_rotation()
    rotate(sm, NAME, first, "createSecret")
    rotate(sm, NAME, second, "createSecret")

    assert sm.values[first] != sm.values[second]


def test_an_unknown_version_is_refused() -> None:
    with pytest.raises(RotationError, match="does not exist"):
        rotate(FakeSecretsManager("k"), NAME, str(uuid.uuid4()), "createSecret")
