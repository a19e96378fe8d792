"""The security tier: every attack on the trust model, with the outcome a user relies on.

Each test carries `@pytest.mark.attack(name, outcome=..., how=...)`; at the end of the session the
tier prints the table `attack | outcome | how checked` with each test's result (`pytest tests/security`:
tests/summaries.py prints it, from the reports of every pytest-xdist worker). The synthesized stacks are the
infra tier's (one synth per variant per session; under pytest-xdist all on one worker: tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Generator
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
from tests.summaries import ATTACK, COLLECTED_AT, OUTCOMES

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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "attack(name, outcome, how): an attack on the trust model and how "
                                       "the test checks its outcome (printed by the security tier)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    """Hand the attack's row to the session's table (tests/summaries.py) with each of its reports (a failure
    in teardown fails the attack too)."""
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker("attack")
    if marker is None:
        return
    kind = marker.kwargs["outcome"]
    assert kind.split(":")[0] in OUTCOMES, f"{item.nodeid}: outcome {kind!r} is not one of {OUTCOMES}"
    callspec = getattr(item, "callspec", None)
    name = f"{marker.args[0]} [{callspec.id}]" if callspec is not None else marker.args[0]
    index = item.stash.get(COLLECTED_AT, 0)
    report.user_properties = [*report.user_properties, (ATTACK, [index, name, kind, marker.kwargs["how"]])]
