"""Side by side in one process: the bridge sending from its planning thread alone (`MultiplexedRun`, the
direct path's connections multiplexed) against the same bridge on send threads (`DeliveryRun`, what it
did before), through benchmarks/endpoint.py at 0 and 10 ms, the two variants interleaved in every round.

What it answers: how much process CPU a delivered message costs on each path (the send threads' cost per
request at 10 ms was thread wake-ups and GIL hand-offs, outside Python code), how many requests each
keeps in flight, and how the 10 ms throughput compares with the 0 ms one (the issue's FIFO row).

Run: `.venv/bin/python benchmarks/bench_multiplex.py --rounds 5` (`--kinds fifo sqs sns`). Figures are
medians over the rounds, [min-max]; ratios are taken within a round, then the median of those.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
from collections.abc import Sequence
from typing import Any

from suite import SIZES, Endpoint, _bridge, kafka_event, records_of, timed  # benchmarks/, the script's folder

VARIANTS = ("one-thread", "send-threads")


def run(bridge: Any, variant: str, event: dict[str, Any], ep: Endpoint) -> tuple[float, float, float, float]:
    """(msg/s, CPU µs per message, mean requests in flight, voluntary context switches per request) of one
    `handle`; the switches are the process's, all threads (getrusage), each a thread that gave up the CPU to
    wait (for the GIL, a condition, a socket)."""
    deliverer = bridge._deliverer
    if variant == "send-threads":
        deliverer.multiplexed = lambda on_delivered=None: False  # what the bridge did before: send threads
    else:
        deliverer.__dict__.pop("multiplexed", None)
        assert deliverer.multiplexed(), "the bridge's senders are not on the direct path"
    ep.control()
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    wall, cpu = timed(lambda: bridge.handle(event))
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
    stats = ep.control()
    messages = len(records_of(event))
    if stats["entries"] - 1 != messages:  # the audit event is one more entry
        raise SystemExit(f"{variant}: {stats['entries'] - 1} entries for {messages} records")
    return messages / wall, cpu / messages * 1e6, stats["busy_s"] / wall, switches / stats["requests"]


def fmt(xs: Sequence[float], digits: int = 0) -> str:
    return f"{statistics.median(xs):,.{digits}f} [{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=["fifo", "sqs", "sns"], choices=["fifo", "sqs", "sns"])
    args = parser.parse_args(argv)
    ep = Endpoint()
    results: dict[tuple[str, int, str], list[tuple[float, float, float, float]]] = {}
    load_before = os.getloadavg()
    try:
        for kind in args.kinds:
            bridge = _bridge(kind, ep.url)
            bridge.handle(kafka_event(20))  # the client's first two requests go through botocore
            events = {delay: kafka_event(SIZES[kind][delay > 0]) for delay in (0, 10)}
            for rnd in range(args.rounds):
                for delay in (0, 10):
                    ep.control(delay)
                    order = VARIANTS if rnd % 2 == 0 else VARIANTS[::-1]
                    for variant in order:
                        results.setdefault((kind, delay, variant), []).append(run(bridge, variant, events[delay], ep))
                print(f"  {kind}: round {rnd + 1} done", file=sys.stderr, flush=True)
    finally:
        ep.close()
    load_after = os.getloadavg()
    print(f"{args.rounds} interleaved rounds; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| scenario | latency | variant | msg/s | CPU µs/msg | requests in flight | context switches/request |")
    print("|---|---|---|---|---|---|---|")
    for (kind, delay, variant), runs in results.items():
        print(f"| {kind} | {delay} ms | {variant} | {fmt([r[0] for r in runs])} | {fmt([r[1] for r in runs])} "
              f"| {fmt([r[2] for r in runs], 1)} | {fmt([r[3] for r in runs], 1)} |")
    print("\n| scenario | one thread / send threads, CPU per message | 10 ms / 0 ms throughput, one thread "
          "| 10 ms / 0 ms throughput, send threads |")
    print("|---|---|---|---|")
    for kind in args.kinds:
        for delay in (0, 10):
            one, threads = results[(kind, delay, "one-thread")], results[(kind, delay, "send-threads")]
            cpu = [a[1] / b[1] for a, b in zip(one, threads, strict=True)]
            if delay == 0:
                print(f"| {kind} 0 ms | {fmt(cpu, 2)} | | |")
                continue
            ratios = {v: [a[0] / b[0] for a, b in zip(results[(kind, 10, v)], results[(kind, 0, v)], strict=True)]
                      for v in VARIANTS}
            print(f"| {kind} 10 ms | {fmt(cpu, 2)} | {fmt(ratios['one-thread'], 2)} "
                  f"| {fmt(ratios['send-threads'], 2)} |")


if __name__ == "__main__":
    main()
