"""Shared fixtures: in-memory ports and a factory that builds a Bridge around them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import BridgeConfig
from bridge.service import Bridge

from tests.helpers import FakeKeys, FakeSender, FakeStore, dev_config, fixed_clock, make_settings, no_sleep


@pytest.fixture
def sqs() -> FakeSender:
    return FakeSender()


@pytest.fixture
def sns() -> FakeSender:
    return FakeSender()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def make_bridge(sqs: FakeSender, sns: FakeSender, store: FakeStore, keys: FakeKeys) -> Callable[..., Bridge]:
    """Build a Bridge over the fakes; the config defaults to config/dev.yaml."""

    def build(config: BridgeConfig | None = None, **overrides: Any) -> Bridge:
        ports: dict[str, Any] = {"sqs": sqs, "sns": sns, "parking_store": store, "signing_keys": keys,
                                 "sleep": no_sleep, "rand": lambda lo, hi: hi, "clock": fixed_clock}
        ports.update(overrides)
        return Bridge(config or dev_config(), make_settings(), **ports)

    return build
