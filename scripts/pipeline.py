#!/usr/bin/env python3
"""`make pipeline`: the CI/CD pipeline's steps that need no AWS, in its order, each with its wall time.

install -> lint (ruff, mypy, actionlint) -> tests (every tier) -> synth + cdk-nag + limits per stage ->
cfn-lint per stage -> deploy-access stack synth -> the cloud-assembly artifact. Stops at the first
failing stage. What it cannot run here: `cdk diff`/`cdk deploy` and `bridge smoke` (they need AWS).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STAGES = sorted(p.stem for p in (ROOT / "config").glob("*.yaml"))
VENV = ROOT / ".venv" / "bin"
# cdk.json runs `python app.py`: the venv's python comes first on PATH
ENV = {**os.environ, "PATH": f"{VENV}{os.pathsep}{os.environ.get('PATH', '')}",
       "CDK_DISABLE_CLI_TELEMETRY": "true", "CDK_DISABLE_VERSION_CHECK": "1",
       "AWS_EC2_METADATA_DISABLED": "true", "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
       "AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED": "true"}


def steps() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = [
        ("install", ["make", "install"]),
        ("lint (ruff, mypy, actionlint)", ["make", "lint"]),
        ("tests (unit, infra, security, integration, e2e, faults)",
         [str(VENV / "pytest"), "tests/unit", "tests/infra", "tests/security", "tests/integration", "tests/e2e",
          "tests/faults", "-q", "-p", "no:cacheprovider"]),
    ]
    for env in STAGES:
        out.append((f"synth {env} (cdk-nag, limits)", ["npx", "cdk", "synth", "-c", f"env={env}", "--quiet",
                                                        "-o", f"build/assembly/{env}"]))
    for env in STAGES:
        out.append((f"cfn-lint {env}", ["bash", "-c", f"{VENV / 'cfn-lint'} --regions us-east-1 --ignore-checks W3005"
                                        f" -- build/assembly/{env}/*.template.json"]))
    out.append(("synth deploy-access (example repository)",
                ["npx", "cdk", "--app", f"{VENV / 'python'} deploy_access_app.py", "synth", "--quiet",
                 "-c", "github_repository=example-org/kafka-bridge", "-c", "environments=" + ",".join(STAGES),
                 "-o", "build/assembly/deploy-access"]))
    return out


def main() -> int:
    total = time.monotonic()
    rows: list[tuple[str, float, str]] = []
    for name, cmd in steps():
        print(f"==> {name}: {' '.join(cmd)}", flush=True)
        started = time.monotonic()
        code = subprocess.run(cmd, cwd=ROOT, env=ENV, check=False).returncode  # noqa: S603 - the steps above
        rows.append((name, time.monotonic() - started, "ok" if code == 0 else f"FAILED ({code})"))
        print(f"<== {name}: {rows[-1][2]} in {rows[-1][1]:.1f} s", flush=True)
        if code:
            break
    else:
        started = time.monotonic()
        artifact = ROOT / "build" / "cloud-assembly.tar.gz"
        with tarfile.open(artifact, "w:gz") as tar:
            for env in STAGES:
                tar.add(ROOT / "build" / "assembly" / env, arcname=env)
        rows.append((f"cloud-assembly artifact ({artifact.relative_to(ROOT)}, {artifact.stat().st_size // 1024} KiB)",
                     time.monotonic() - started, "ok"))
    width = max(len(r[0]) for r in rows)
    print(f"\n{'stage':<{width}}  {'wall time':>9}  result")
    for name, seconds, result in rows:
        print(f"{name:<{width}}  {seconds:>8.1f}s  {result}")
    print(f"{'total':<{width}}  {time.monotonic() - total:>8.1f}s")
    print("not run here (they need AWS): cdk diff per stage, cdk deploy --app build/assembly/<stage>, bridge smoke")
    return 0 if all(r[2] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
