"""The own-CPU row of benchmarks/suite.py is measured in adjacent pairs (docs/decisions.md "The own-CPU row
measured in adjacent pairs"): in each round, the bridge and the decode floor back to back, the order
alternating from pair to pair and round to round, the round's figure the median of its pair ratios; the
one-run-per-variant figure stays as a reference row. Checked with a fake bridge and floor whose CPU time the
test sets, so what is measured and in what order is known exactly."""

from __future__ import annotations

import argparse
import os
from datetime import UTC, datetime
from typing import Any

import pytest

_environ = dict(os.environ)
from benchmarks import suite  # noqa: E402 - the suite sets dummy AWS variables on import; put back below

os.environ.clear()
os.environ.update(_environ)


class Clock:
    """Which fake ran, and the CPU seconds each run takes: the bridge 1.4x the floor, or what `slow` says."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.slow: dict[int, float] = {}  # run number -> slowness of the host during that run

    def run(self, name: str) -> float:
        self.log.append(name)
        base = {"bridge": 0.0014, "floor": 0.0010}.get(name, 0.0005)
        return base * self.slow.get(len(self.log) - 1, 1.0)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()

    class FakeBridge:
        def handle(self, event: dict[str, Any]) -> None:
            if len(event["records"]["orders-0"]) > 20 or sum(len(v) for v in event["records"].values()) > 20:
                c.log.append("bridge")

    def floor(event: dict[str, Any]) -> None:
        c.log.append("floor")

    def timed(fn: Any) -> tuple[float, float]:
        before = len(c.log)
        fn()
        name = c.log.pop() if len(c.log) > before else "other"
        cpu = c.run(name)
        return cpu, cpu

    monkeypatch.setattr(suite, "_bridge", lambda *a, **k: FakeBridge())
    monkeypatch.setattr(suite, "decode_floor", floor)
    monkeypatch.setattr(suite, "powertools_iteration", lambda event: None)
    monkeypatch.setattr(suite, "timed", timed)
    return c


def _paired_runs(log: list[str]) -> list[str]:
    return [name for name in log if name in ("bridge", "floor")]


def test_each_round_runs_its_pairs_back_to_back_the_order_alternating(clock: Clock) -> None:
    res = suite.Results()
    for rnd in range(2):
        suite.own_cpu_round(res, rnd, scale=0.01, pairs=3)
    runs = _paired_runs(clock.log)
    # per round: the one-run-per-variant pass (bridge and floor once, rotated), then 3 pairs
    round_1, round_2 = runs[:8], runs[8:]
    assert round_1[2:] == ["bridge", "floor", "floor", "bridge", "bridge", "floor"]
    assert round_2[2:] == ["floor", "bridge", "bridge", "floor", "floor", "bridge"]  # pair 4 of 6: floor first
    assert res.values["own_cpu_pairs|ratio"] == pytest.approx([1.4] * 6)
    assert res.values["own_cpu_pairs|round"] == pytest.approx([1.4, 1.4])
    assert res.values["own_cpu_pairs|first_is_bridge"] == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]


def test_a_round_is_the_median_of_its_pairs_so_one_slow_moment_does_not_move_it(clock: Clock) -> None:
    # the host runs 2x slower during the second pair's floor run, its first (runs 0-3: the one-run variants;
    # 4-5: pair 1, bridge then floor; 6-7: pair 2, floor then bridge)
    clock.slow = {6: 2.0}
    res = suite.Results()
    suite.own_cpu_round(res, 0, scale=0.01, pairs=3)
    assert res.values["own_cpu_pairs|ratio"] == pytest.approx([1.4, 0.7, 1.4])
    assert res.values["own_cpu_pairs|round"] == pytest.approx([1.4])


def test_the_goal_row_is_the_paired_one_and_the_old_figure_a_reference(clock: Clock) -> None:
    res = suite.Results()
    for rnd in range(3):
        suite.own_cpu_round(res, rnd, scale=0.01, pairs=3)
    args = argparse.Namespace(command="make bench ARGS='--only own_cpu'", rounds=3)
    text = suite.report(res, args, datetime.now(UTC), ("0.0", "0.0"))
    rows = [line for line in text.splitlines() if line.startswith("| own CPU per record")]
    assert rows[0].startswith("| own CPU per record, AWS stubbed, vs decode floor (adjacent pairs, median of 3 per "
                              "round)")
    assert rows[0].endswith("| 1.40 [1.40-1.40] | ≤ 1.5\u00d7 **met** |")
    assert "as measured before session 9" in rows[1]
    assert rows[1].endswith("| (reference) |")
