"""`bridge up --deploy`: the stack users deploy, created in MiniStack by the real CDK CLI.

Steps: `cdk synth` of the app with the user's config into the state directory; the template made
deployable locally (resource types MiniStack does not implement are taken out, each named with the
reason, never silently); `cdk bootstrap` and `cdk deploy` of that assembly against MiniStack's
endpoint; the stack's outputs read back. The local poller then invokes the **deployed** function
(Lambda Invoke on MiniStack, which runs the handler from the deployed package as a child process),
so the package, its shipped config, its environment and the created queues, topics, policies,
subscriptions and secrets are what runs.

What cannot be deployed locally is said in one line each:
- the console test events (an EventSchemas registry): MiniStack has no EventSchemas; the same
  events run against the deployed function with `bridge invoke --event events/...`;
- the public Powertools layer: it cannot be fetched here, and MiniStack runs Python functions in
  its own interpreter, whose venv (.venv-ministack, `make install`) has Powertools installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import BridgeConfig

from bridge_local.provision import local_client
from bridge_local.services import ACCOUNT_ID, PROJECT_ROOT, REGION, StackError, StackState

# Resource types the synthesized stack has and MiniStack's CloudFormation does not implement, with
# why a local run does not need them. Named once; anything referencing them is removed with them.
UNSUPPORTED_TYPES: Mapping[str, str] = {
    "AWS::CodeDeploy::Application": "the gradual rollout (CodeDeploy) moves the alias on AWS; locally the alias "
                                    "points at the deployed version directly",
    "AWS::CodeDeploy::DeploymentConfig": "part of the CodeDeploy rollout",
    "AWS::CodeDeploy::DeploymentGroup": "part of the CodeDeploy rollout",
    "AWS::Logs::QueryDefinition": "saved CloudWatch Logs Insights queries: nothing to run them on locally",
    "AWS::SecretsManager::ResourcePolicy": "secret resource policies, which MiniStack would not evaluate anyway "
                                           "(tests/security checks them)",
    "AWS::SecretsManager::RotationSchedule": "signing-key rotation on a schedule; a local run keeps the first key",
    "AWS::EventSchemas::Registry": "console test events: run them with bridge invoke --event events/...",
    "AWS::EventSchemas::Schema": "console test events: run them with bridge invoke --event events/...",
}
METRIC_MATH_ALARM = "AWS::CloudWatch::Alarm on metric math"
REFERS_TO_SKIPPED = "(refers to a skipped resource)"
SKIP_REASONS: Mapping[str, str] = {
    **UNSUPPORTED_TYPES,
    METRIC_MATH_ALARM: "MiniStack's CloudWatch takes alarms on one metric only; tests/infra checks these alarms",
}
CDK_TIMEOUT_SECONDS = 600
SYNTH_DIR = "cdk.out.local"


class DeployError(StackError):
    """A local deploy step failed; the message names the step and where its output is."""


@dataclass
class LocalizeReport:
    """What the template had and what was taken out for MiniStack."""

    template_resources: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    update_policies_removed: int = 0


@dataclass
class DeployReport:
    stack: str
    template_resources: int
    created: Counter[str]
    skipped: Counter[str]
    outputs: dict[str, str]
    powertools_layers: list[str]
    seconds: dict[str, float]

    def deployment(self) -> dict[str, str]:
        """What the state file keeps: the stack, the function the poller invokes, the outputs."""
        return {"stack": self.stack, "function": self.outputs.get("FunctionAliasArn") or self.outputs["FunctionName"],
                "function_name": self.outputs["FunctionName"], "outputs": json.dumps(self.outputs)}


def cdk_environment(endpoint_url: str) -> dict[str, str]:
    """The CDK CLI pointed at MiniStack, with no way to reach AWS, telemetry or a version check."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    venv_bin = str(PROJECT_ROOT / ".venv" / "bin")
    env.update({
        "PATH": f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",  # `python app.py` is the project's venv
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": REGION, "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true", "CDK_DISABLE_VERSION_CHECK": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
        "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true",
        "CDK_DEFAULT_ACCOUNT": ACCOUNT_ID, "CDK_DEFAULT_REGION": REGION,
    })
    return env


def _cdk(args: list[str], env: dict[str, str], log: Path, step: str) -> None:
    npx = shutil.which("npx")
    if npx is None:
        raise DeployError("npx (Node.js) is not on PATH, so the CDK CLI cannot run. Fix: install Node 20, then "
                          "make install")
    with log.open("ab") as out:
        out.write(f"\n$ cdk {' '.join(args)}\n".encode())
        out.flush()
        proc = subprocess.run([npx, "--no-install", "cdk", *args], cwd=PROJECT_ROOT, env=env, stdout=out,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=CDK_TIMEOUT_SECONDS,
                              check=False)
    if proc.returncode != 0:
        tail = " | ".join(log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:])
        raise DeployError(f"cdk {step} failed (exit {proc.returncode}); see {log}: {tail}")


def _unsupported(resource: Mapping[str, Any]) -> str | None:
    """The UNSUPPORTED_TYPES key (or rule) a resource falls under, None when MiniStack can create it."""
    rtype = str(resource.get("Type"))
    if rtype in UNSUPPORTED_TYPES:
        return rtype
    if rtype == "AWS::CloudWatch::Alarm" and "Metrics" in resource.get("Properties", {}):
        return METRIC_MATH_ALARM
    return None


def localize_template(template: dict[str, Any]) -> LocalizeReport:
    """Take out, in place, what MiniStack cannot create and whatever refers to it (named in the report)."""
    resources: dict[str, Any] = template.get("Resources", {})
    report = LocalizeReport(template_resources=len(resources))
    removed: set[str] = set()
    for k in [k for k, r in resources.items() if _unsupported(r)]:
        report.skipped[str(_unsupported(resources[k]))] += 1
        resources.pop(k)
        removed.add(k)
    for r in resources.values():
        # The alias's CodeDeploy update policy names the removed application and group.
        if "UpdatePolicy" in r and "CodeDeployLambdaAliasUpdate" in r["UpdatePolicy"]:
            del r["UpdatePolicy"]["CodeDeployLambdaAliasUpdate"]
            report.update_policies_removed += 1
            if not r["UpdatePolicy"]:
                del r["UpdatePolicy"]
    # What refers to a removed resource goes too (a dashboard showing a skipped alarm), named as such.
    while dangling := [k for k, r in resources.items() if _references(r, removed)]:
        for k in dangling:
            report.skipped[f"{resources.pop(k)['Type']} {REFERS_TO_SKIPPED}"] += 1
            removed.add(k)
    for r in resources.values():
        deps = r.get("DependsOn")
        if isinstance(deps, list):
            r["DependsOn"] = [d for d in deps if d not in removed]
        elif isinstance(deps, str) and deps in removed:
            del r["DependsOn"]
    outputs = template.get("Outputs", {})
    for name in [n for n, o in outputs.items() if _references(o, removed)]:
        del outputs[name]
    return report


def _references(node: Any, ids: set[str]) -> bool:
    if isinstance(node, dict):
        if node.get("Ref") in ids:
            return True
        att = node.get("Fn::GetAtt")
        if isinstance(att, list) and att and att[0] in ids:
            return True
        sub = node.get("Fn::Sub")
        if isinstance(sub, str) and any("${" + i in sub for i in ids):
            return True
        return any(_references(v, ids) for v in node.values())
    if isinstance(node, list):
        return any(_references(v, ids) for v in node)
    return False


def deploy(config: BridgeConfig, config_path: str, state: StackState, state_dir: Path) -> DeployReport:
    """Synthesize, localize, bootstrap and deploy into the running MiniStack; return what happened."""
    env = cdk_environment(state.endpoint_url)
    out_dir = (state_dir / SYNTH_DIR).resolve()
    shutil.rmtree(out_dir, ignore_errors=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    log = (state_dir / "cdk-deploy.log").resolve()
    log.write_text("", encoding="utf-8")
    seconds: dict[str, float] = {}

    started = time.monotonic()
    _cdk(["synth", "--quiet", "--output", str(out_dir), "-c", f"config={Path(config_path).resolve()}",
          "-c", "test_events=false"], env, log, "synth")
    seconds["synth"] = time.monotonic() - started
    manifest = json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
    stacks = [n for n, a in manifest["artifacts"].items() if a.get("type") == "aws:cloudformation:stack"]
    if len(stacks) != 1:
        raise DeployError(f"expected one stack in the synthesized app, found {stacks}")
    stack = stacks[0]
    template_path = out_dir / manifest["artifacts"][stack]["properties"]["templateFile"]
    template = json.loads(template_path.read_text(encoding="utf-8"))
    localized = localize_template(template)
    _rewrite_template(out_dir, template_path, json.dumps(template))
    layers = _powertools_layers(template)

    started = time.monotonic()
    _cdk(["bootstrap", f"aws://{ACCOUNT_ID}/{REGION}", "--app", str(out_dir)], env, log, "bootstrap")
    seconds["bootstrap"] = time.monotonic() - started
    started = time.monotonic()
    _cdk(["deploy", "--app", str(out_dir), stack, "--require-approval", "never", "--progress", "events"], env, log,
         "deploy")
    seconds["deploy"] = time.monotonic() - started

    cfn = local_client("cloudformation", state.endpoint_url)
    described = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    created: Counter[str] = Counter()
    paginator = cfn.get_paginator("list_stack_resources")
    for page in paginator.paginate(StackName=stack):
        for r in page["StackResourceSummaries"]:
            if str(r.get("ResourceStatus", "")).endswith("_COMPLETE"):
                created[r["ResourceType"]] += 1
    return DeployReport(stack, localized.template_resources, created, localized.skipped, outputs, layers, seconds)


def _rewrite_template(out_dir: Path, template_path: Path, text: str) -> None:
    """Write the localized template and re-key its asset: the CLI skips uploading a key that exists."""
    template_path.write_text(text, encoding="utf-8")
    new_hash = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for assets in out_dir.glob("*.assets.json"):
        doc = json.loads(assets.read_text(encoding="utf-8"))
        old = [k for k, f in doc.get("files", {}).items() if f.get("source", {}).get("path") == template_path.name]
        for old_hash in old:
            for meta in (out_dir / "manifest.json", assets):
                meta.write_text(meta.read_text(encoding="utf-8").replace(old_hash, new_hash), encoding="utf-8")


def _powertools_layers(template: Mapping[str, Any]) -> list[str]:
    layers: list[str] = []
    for r in template.get("Resources", {}).values():
        if r.get("Type") == "AWS::Lambda::Function":
            for layer in r.get("Properties", {}).get("Layers", []) or []:
                text = _plain(layer)
                if "owertools" in text:
                    layers.append(text)
    return layers


def _plain(node: Any) -> str:
    """A layer ARN as text: Fn::Join parts joined, the region and partition filled in."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Fn::Join" in node:
        sep, parts = node["Fn::Join"]
        return str(sep).join(_plain(p) for p in parts)
    if isinstance(node, dict) and node.get("Ref") == "AWS::Region":
        return REGION
    if isinstance(node, dict) and node.get("Ref") == "AWS::Partition":
        return "aws"
    return json.dumps(node)


def report_lines(rep: DeployReport) -> list[str]:
    """What `bridge up --deploy` and `bridge demo --deploy` print: counts, every skip with its reason."""
    lines = [f"deployed stack {rep.stack} into MiniStack: {rep.template_resources} resources in the template, "
             f"{sum(rep.created.values())} created, {sum(rep.skipped.values())} skipped "
             f"(synth {rep.seconds.get('synth', 0):.0f} s, bootstrap {rep.seconds.get('bootstrap', 0):.0f} s, "
             f"deploy {rep.seconds.get('deploy', 0):.0f} s)"]
    for t, n in sorted(rep.skipped.items()):
        why = ("it refers to a resource skipped above" if t.endswith(REFERS_TO_SKIPPED)
               else f"not implemented by MiniStack; {SKIP_REASONS[t]}")
        lines.append(f"  skipped {n} {t.removesuffix(' ' + REFERS_TO_SKIPPED)}: {why}")
    lines.append("  skipped the console test events (-c test_events=false): MiniStack has no EventSchemas; "
                 "bridge invoke --event events/... runs them against the deployed function")
    for layer in rep.powertools_layers:
        lines.append(f"  Powertools layer {layer}: not fetched (no network); MiniStack runs the function in its own "
                     "interpreter, whose venv (.venv-ministack) has Powertools installed")
    return lines
