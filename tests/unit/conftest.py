"""Unit tests cannot reach the network: any socket connect fails the test loudly."""

from __future__ import annotations

import socket
from typing import Any

import pytest


class NetworkAccessError(RuntimeError):
    """A unit test tried to open a connection."""


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: socket.socket, *args: Any, **kwargs: Any) -> None:
        raise NetworkAccessError(f"unit tests must not open sockets (connect to {args!r})")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
