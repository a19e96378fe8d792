"""tests/conftest.py GROUPS: the tests that must share a worker under `make test` are in their group, and a key
that names nothing any more (a renamed test or file) is refused instead of silently ungrouping its tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import conftest
from tests.helpers import ROOT


def test_every_groups_key_names_an_existing_file_or_test() -> None:
    assert conftest.stale_group_keys(ROOT) == []


def test_the_tests_that_stage_into_build_share_the_repo_build_group() -> None:
    assert conftest.group_of("tests/e2e/test_local_deploy.py::test_x[dev]") == "repo-build"
    assert conftest.group_of(
        "tests/infra/test_limits.py::test_a_value_over_an_api_limit_fails_synth_with_one_line") == "repo-build"
    assert conftest.group_of("tests/infra/test_limits.py::test_other") == "synth"


def test_every_fault_test_file_is_in_the_faults_group() -> None:
    files = sorted((ROOT / "tests" / "faults").glob("test_*.py"))
    assert files
    assert {f.name: conftest.group_of(f"tests/faults/{f.name}::t") for f in files} == {f.name: "faults" for f in files}


@pytest.mark.parametrize("key", [
    "tests/infra/test_limits.py::test_a_value_over_an_api_limit_fails_synth",  # a renamed test (prefix of the old)
    "tests/e2e/test_local_deploy_renamed.py",  # a renamed file
    "tests/nonexistent/",  # a renamed directory
])
def test_a_key_that_names_nothing_is_reported(key: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conftest.GROUPS, key, "repo-build")
    assert conftest.stale_group_keys(ROOT) == [key]


def test_a_stale_key_stops_the_collection_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(conftest.GROUPS, "tests/gone.py", "synth")

    class Config:
        rootpath = ROOT

    with pytest.raises(pytest.UsageError, match=r"GROUPS names what no longer exists: \['tests/gone.py'\]"):
        conftest.pytest_collection_modifyitems(Config(), [])  # type: ignore[arg-type]
