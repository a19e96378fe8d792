"""The tables printed at the end of a test session: the security tier's attacks and the fault tier's runs.

A test hands its row to the session through its report (`report.user_properties`, under the names
below): reports are what pytest-xdist sends from its workers to the process that prints, so `make
test` (several workers) prints every attack and every fault run as a plain `pytest` run does.
Registered by tests/conftest.py, which every run under tests/ loads, on the controller too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest

ATTACK = "attack"  # [index, name, outcome, how] of a test marked @pytest.mark.attack (tests/security/conftest.py)
FAULT_RUN = "fault run"  # {"row": [cells], "json": {...}} of one fault run (tests/faults/test_fault_runs.py)

# Where a test was in the collection (the workers of pytest-xdist finish tests in any order): the
# attacks are listed in the tiers' order however the workers ran them.
COLLECTED_AT = pytest.StashKey[int]()

OUTCOMES = ("refused at synth", "refused at runtime", "parked", "deduplicated", "marked unverified",
            "denied by policy")


@dataclass
class AttackRow:
    index: int
    attack: str
    outcome: str
    how: str
    result: str = "not run"


_ATTACKS: dict[str, AttackRow] = {}
_FAULT_RUNS: list[dict[str, Any]] = []


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for index, item in enumerate(items):
        item.stash[COLLECTED_AT] = index


def _property(report: pytest.TestReport, name: str) -> Any:
    return next((value for key, value in report.user_properties if key == name), None)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    attack = _property(report, ATTACK)
    if attack is not None:
        index, name, outcome, how = attack
        row = _ATTACKS.setdefault(report.nodeid, AttackRow(index, name, outcome, how))
        if report.failed:  # in setup, call or teardown
            row.result = "FAILED"
        elif row.result == "FAILED":
            pass
        elif report.skipped:  # pytest.skip() in setup or in the test, or an xfail: the attack was not checked
            row.result = "skipped"
        elif report.when == "call":  # ran to its end (a non-strict xfail that passed checked nothing it meant to)
            row.result = "xpassed" if hasattr(report, "wasxfail") else "held"
    run = _property(report, FAULT_RUN)
    if run is not None and report.when == "teardown":
        _FAULT_RUNS.append(run)


def attack_table(rows: list[AttackRow]) -> list[str]:
    """`attack | outcome | how checked | result`, then `N of M attacks held (... by outcome)`."""
    widths = [max(len(h), *(len(getattr(r, f)) for r in rows)) for h, f in
              (("attack", "attack"), ("outcome", "outcome"), ("how checked", "how"), ("result", "result"))]
    lines = ["", "Security tier: attacks on the trust model"]
    header = ("attack", "outcome", "how checked", "result")
    lines.append(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("-|-".join("-" * w for w in widths))
    for r in rows:
        lines.append(" | ".join(v.ljust(w) for v, w in zip((r.attack, r.outcome, r.how, r.result), widths,
                                                              strict=True)))
    held = sum(r.result == "held" for r in rows)
    by_outcome = {o: sum(r.outcome.split(":")[0] == o for r in rows) for o in OUTCOMES}
    lines.append(f"{held} of {len(rows)} attacks held ("
                 + ", ".join(f"{n} {o}" for o, n in by_outcome.items() if n) + ")")
    if held < len(rows):
        lines.append(f"the run fails: {len(rows) - held} attack(s) not held (FAILED, skipped or xpassed): an attack "
                     "that did not run to its end and pass checked nothing")
    return lines


FAULT_COLUMNS = ["scenario", "ckpt", "in", "expected", "delivered fifo/sns/sqs", "dup fifo/sns/sqs", "dup %",
                 "lost", "order viol.", "parked by reason", "on-failure", "kills", "window", "injected", "s"]


def fault_table(runs: list[dict[str, Any]]) -> list[str]:
    """The fault tier's report, one row per run (tests/faults/harness.py `table_row`), then each run's JSON."""
    rows = [FAULT_COLUMNS, *(r["row"] for r in runs)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(FAULT_COLUMNS))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    full = any(r["full"] for r in runs)
    return ["", "fault tier" + (" (full size)" if full else "") + ":", *lines, *(json.dumps(r["json"]) for r in runs)]


def pytest_sessionfinish(session: pytest.Session) -> None:
    """A run in which an attack did not hold fails, even when no test failed: an attack skipped in its body,
    skipped in setup, or xfailed leaves pytest's exit status 0. Deselected attacks (`-k`, a path) make no
    row, so a partial run is judged on the attacks it ran. Runs on the xdist controller, which has every row."""
    if session.exitstatus == pytest.ExitCode.OK and any(r.result != "held" for r in _ATTACKS.values()):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines: list[str] = []
    if _FAULT_RUNS:
        lines += fault_table(_FAULT_RUNS)
    if _ATTACKS:
        lines += attack_table(sorted(_ATTACKS.values(), key=lambda r: r.index))
    for line in lines:
        terminalreporter.write_line(line)
