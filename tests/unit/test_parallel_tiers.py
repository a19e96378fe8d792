"""`make test` runs every tier on pytest-xdist workers, and the end-of-session tables still count every test.

The tables (the security tier's attacks, the fault tier's runs) were built in the process that ran the
tests: under pytest-xdist that is a worker, which prints nothing, so `make test` would have shown no
`N of N attacks held` line at all. tests/summaries.py builds them from the reports the workers send.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_runs_every_tier_on_several_workers_keeping_the_groups() -> None:
    commands = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True, check=True,
                              timeout=60).stdout
    pytest_line = next(line for line in commands.replace("\\\n", " ").splitlines() if "/pytest " in line)
    # every tier, the security and fault tiers too (the issues that asked for them want them in make test)
    for tier in ("tests/unit", "tests/infra", "tests/security", "tests/integration", "tests/e2e", "tests/faults"):
        assert f" {tier} " in pytest_line, pytest_line
    assert re.search(r" -n [2-9]\b", pytest_line), pytest_line
    # tests/conftest.py's groups hold only with loadgroup (_GroupScheduling); each worker takes the tests in the
    # tiers' order only without reordering (loadscope sorts the largest units first)
    assert "--dist loadgroup" in pytest_line, pytest_line
    assert "--no-loadscope-reorder" in pytest_line, pytest_line


def test_the_attack_table_counts_the_attacks_of_every_worker() -> None:
    # given: four attacks (loopback servers only), on two workers
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "2", "--dist",
                           "loadgroup", "-k", "test_delivery_retries_an_unreadable_answer",
                           "tests/security/test_unreadable_answers.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False)
    # then: the table has a row for each, from both workers, each held
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "4 passed" in done.stdout, done.stdout[-3000:]
    assert "4 of 4 attacks held (4 parked)" in done.stdout, done.stdout[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("a garbled 2xx answer on every attempt [")]
    assert len(rows) == 4, rows
    assert all(row.rstrip().endswith("| held") for row in rows), rows


def test_unit_tests_see_no_local_stack_or_shell_aws_environment() -> None:
    # given: the environment an e2e session fixture leaves for the rest of a worker's session (or a developer's
    # shell that exports a local endpoint and another region)
    leaked = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "AWS_REGION": "eu-west-1", "AWS_DEFAULT_REGION": "eu-west-1",
              "AWS_PROFILE": "not-a-profile", "BRIDGE_CONFIG_PATH": "/nonexistent.yaml"}
    # when: unit tests that build real botocore requests run in it
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/unit/test_sqs_body.py", "tests/unit/test_smoke.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False, env={**os.environ, **leaked})
    # then: they pass as on a clean machine (tests/unit/conftest.py gives each the session's start environment
    # without AWS_*, BRIDGE_* and POWERTOOLS_*; before, 6 failed and 6 errored on the 127.0.0.1 endpoint)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_unit_tests_see_no_bridge_or_powertools_variable_from_before() -> None:
    # given: the function's variables an e2e fixture (bridge_local.poller.handler_environment) leaves set
    leaked = {"BRIDGE_CONFIG_PATH": "/nonexistent.yaml", "POWERTOOLS_SERVICE_NAME": "leaked-service",
              "POWERTOOLS_METRICS_NAMESPACE": "Leaked"}
    # when: unit tests that read the function's settings from os.environ run in it
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/unit/test_settings_handler.py"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env={**os.environ, **leaked})
    # then: they see only what they set (tests/unit/conftest.py drops BRIDGE_* and POWERTOOLS_* too; without
    # either prefix, test_settings_from_the_process_environment_see_only_what_the_test_set fails)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
