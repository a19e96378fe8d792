"""Packing messages into batch requests: at most 10 entries AND at most the byte limit per request.

Greedy and in order: a batch is closed when the next message would break either limit. Order is
kept because FIFO destinations rely on it; for any input the greedy cut is also the minimum number
of batches that keeps the order (each batch is as full as it can be).

With `group_of` (FIFO targets) a batch is also closed when the next message's group is already in it,
so a request never holds two messages of one group: an entry that fails and is retried then cannot
fall behind a later message of its group that the same request got accepted (see bridge.delivery).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Protocol, TypeVar

from bridge.config import MAX_BATCH_ENTRIES


class Sized(Protocol):
    """Anything with a billed size in bytes."""

    @property
    def size(self) -> int: ...


T = TypeVar("T", bound=Sized)


class MessageTooLargeError(ValueError):
    """A single message exceeds the batch byte limit; it must be parked before packing."""


def pack(items: Sequence[T], max_bytes: int, max_entries: int = MAX_BATCH_ENTRIES,
         group_of: Callable[[T], Hashable] | None = None) -> list[list[T]]:
    """Split `items` into consecutive batches within both limits (and, with `group_of`, at most one item
    per group in a batch); raise when one item alone is too big."""
    batches: list[list[T]] = []
    current: list[T] = []
    current_bytes = 0
    groups: set[Hashable] = set()
    for item in items:
        if item.size > max_bytes:
            raise MessageTooLargeError(f"a message of {item.size} bytes exceeds the {max_bytes}-byte limit")
        group = group_of(item) if group_of is not None else None
        if current and (len(current) >= max_entries or current_bytes + item.size > max_bytes
                        or (group_of is not None and group in groups)):
            batches.append(current)
            current, current_bytes = [], 0
            groups.clear()
        current.append(item)
        current_bytes += item.size
        groups.add(group)
    if current:
        batches.append(current)
    return batches
