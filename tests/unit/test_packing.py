"""Packing: the 10-entry and byte limits at their exact boundaries, order kept. Tested once, here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from bridge.config import MAX_BATCH_ENTRIES, SNS_DEFAULT_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES
from bridge.packing import MessageTooLargeError, pack


@dataclass(frozen=True)
class Item:
    n: int
    size: int


def items(*sizes: int) -> list[Item]:
    return [Item(i, s) for i, s in enumerate(sizes)]


def shape(batches: list[list[Item]]) -> list[int]:
    return [len(b) for b in batches]


def test_ten_entries_fit_one_batch_eleven_need_two() -> None:
    assert shape(pack(items(*[1] * MAX_BATCH_ENTRIES), SQS_MAX_MESSAGE_BYTES)) == [10]
    assert shape(pack(items(*[1] * (MAX_BATCH_ENTRIES + 1)), SQS_MAX_MESSAGE_BYTES)) == [10, 1]


def test_total_exactly_at_the_byte_limit_fits_one_byte_over_splits() -> None:
    half = SQS_MAX_MESSAGE_BYTES // 2

    assert shape(pack(items(half, half), SQS_MAX_MESSAGE_BYTES)) == [2]
    assert shape(pack(items(half, half + 1), SQS_MAX_MESSAGE_BYTES)) == [1, 1]
    assert shape(pack(items(half - 1, half), SQS_MAX_MESSAGE_BYTES)) == [2]


def test_ten_messages_that_fit_one_by_one_but_not_together_are_split_by_bytes() -> None:
    # The BatchRequestTooLong case users hit: 10 x 30 KiB fits SQS alone but not SNS's 256 KiB.
    batches = pack(items(*[30 * 1024] * 10), SNS_DEFAULT_MAX_MESSAGE_BYTES)

    assert shape(batches) == [8, 2]
    assert all(sum(i.size for i in b) <= SNS_DEFAULT_MAX_MESSAGE_BYTES for b in batches)


def test_message_exactly_at_the_limit_is_alone_one_byte_over_is_refused() -> None:
    assert shape(pack(items(1, SQS_MAX_MESSAGE_BYTES, 1), SQS_MAX_MESSAGE_BYTES)) == [1, 1, 1]
    with pytest.raises(MessageTooLargeError):
        pack(items(SQS_MAX_MESSAGE_BYTES + 1), SQS_MAX_MESSAGE_BYTES)


def test_order_is_kept_across_batches() -> None:
    batches = pack(items(*[100] * 25, 900, 5), 1000)

    assert [i.n for b in batches for i in b] == list(range(27))


def test_nothing_to_pack_gives_no_batches() -> None:
    assert pack([], SQS_MAX_MESSAGE_BYTES) == []
