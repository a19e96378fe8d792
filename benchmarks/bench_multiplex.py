"""Side by side in one process: the bridge sending from its planning thread alone (`MultiplexedRun`, the
direct path's connections multiplexed) against the same bridge on send threads (`DeliveryRun`, what it
did before), through benchmarks/endpoint.py at 0 and 10 ms, the two variants interleaved in every round.

What it answers: how much process CPU a delivered message costs on each path (the send threads' cost per
request at 10 ms was thread wake-ups and GIL hand-offs, outside Python code), how many requests each
keeps in flight, and how the 10 ms throughput compares with the 0 ms one (the issue's FIFO row).

Where a run's wall time goes (the split table): the planning thread's own CPU per message (`thread_time`),
the other threads' (starter threads opening connections on the one-thread path, send threads on the
other), the time the planning thread was runnable but waiting for a CPU (the machine's load, Linux
schedstat), the time it was blocked (waiting for answers, the GIL, a lock) and of that the tail: from
`finish` to the end of `handle` (the last requests' round trip, then the audit event's).

`--fresh` runs each measurement on a new bridge warmed by a 20-record event, as `suite.py` does, so the
connections a run needs are opened during it; without it one bridge per scenario keeps its connections
from round to round. `--records N` sends N records at both latencies (the suite sends 10,000 at 0 ms and
5,000 at 10 ms for FIFO, so the 10 ms tail weighs twice as much per message).

Run: `.venv/bin/python benchmarks/bench_multiplex.py --rounds 5` (`--kinds fifo sqs sns`, `--variants
one-thread`, `--fresh`, `--records 5000`). Figures are medians over the rounds, [min-max]; ratios are taken
within a round, then the median of those.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from suite import SIZES, Endpoint, _bridge, kafka_event, records_of  # benchmarks/, the script's folder

VARIANTS = ("one-thread", "send-threads")


@dataclass
class Run:
    rate: float  # messages per second
    cpu_us: float  # process CPU per message, all threads
    in_flight: float  # mean requests in flight (the endpoint's busy time / wall)
    switches: float  # voluntary context switches per request
    planning_us: float  # the planning (calling) thread's CPU per message
    waiting_ms: float  # the planning thread runnable, waiting for a CPU (nan where schedstat is missing)
    blocked_ms: float  # the planning thread neither running nor runnable
    tail_ms: float  # from `finish` to the end of `handle`


def _schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable and waiting for one) of the calling thread; nan off Linux."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
            running, waiting, _ = stat.read().split()
    except OSError:
        return float("nan"), float("nan")
    return int(running) / 1e9, int(waiting) / 1e9


def _finish_clock(deliverer: Any, marks: list[float]) -> Callable[[], None]:
    """Record when the next runs' `finish` is called (the instance's `start`, wrapped until the returned
    undo is called)."""
    start = deliverer.start

    def started(*args: Any, **kwargs: Any) -> Any:
        run = start(*args, **kwargs)
        finish = run.finish

        def finishing() -> Any:
            marks.append(time.perf_counter())
            return finish()
        run.finish = finishing
        return run
    deliverer.start = started
    return lambda: deliverer.__dict__.pop("start", None)


def run(bridge: Any, variant: str, event: dict[str, Any], ep: Endpoint) -> Run:
    """One `handle` on `variant`'s path. The switches are the process's, all threads (getrusage), each a
    thread that gave up the CPU to wait (for the GIL, a condition, a socket)."""
    deliverer = bridge._deliverer
    if variant == "send-threads":
        deliverer.multiplexed = lambda on_delivered=None: False  # what the bridge did before: send threads
    else:
        deliverer.__dict__.pop("multiplexed", None)
        assert deliverer.multiplexed(), "the bridge's senders are not on the direct path"
    ep.control()
    marks: list[float] = []
    undo = _finish_clock(deliverer, marks)
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    on_cpu, waiting = _schedstat()
    wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    try:
        bridge.handle(event)
    finally:
        end = time.perf_counter()
        wall, cpu, own = end - wall, time.process_time() - cpu, time.thread_time() - own
        undo()
    on_cpu_after, waiting_after = _schedstat()
    on_cpu, waiting = on_cpu_after - on_cpu, waiting_after - waiting
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
    stats = ep.control()
    messages = len(records_of(event))
    if stats["entries"] - 1 != messages:  # the audit event is one more entry
        raise SystemExit(f"{variant}: {stats['entries'] - 1} entries for {messages} records")
    return Run(messages / wall, cpu / messages * 1e6, stats["busy_s"] / wall, switches / stats["requests"],
               own / messages * 1e6, waiting * 1e3, (wall - on_cpu - waiting) * 1e3,
               (end - marks[0]) * 1e3 if marks else float("nan"))


def fmt(xs: Sequence[float], digits: int = 0) -> str:
    return f"{statistics.median(xs):,.{digits}f} [{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=["fifo", "sqs", "sns"], choices=["fifo", "sqs", "sns"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--fresh", action="store_true", help="a new bridge for every run, as suite.py")
    parser.add_argument("--records", type=int, help="records per run at both latencies (default: the suite's)")
    args = parser.parse_args(argv)
    variants = tuple(args.variants)
    ep = Endpoint()
    results: dict[tuple[str, int, str], list[Run]] = {}
    load_before = os.getloadavg()
    try:
        for kind in args.kinds:
            def warm(kind: str = kind) -> Any:
                bridge = _bridge(kind, ep.url)
                bridge.handle(kafka_event(20))  # the client's first two requests go through botocore
                return bridge
            bridge = warm()
            events = {delay: kafka_event(args.records or SIZES[kind][delay > 0]) for delay in (0, 10)}
            for rnd in range(args.rounds):
                for delay in (0, 10):
                    ep.control(delay)
                    order = variants if rnd % 2 == 0 else variants[::-1]
                    for variant in order:
                        if args.fresh:
                            bridge = warm()
                        results.setdefault((kind, delay, variant), []).append(run(bridge, variant, events[delay], ep))
                print(f"  {kind}: round {rnd + 1} done", file=sys.stderr, flush=True)
    finally:
        ep.close()
    load_after = os.getloadavg()
    print(f"{args.rounds} interleaved rounds{', a fresh bridge per run' if args.fresh else ''}; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")
    print("| scenario | latency | variant | msg/s | CPU µs/msg | requests in flight | context switches/request |")
    print("|---|---|---|---|---|---|---|")
    for (kind, delay, variant), runs in results.items():
        print(f"| {kind} | {delay} ms | {variant} | {fmt([r.rate for r in runs])} | {fmt([r.cpu_us for r in runs])} "
              f"| {fmt([r.in_flight for r in runs], 1)} | {fmt([r.switches for r in runs], 1)} |")
    print("\n| scenario | latency | variant | planning thread CPU µs/msg | other threads CPU µs/msg "
          "| planning thread waiting for a CPU, ms | blocked, ms | of which the tail (finish, audit), ms |")
    print("|---|---|---|---|---|---|---|---|")
    for (kind, delay, variant), runs in results.items():
        print(f"| {kind} | {delay} ms | {variant} | {fmt([r.planning_us for r in runs], 1)} "
              f"| {fmt([r.cpu_us - r.planning_us for r in runs], 1)} | {fmt([r.waiting_ms for r in runs])} "
              f"| {fmt([r.blocked_ms for r in runs])} | {fmt([r.tail_ms for r in runs])} |")
    print("\n| scenario | " + " | ".join(
        [*(["one thread / send threads, CPU per message"] if variants == VARIANTS else []),
         *(f"10 ms / 0 ms throughput, {v}" for v in variants)]) + " |")
    print("|---" * (1 + len(variants) + (variants == VARIANTS)) + "|")
    for kind in args.kinds:
        cells = []
        if variants == VARIANTS:
            one, threads = results[(kind, 10, "one-thread")], results[(kind, 10, "send-threads")]
            cells.append(fmt([a.cpu_us / b.cpu_us for a, b in zip(one, threads, strict=True)], 2))
        for v in variants:
            cells.append(fmt([a.rate / b.rate for a, b in zip(results[(kind, 10, v)], results[(kind, 0, v)],
                                                              strict=True)], 2))
        print(f"| {kind} 10 ms | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
