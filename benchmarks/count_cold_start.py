"""The cold start as instructions (valgrind's callgrind), which a shared machine's load does not move.

Run: `.venv/bin/python benchmarks/count_cold_start.py [--against REF] [--only bare import build child reference]`;
needs valgrind. Each figure is one fresh process under callgrind, in the environment `benchmarks/suite.py` gives
its cold-start children (`_lambda_env`: Lambda-like variables, an endpoint from `Endpoint`, the package as the
stack ships it from `function_package`), with PYTHONHASHSEED=0:

  bare       `python -c pass`: the interpreter's start, in every figure below
  import     `import bridge.handler`
  build      that and `get_bridge()` (settings, config, botocore imported)
  child      `benchmarks/child.py cold bridge`: import, build, first 1-record invocation (the suite's row)
  reference  `benchmarks/child.py cold reference`: import boto3, one client, one send

With `--against REF` the same for the bridge as it is at a git ref (its lambdas/bridge, this checkout's child.py),
and the ratio child / reference for both. Timed cold starts (`suite.py --only cold_start`) move by 20-30% with
the host's load; these counts by well under 1%. Instructions are not time (imports read files, and a cache miss
costs several), so the timed row stays the one issue 10 is read on.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import suite  # noqa: E402

VARIANTS = ("bare", "import", "build", "child", "reference")


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"{name} not found (valgrind: apt-get install valgrind)")
    return path


def tree_at(ref: str, into: Path) -> Path:
    """A copy of the repository's files at `ref` (git archive), for its lambdas/bridge."""
    data = subprocess.run([tool("git"), "-C", str(ROOT), "archive", ref, "lambdas"], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def count(tree: Path, variants: list[str], endpoint: suite.Endpoint, tmp: Path) -> dict[str, int]:
    """Instructions of each variant for the bridge in `tree` (its lambdas/bridge, packaged as shipped)."""
    package = _package(tree, tmp)
    config = tmp / "config.json"
    config.write_text(json.dumps(suite.bench_config("sqs")))
    env = {**suite._lambda_env(endpoint.url, config, package), "PYTHONHASHSEED": "0"}
    child = str(HERE / "child.py")
    commands = {
        "bare": ["-c", "pass"],
        "import": ["-c", "import bridge.handler"],
        "build": ["-c", "import bridge.handler as h; h.get_bridge()"],
        "child": [child, "cold", "bridge"],
        "reference": [child, "cold", "reference"],
    }
    out = {}
    for variant in variants:
        run = subprocess.run([tool("valgrind"), "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
                              *commands[variant]], env=env, capture_output=True, text=True, check=True)
        found = re.search(r"Collected : (\d+)", run.stderr)
        if found is None:
            raise SystemExit(f"no callgrind total for {variant}:\n{run.stderr[-2000:]}")
        out[variant] = int(found.group(1))
    return out


def _package(tree: Path, tmp: Path) -> Path:
    """suite.function_package for another tree: its lambdas/bridge with unchecked-hash pycs beside it."""
    root = tmp / "package"
    shutil.copytree(tree / "lambdas" / "bridge", root / "bridge", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash", str(root)],
                   check=True)
    return root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", help="a git ref to count too (its lambdas/bridge)")
    parser.add_argument("--only", nargs="*", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args()
    endpoint = suite.Endpoint()
    try:
        endpoint.control(0)
        with tempfile.TemporaryDirectory() as tmp_name:
            tmp = Path(tmp_name)
            trees = {"this checkout": ROOT}
            if args.against:
                trees[args.against] = tree_at(args.against, tmp / "against")
            results = {}
            for name, tree in trees.items():
                (tmp / name).mkdir()
                results[name] = count(tree, args.only, endpoint, tmp / name)
    finally:
        endpoint.close()
    print(f"| M instructions (callgrind, PYTHONHASHSEED=0) | {' | '.join(results)} |")
    print(f"|---|{'---|' * len(results)}")
    for variant in args.only:
        print(f"| {variant} | {' | '.join(f'{r[variant] / 1e6:,.1f}' for r in results.values())} |")
    if {"child", "reference"} <= set(args.only):
        ratios = [f"{r['child'] / r['reference']:.3f}x" for r in results.values()]
        print(f"| child / reference | {' | '.join(ratios)} |")
    if os.environ.get("COUNT_JSON"):
        Path(os.environ["COUNT_JSON"]).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
