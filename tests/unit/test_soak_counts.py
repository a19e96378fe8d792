"""The soak's reusable counting: lost, duplicated and out-of-order records per destination."""

from __future__ import annotations

from bridge_local.soak import Seen, count_outcomes


def test_counts_lost_duplicates_and_fifo_order_violations_per_destination() -> None:
    expected = {"ledger": {"p/1", "p/2", "p/3"}, "alerts": {"s/1", "s/2"}}
    received = {
        # p/3 arrives before p/2 in the same group (a violation); p/1 twice (a duplicate, not a violation)
        "ledger": [Seen("p/1", "g", 1), Seen("p/3", "g", 3), Seen("p/1", "g", 1), Seen("p/2", "g", 2)],
        "alerts": [Seen("s/2", None, 2)],  # s/1 lost; order is not checked on a standard queue
    }

    counts = count_outcomes(expected, received, fifo={"ledger"})

    assert (counts["ledger"].delivered, counts["ledger"].lost, counts["ledger"].duplicated,
            counts["ledger"].order_violations) == (3, 0, 1, 1)
    assert (counts["alerts"].delivered, counts["alerts"].lost, counts["alerts"].duplicated,
            counts["alerts"].order_violations) == (1, 1, 0, 0)


def test_groups_are_ordered_independently() -> None:
    received = {"q": [Seen("a/5", "g1", 5), Seen("b/1", "g2", 1), Seen("a/6", "g1", 6)]}
    counts = count_outcomes({"q": {"a/5", "b/1", "a/6"}}, received, fifo={"q"})
    assert counts["q"].order_violations == 0
