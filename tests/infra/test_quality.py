"""Template quality gates (cfn-lint, cdk-nag) and invalid configurations failing at synth."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from bridge.config import ConfigError
from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

from infra.config_document import config_from_document
from infra.stack import REPO_ROOT
from tests.infra.conftest import SELF_MANAGED_SOURCE, Synth

pytestmark = pytest.mark.infra

# CDK writes a DependsOn that a GetAtt already implies; cfn-lint reports it as W3005.
ACCEPTED_CFN_LINT_RULES = {"W3005"}


def test_cfn_lint_reports_nothing_but_w3005(every_variant: Synth) -> None:
    matches = lint_file(every_variant.template_path, ManualArgs(regions=["us-east-1"]))
    findings = [m for m in matches if m.rule.id not in ACCEPTED_CFN_LINT_RULES]
    print(f"\ncfn-lint {every_variant.config.name}: {len(matches)} finding(s), "
          f"{len(matches) - len(findings)} accepted (W3005), {len(findings)} other")
    assert findings == [], "\n".join(str(m) for m in findings)


def test_cdk_nag_has_no_findings_and_every_acknowledgment_has_a_reason(every_variant: Synth) -> None:
    # synth itself raised if an AwsSolutions finding was not acknowledged; the report says so too
    (plugin,) = every_variant.nag_report["pluginReports"]
    assert plugin["pluginName"] == "AwsSolutions"
    assert plugin["violations"] == []
    assert plugin["conclusion"] == "success"
    acknowledged = plugin.get("suppressedViolations", [])
    for ack in acknowledged:
        assert ack["reason"].strip(), ack["acknowledgedId"]
        assert len(ack["violatingConstructs"]) == 1, f"{ack['acknowledgedId']} must be scoped to one resource"
    rules = sorted({a["ruleName"] for a in acknowledged})
    print(f"\ncdk-nag: 0 unacknowledged, {len(acknowledged)} acknowledged ({', '.join(rules)})")


def _with(doc: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


@pytest.mark.parametrize(("path", "value", "field"), [
    (["source", "cluster_arn"], "arn:aws:kafka:us-east-1:123:cluster/x", "source.cluster_arn"),
    (["destinations", 0, "header_attributes"], ["a", "b", "c", "d", "e", "f", "g"],
     "destinations[0].header_attributes"),
    (["producers", 0, "aws_principal"], "arn:aws:iam::123456789012:role/*", "producers[0].aws_principal"),
    (["source", "retry"], {"max_attempts": 3}, "source.retry"),
    (["source", "network"], {"subnet_ids": ["subnet-0a1"], "security_group_ids": ["sg-0a1"]}, "source.network"),
])
def test_invalid_config_names_the_field(dev_document: dict[str, Any], path: list[Any], value: Any,
                                        field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        config_from_document(_with(dev_document, path, value))


def test_half_configured_vpc_fails_in_the_config_model_not_at_synth(dev_document: dict[str, Any]) -> None:
    # the check lives in config.py, so the handler's cold-start validation reports it too
    source = copy.deepcopy(SELF_MANAGED_SOURCE)
    source["network"]["security_group_ids"] = []
    with pytest.raises(ConfigError, match=r"source\.network: subnet_ids and security_group_ids go together"):
        config_from_document(_with(dev_document, ["source"], source))


def test_app_prints_config_problems_and_exits_non_zero(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: Bad_Name\nsource: {kind: msk}\n", encoding="utf-8")
    env = {**os.environ, "CDK_CONTEXT_JSON": f'{{"config": "{bad}"}}', "CDK_OUTDIR": str(tmp_path / "out")}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 1
    assert "name: 'Bad_Name' is not a valid bridge name" in result.stderr
    assert "Traceback" not in result.stderr
