"""What shipping bytecode saves at cold start: compiling the bridge's modules from source against
loading the pycs the package ships, side by side in one process, with the runtime's Python.

    python3.12 benchmarks/bench_bytecode.py      (make pipeline stages the package first)

Lambda's /var/task is read-only: without pycs every cold start compiles every module it imports.
"""

from __future__ import annotations

import marshal
import statistics
import sys
import time
from pathlib import Path

ROUNDS = 7


def main() -> int:
    src = Path(__file__).resolve().parent.parent / "lambdas" / "bridge"
    files = sorted(src.rglob("*.py"))
    sources = [(f, f.read_bytes()) for f in files]
    pycs = [marshal.dumps(compile(data, str(f), "exec")) for f, data in sources]
    compile_times, load_times = [], []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        for f, data in sources:
            compile(data, str(f), "exec")
        compile_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        for blob in pycs:
            marshal.loads(blob)  # noqa: S302 - bytes this process just produced
        load_times.append(time.perf_counter() - t)
    c, ld = statistics.median(compile_times) * 1000, statistics.median(load_times) * 1000
    size = sum(len(d) for _, d in sources)
    print(f"python {sys.version.split()[0]}: {len(files)} modules, {size:,} bytes of source")
    print(f"compile from source: {c:.1f} ms (median of {ROUNDS}); load bytecode: {ld:.1f} ms; "
          f"saved per cold start: {c - ld:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
