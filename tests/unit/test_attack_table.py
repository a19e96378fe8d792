"""The security tier's table says "held" only for an attack whose test ran to its end and passed: one skipped in
its body, skipped in setup, xfailed, or failing in teardown is not counted as held (tests/summaries.py reads
the reports pytest, or a pytest-xdist worker, hands the session)."""

from __future__ import annotations

from typing import Any

import pytest

from tests import summaries


def _report(nodeid: str, when: str, outcome: str, **extra: Any) -> pytest.TestReport:
    attack = [int(nodeid.rsplit("_", 1)[1]), nodeid, "parked", "probe"]
    report = pytest.TestReport(nodeid, ("x.py", 0, nodeid), {}, outcome, None, when,
                               user_properties=[(summaries.ATTACK, attack)])
    for name, value in extra.items():
        setattr(report, name, value)
    return report


# each attack's reports, in the order pytest makes them (a skip in setup: no call report)
RUNS: dict[str, tuple[list[tuple[str, str, dict[str, Any]]], str]] = {
    "passes_0": ([("setup", "passed", {}), ("call", "passed", {}), ("teardown", "passed", {})], "held"),
    "fails_1": ([("setup", "passed", {}), ("call", "failed", {}), ("teardown", "passed", {})], "FAILED"),
    "skips_in_its_body_2": ([("setup", "passed", {}), ("call", "skipped", {}), ("teardown", "passed", {})],
                            "skipped"),
    "skips_in_setup_3": ([("setup", "skipped", {}), ("teardown", "passed", {})], "skipped"),
    "xfails_4": ([("setup", "passed", {}), ("call", "skipped", {"wasxfail": ""}), ("teardown", "passed", {})],
                 "skipped"),
    "xpasses_5": ([("setup", "passed", {}), ("call", "passed", {"wasxfail": ""}), ("teardown", "passed", {})],
                  "xpassed"),
    "fails_in_teardown_6": ([("setup", "passed", {}), ("call", "passed", {}), ("teardown", "failed", {})],
                            "FAILED"),
    "fails_in_setup_7": ([("setup", "failed", {}), ("teardown", "passed", {})], "FAILED"),
}


def test_only_an_attack_whose_test_ran_and_passed_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summaries, "_ATTACKS", {})
    for nodeid, (reports, _) in RUNS.items():
        for when, outcome, extra in reports:
            summaries.pytest_runtest_logreport(_report(nodeid, when, outcome, **extra))

    rows = sorted(summaries._ATTACKS.values(), key=lambda r: r.index)
    assert {r.attack: r.result for r in rows} == {nodeid: result for nodeid, (_, result) in RUNS.items()}
    assert summaries.attack_table(rows)[-2] == "1 of 8 attacks held (8 parked)"
    assert summaries.attack_table(rows)[-1].startswith("the run fails: 7 attack(s) not held")


class _Session:
    def __init__(self, exitstatus: int) -> None:
        self.exitstatus = exitstatus


@pytest.mark.parametrize(("results", "before", "after"), [
    (["held", "held"], pytest.ExitCode.OK, pytest.ExitCode.OK),
    (["held", "skipped"], pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED),  # no test failed, an attack did not run
    (["held", "xpassed"], pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED),
    (["held", "FAILED"], pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.TESTS_FAILED),
    ([], pytest.ExitCode.OK, pytest.ExitCode.OK),  # a run without the security tier
    (["skipped"], pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERRUPTED),  # Ctrl-C keeps its own status
])
def test_a_run_where_an_attack_did_not_hold_fails(results: list[str], before: int, after: int,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summaries, "_ATTACKS", {
        f"a_{i}": summaries.AttackRow(i, f"a_{i}", "parked", "probe", result) for i, result in enumerate(results)})
    session = _Session(before)
    summaries.pytest_sessionfinish(session)  # type: ignore[arg-type]
    assert session.exitstatus == after
