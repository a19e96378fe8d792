"""How long MiniStack takes to answer after it is spawned, for one or more MiniStack venvs, alternating.

Run: `.venv/bin/python benchmarks/ministack_start.py .venv-ministack [/other/clone/.venv-ministack] [--rounds 3]`.
Each start is `bridge_local.services.start_ministack` in a fresh state dir (what `bridge up` and
`bridge restart-aws` do), timed until its port answers, then stopped. Written for the `pip install
--no-compile` question (Makefile, session 10): with PYTHONDONTWRITEBYTECODE=1 a venv installed without its
bytecode compiles MiniStack from source at every start (0.53 s against 0.23 s on this machine, 3 starts each).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bridge_local import services  # the repository's own package, found by the line above


def time_start(venv: Path) -> float:
    """Seconds from spawning MiniStack out of `venv` until its port answers."""
    os.environ[services.MINISTACK_BIN_ENV] = str(venv / "bin" / "ministack")
    with tempfile.TemporaryDirectory() as state_dir:
        began = time.monotonic()
        service = services.start_ministack(Path(state_dir))
        took = time.monotonic() - began
        services.stop_process(service.pid)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("venvs", nargs="+", type=Path, help="MiniStack venvs (each has bin/ministack)")
    parser.add_argument("--rounds", type=int, default=3, help="starts per venv, alternating (default 3)")
    args = parser.parse_args(argv)
    for venv in args.venvs:
        if not (venv / "bin" / "ministack").is_file():
            parser.error(f"{venv}/bin/ministack is not a file. Fix: give a venv made by make install "
                         "(.venv-ministack)")
    times: dict[Path, list[float]] = {v: [] for v in args.venvs}
    try:
        for _ in range(args.rounds):
            for venv in args.venvs:
                times[venv].append(time_start(venv))
    except KeyboardInterrupt:  # start_ministack stops a MiniStack it was starting; nothing else is left
        print("interrupted: no MiniStack left running; no figures", file=sys.stderr)
        return 130
    pycs = {v: sum(1 for _ in v.rglob("*.pyc")) for v in args.venvs}
    print(f"{'venv':<60} {'pyc files':>9} {'median s':>9}  starts (s)")
    for venv, values in times.items():
        print(f"{venv!s:<60} {pycs[venv]:>9,} {statistics.median(values):>9.2f}  "
              + ", ".join(f"{t:.2f}" for t in values))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
