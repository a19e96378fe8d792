"""Instructions per delivered message at 0 ms and at a long endpoint latency (valgrind's callgrind), on the
one-thread path through the real loopback endpoint: does the bridge run more code per message when requests
are left in flight longer?

Why: at 10 ms the FIFO run costs more CPU per message than at 0 ms (the issue's "FIFO with many keys, 10 ms vs
its own 0 ms" row), and a timed comparison on a shared machine cannot say whether that is code (polls, timers,
registrations, connection opens) or cycles (caches lost to other threads). Under callgrind the bridge runs
about 50 times slower, so the endpoint's delay is scaled up (`--delay-ms`, default 800) to keep about as many
requests in flight as 10 ms does natively; the figure printed is (instructions of a run with one `handle`) -
(the same run without it), per message, with the hash seed fixed. Measured 2026-12-02, 2,000 FIFO records:
432.9k at 0 ms, 435.6k at 800 ms (+0.6%, 11 requests in flight); again in session 7 on another host (main at
a25e141): 432.8k and 435.9k (+0.7%, 13.7 in flight). The extra CPU per message at 10 ms is not code the bridge
runs in user space; the system calls per request are the same too (`benchmarks/bench_multiplex.py
--syscalls`), and bench_multiplex.py shows where the time goes instead.

Run: `.venv/bin/python benchmarks/instructions_by_latency.py [--kind fifo] [--records 2000] [--delay-ms 800]`;
needs valgrind (`apt-get install valgrind`); about three minutes.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(kind: str, records: int, delay_ms: float, runs: int) -> None:
    """Set up a bridge as suite.py does (fresh, warmed by a 20-record event); `runs` handles of the event."""
    sys.path.insert(0, str(HERE))
    from suite import Endpoint, _bridge, kafka_event  # noqa: PLC0415

    ep = Endpoint()
    try:
        event = kafka_event(records)
        ep.control(delay_ms)
        bridge = _bridge(kind, ep.url)
        bridge.handle(kafka_event(20))
        gc.collect()
        for _ in range(runs):
            ep.control()
            started = time.perf_counter()
            bridge.handle(event)
            stats = ep.control()
            print(f"requests in flight {stats['busy_s'] / (time.perf_counter() - started):.1f}", file=sys.stderr)
    finally:
        ep.close()


def valgrind() -> str:
    path = shutil.which("valgrind")
    if path is None:
        raise SystemExit("valgrind is not installed: apt-get install valgrind, then run this again")
    return path


def instructions(kind: str, records: int, delay_ms: float, runs: int) -> tuple[int, str]:
    env = dict(os.environ, PYTHONHASHSEED="0", PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run(
        [valgrind(), "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__, "--child",
         kind, str(records), str(delay_ms), str(runs)], capture_output=True, text=True, env=env, check=False)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"callgrind failed ({kind}, {delay_ms} ms, {runs} runs):\n{done.stderr[-2000:]}")
    in_flight = re.search(r"requests in flight ([\d.]+)", done.stderr)
    return int(found.group(1)), in_flight.group(1) if in_flight else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="fifo", choices=["fifo", "sqs", "sns"])
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--delay-ms", type=float, default=800.0)
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), float(args.child[2]), int(args.child[3]))
        return
    valgrind()
    setup, _ = instructions(args.kind, args.records, 0.0, 0)
    print(f"| {args.kind}, {args.records} records | endpoint delay | requests in flight | instructions per message |")
    print("|---|---|---|---|")
    for delay in (0.0, args.delay_ms):
        total, in_flight = instructions(args.kind, args.records, delay, 1)
        print(f"| | {delay:g} ms | {in_flight} | {(total - setup) / args.records:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
