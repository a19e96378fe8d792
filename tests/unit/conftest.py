"""Unit tests cannot reach the network: any socket connect fails the test loudly. And they run in the
environment the session started with, whatever ran before them in the same process."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

# The environment unit tests run in: the one at collection, before any fixture ran, without AWS's, the bridge's
# and Powertools' variables (as on CI's fresh machine). Under `make test`'s pytest-xdist workers a unit test may
# run in a process where an e2e or integration session fixture has pointed os.environ at a local stack
# (AWS_ENDPOINT_URL, BRIDGE_*, credentials) for the rest of the session; and a developer's shell may export
# AWS_ENDPOINT_URL or AWS_REGION for their own work. Neither may change what a unit test sees.
_FOREIGN_PREFIXES = ("AWS_", "BRIDGE_", "POWERTOOLS_")
_SESSION_START_ENVIRONMENT = {k: v for k, v in os.environ.items() if not k.startswith(_FOREIGN_PREFIXES)}


class NetworkAccessError(RuntimeError):
    """A unit test tried to open a connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        raise NetworkAccessError(f"unit tests must not open sockets (connect to {args!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


@pytest.fixture(autouse=True)
def _environment_as_the_session_started(monkeypatch: pytest.MonkeyPatch) -> None:
    changed = False
    for key in set(os.environ) - set(_SESSION_START_ENVIRONMENT):
        monkeypatch.delenv(key)
        changed = True
    for key, value in _SESSION_START_ENVIRONMENT.items():
        if os.environ.get(key) != value:
            monkeypatch.setenv(key, value)
            changed = True
    if changed:  # a handler built in that environment is forgotten too, as a new execution environment would
        from bridge.handler import new_execution_environment  # noqa: PLC0415 - builds a botocore session

        new_execution_environment()
