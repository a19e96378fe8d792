"""The Makefile's targets install what they use and nothing more (a newcomer pays for every venv on a fresh clone)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _would_run(target: str) -> str:
    """The commands `make TARGET` runs on a fresh clone: dry run (-n), every prerequisite remade (-B)."""
    done = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, check=True,
                          timeout=60)
    return done.stdout


@pytest.mark.parametrize("target", ["synth", "synth-env"])
def test_synth_installs_the_project_venv_and_the_cdk_cli_but_neither_local_aws_nor_checkov(target: str) -> None:
    commands = _would_run(target)
    assert "pip install -q -e '.[dev]'" in commands
    assert "npm ci" in commands
    assert "cdk synth" in commands
    # MiniStack's and checkov's venvs: about 70 s of installs on a fresh clone that synth never uses
    assert ".venv-ministack" not in commands
    assert ".venv-checkov" not in commands


@pytest.mark.parametrize("target", ["deploy-local", "soak"])
def test_the_local_deploy_installs_the_local_aws_and_the_cdk_cli_but_not_checkov(target: str) -> None:
    commands = _would_run(target)
    assert ".venv-ministack/bin/pip install" in commands
    assert "npm ci" in commands
    assert ".venv-checkov" not in commands


def test_make_test_still_installs_everything_its_tiers_use() -> None:
    commands = _would_run("test")
    for venv in (".venv/bin/pip install", ".venv-ministack/bin/pip install", ".venv-checkov/bin/pip install"):
        assert venv in commands
    assert "npm ci" in commands


def test_install_keeps_pip_s_bytecode_pass_for_every_venv() -> None:
    # PYTHONDONTWRITEBYTECODE=1 (as on these machines) means nothing imported later is cached: `--no-compile` made
    # every MiniStack start compile from source (0.53 s against 0.23 s, benchmarks/ministack_start.py), and a
    # restart-aws e2e test failed on CI (session 9). Every pip install of every venv, not only the project's.
    commands = _would_run("install")
    installs = [line for line in commands.splitlines() if " install -q" in line and "pip" in line]
    assert len(installs) >= 6, commands  # pip upgrade + the package install, for each of the three venvs
    assert not [line for line in installs if "--no-compile" in line], installs
