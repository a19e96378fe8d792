"""Shared fixtures: in-memory ports and a factory that builds a Bridge around them; how `make test`'s
pytest-xdist workers share the tiers out (groups); the end-of-session tables (tests/summaries.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge.config import BridgeConfig
from bridge.service import Bridge
from xdist.scheduler import LoadScopeScheduling

from tests.helpers import FakeKeys, FakeSender, FakeStore, dev_config, fixed_clock, make_settings, no_sleep

pytest_plugins = ("tests.summaries",)

# Tests that must run on one pytest-xdist worker, by node id (the longest matching prefix wins; None: no group).
# pytest-xdist's own xdist_group marks do nothing under pytest 9 (xdist 3.8 renames `item._nodeid`, which
# pytest 9 no longer reads), so `make test` (--dist loadgroup) uses this table instead (_GroupScheduling).
GROUPS: dict[str, str | None] = {
    # its module-scoped deploy (about a minute), which stages the function in the repository's build/ through
    # app.py, as the next test's app.main does: never two at once
    "tests/e2e/test_local_deploy.py": "repo-build",
    "tests/infra/test_limits.py::test_a_value_over_an_api_limit_fails_synth_with_one_line": "repo-build",
    # the synthesized variants (tests/infra/conftest.py), one synth per variant per process: on one worker,
    # each variant is synthesized once, not once per worker (a synth is 5-20 s of CPU)
    "tests/infra/": "synth",
    "tests/security/": "synth",
    # the fault runs (each its own broker, MiniStack and poller, with outages of a few seconds) one at a time: at
    # load 12-16 with three at once, test_dlq_answers_lost_... saw its 3 s outage pass before its poller had sent
    # anything (engineer T, session 8). About 30 s more on CI (987 s against 930 s for the whole run), for a
    # tier whose timings are its subject.
    "tests/faults/": "faults",
    # security tests against loopback servers only
    "tests/security/test_direct_attacks.py": None,
    "tests/security/test_unreadable_answers.py": None,
    "tests/security/test_direct_tls.py": None,
}
SYNTH_FIXTURES = frozenset({"dev", "provisioned", "self_managed", "every_variant", "hardened", "prod",
                            "dev_with_repo_events"})


def stale_group_keys(root: Path) -> list[str]:
    """GROUPS keys that name nothing any more: a file or directory that does not exist, or a test its file does
    not define. `group_of` would silently give such tests the enclosing group (or none), which is how two
    groups that both stage into build/ came to run at once in session 8. Checked against the files, not the
    collection, so a run of one file or one test is not refused."""
    def names_something(key: str) -> bool:
        path, _, test = key.partition("::")
        if not (root / path).exists():
            return False
        source = (root / path).read_text(encoding="utf-8") if test else ""
        return not test or re.search(rf"^(?:async )?def {re.escape(test)}\(", source, re.MULTILINE) is not None

    return [key for key in GROUPS if not names_something(key)]


def group_of(nodeid: str) -> str | None:
    """The worker group of a test (GROUPS), or None."""
    matches = [prefix for prefix in GROUPS if nodeid.startswith(prefix)]
    return GROUPS[max(matches, key=len)] if matches else None


class _GroupScheduling(LoadScopeScheduling):
    """pytest-xdist's loadgroup with the groups of GROUPS: each group is one unit of work, every other test one."""

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid) or nodeid


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> LoadScopeScheduling | None:
    return _GroupScheduling(config, log) if config.getvalue("dist") == "loadgroup" else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if stale := stale_group_keys(config.rootpath):
        raise pytest.UsageError(f"tests/conftest.py GROUPS names what no longer exists: {stale}. Fix: update the key "
                                "to the test's or file's new name")
    stray = [item.nodeid for item in items
             if SYNTH_FIXTURES & set(item.fixturenames) and group_of(item.nodeid) != "synth"]
    if stray:
        raise pytest.UsageError(f"tests reading a synthesized variant outside the synth group: {stray}. Fix: add "
                                "their file to tests/conftest.py GROUPS")
    # No reordering: each worker takes the tests in the tiers' order, as one process does. Sorting the longest
    # first (tried) ran unit tests after the e2e and fault tiers in one process, where the session fixtures'
    # environment (AWS_ENDPOINT_URL, credentials) is still set until the session ends: 20 unit tests failed.


@pytest.fixture
def sqs() -> FakeSender:
    return FakeSender()


@pytest.fixture
def sns() -> FakeSender:
    return FakeSender()


@pytest.fixture
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture
def keys() -> FakeKeys:
    return FakeKeys()


@pytest.fixture
def make_bridge(sqs: FakeSender, sns: FakeSender, store: FakeStore, keys: FakeKeys) -> Callable[..., Bridge]:
    """Build a Bridge over the fakes; the config defaults to config/dev.yaml."""

    def build(config: BridgeConfig | None = None, **overrides: Any) -> Bridge:
        ports: dict[str, Any] = {"sqs": sqs, "sns": sns, "parking_store": store, "signing_keys": keys,
                                 "sleep": no_sleep, "rand": lambda lo, hi: hi, "clock": fixed_clock}
        ports.update(overrides)
        return Bridge(config or dev_config(), make_settings(), **ports)

    return build
