"""Packing messages into batch requests: at most 10 entries AND at most the byte limit per request.

Greedy and in order: a batch is closed when the next message would break either limit. Order is
kept because FIFO destinations rely on it; for any input the greedy cut is also the minimum number
of batches that keeps the order (each batch is as full as it can be).
FIFO destinations pack the same way as they send (bridge.delivery `_FifoGroups`), so a batch may
hold several consecutive messages of one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from bridge.config import MAX_BATCH_ENTRIES


class Sized(Protocol):
    """Anything with a billed size in bytes."""

    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=Sized)


class MessageTooLargeError(ValueError):
    """A single message exceeds the batch byte limit; it must be parked before packing."""


def pack(items: Sequence[T], max_bytes: int, max_entries: int = MAX_BATCH_ENTRIES) -> list[list[T]]:
    """Split `items` into consecutive batches within both limits; raise when one item alone is too big."""
    batches: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    for item in items:
        if item.size > max_bytes:
            raise MessageTooLargeError(f"a message of {item.size} bytes exceeds the {max_bytes}-byte limit")
        if current and (len(current) >= max_entries or current_bytes + item.size > max_bytes):
            batches.append(current)
            current, current_bytes = [], 0
        current.append(item)
        current_bytes += item.size
    if current:
        batches.append(current)
    return batches
