"""The security tier: every attack on the trust model, with the outcome a user relies on.

Each test carries `@pytest.mark.attack(name, outcome=..., how=...)`; at the end of the session the
tier prints the table `attack | outcome | how checked` with each test's result (`pytest
tests/security -s`). The synthesized stacks are the infra tier's (one synth per variant per session).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import pytest

from infra.config_document import config_from_document
from tests.infra.conftest import (  # noqa: F401 - fixtures shared with the infra tier
    Synth,
    dev,
    dev_document,
    every_variant,
    provisioned,
    self_managed,
    shared_synth,
    synthesize,
    variant_document,
)
from tests.security.policy import ACCOUNT, OTHER_ACCOUNT

OTHER_ROLE = f"arn:aws:iam::{OTHER_ACCOUNT}:role/payments-ci"
OPERATOR_ROLE = f"arn:aws:iam::{ACCOUNT}:role/bridge-operators"
LEDGER_CONSUMER = f"arn:aws:iam::{ACCOUNT}:role/ledger-workers"


def _harden(doc: dict[str, Any]) -> None:
    """config/dev.yaml with every optional protection a careful user turns on."""
    producers = {p["name"]: p for p in doc["producers"]}
    producers["order-service"].update(aws_principal=OTHER_ROLE, external_id="orders-7f3a")
    producers["inventory-service"].update(aws_principal=OTHER_ROLE.replace("payments-ci", "inv"),
                                          org_id="o-abcdef1234")
    doc.setdefault("settings", {})["operator_role_arns"] = [OPERATOR_ROLE]
    destinations = {d["name"]: d for d in doc["destinations"]}
    destinations["payments-ledger"]["consumers"] = [LEDGER_CONSUMER]
    destinations["analytics"]["retention_seconds"] = 86_400


@pytest.fixture(scope="session")
def hardened(variant_document: Any,  # noqa: F811 - the shared fixture, requested by name
             tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Cross-account producers with their conditions, an operators' role (one extra synth per session)."""
    return shared_synth("hardened", lambda: synthesize(
        config_from_document(variant_document(_harden), "hardened"), tmp_path_factory.mktemp("hardened")))


OUTCOMES = ("refused at synth", "refused at runtime", "parked", "deduplicated", "marked unverified",
            "denied by policy")


@dataclass
class AttackRow:
    attack: str
    outcome: str
    how: str
    result: str = "not run"


_ROWS: dict[str, AttackRow] = {}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "attack(name, outcome, how): an attack on the trust model and how "
                                       "the test checks its outcome (printed by the security tier)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("attack")
    if marker is None or report.when not in ("setup", "call"):
        return
    kind = marker.kwargs["outcome"]
    assert kind.split(":")[0] in OUTCOMES, f"{item.nodeid}: outcome {kind!r} is not one of {OUTCOMES}"
    callspec = getattr(item, "callspec", None)
    name = f"{marker.args[0]} [{callspec.id}]" if callspec is not None else marker.args[0]
    row = _ROWS.setdefault(item.nodeid, AttackRow(name, kind, marker.kwargs["how"]))
    if report.failed:
        row.result = "FAILED"
    elif report.when == "call" and row.result != "FAILED":
        row.result = "held"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    rows = list(_ROWS.values())
    widths = [max(len(h), *(len(getattr(r, f)) for r in rows)) for h, f in
              (("attack", "attack"), ("outcome", "outcome"), ("how checked", "how"), ("result", "result"))]
    write = terminalreporter.write_line
    write("")
    write("Security tier: attacks on the trust model")
    header = ("attack", "outcome", "how checked", "result")
    write(" | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    write("-|-".join("-" * w for w in widths))
    for r in rows:
        write(" | ".join(v.ljust(w) for v, w in zip((r.attack, r.outcome, r.how, r.result), widths, strict=True)))
    held = sum(r.result == "held" for r in rows)
    by_outcome = {o: sum(r.outcome.split(":")[0] == o for r in rows) for o in OUTCOMES}
    write(f"{held} of {len(rows)} attacks held ("
          + ", ".join(f"{n} {o}" for o, n in by_outcome.items() if n) + ")")
