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

What the kernel and the harness add (the third table): the process's user and system CPU per message,
the planning thread's involuntary context switches per request (preempted: another thread, often one of the
endpoint's, took its CPU), the endpoint process's own CPU per request (benchmarks/endpoint.py: one thread per
connection, sleeping out the delay), the connections the run opened and the requests per message.
`--syscalls` also counts the bridge process's system calls per request with `perf trace -s` (needs perf;
slows the run, so its CPU columns are not comparable with a run without it). `--sched` records every context
switch on the machine during each run (`perf record -e sched:sched_switch -a`) and says who preempted the
planning thread, per request, and how long it waited each time: the endpoint's threads, the bridge's own
(starter threads), anything else running on the machine.

Every run is bracketed by a fixed piece of pure-Python work (`suite.calibrate`: JSON, dicts, SHA-256), timed on the
thread's CPU clock: on this shared VM the same work takes from 57 to 123 ms within half a minute at load
1.3 (the host, not our processes), so two runs seconds apart can see CPUs of different speeds. The last tables
divide each run's CPU per message by its own calibration (times the median calibration): CPU per message at
one machine speed, and the 10 ms / 0 ms ratios with the machine's speed taken out, as far as two 15 ms
samples around a run of about a second can take it out (the speed also changes within a run).

`--placements shared apart` runs every measurement twice, interleaved: `shared` as suite.py runs (bridge and
endpoint on whichever CPU the scheduler picks), `apart` with the bridge's threads on CPU 0 and the endpoint's
on CPU 1 (sched_setaffinity), so the endpoint's threads never preempt the bridge. On AWS the endpoint is
another machine: the difference between the two is what the co-located endpoint costs the bridge.

`--fresh` runs each measurement on a new bridge warmed by a 20-record event, as `suite.py` does, so the
connections a run needs are opened during it; without it one bridge per scenario keeps its connections
from round to round. `--records N` sends N records at both latencies (the suite sends 10,000 at 0 ms and
5,000 at 10 ms for FIFO, so the 10 ms tail weighs twice as much per message).

Run: `.venv/bin/python benchmarks/bench_multiplex.py --rounds 5` (`--kinds fifo sqs sns`, `--variants
one-thread`, `--fresh`, `--records 5000`, `--placements shared apart`, `--syscalls`).
Figures are medians over the rounds, [min-max]; ratios are taken
within a round, then the median of those.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from suite import SIZES, Endpoint, _bridge, calibrate, kafka_event, records_of  # benchmarks/, the script's folder

VARIANTS = ("one-thread", "send-threads")
PLACEMENTS = ("shared", "apart")
_TICK = os.sysconf("SC_CLK_TCK")


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
    user_us: float  # process user CPU per message
    sys_us: float  # process system CPU per message
    preempted: float  # the planning thread's involuntary context switches per request
    endpoint_us: float  # the endpoint process's CPU per request (user + system)
    connections: int  # connections the direct path opened during the run
    requests_per_message: float
    syscalls: dict[str, float]  # system calls per request, by name (`--syscalls`), else empty
    preemptions: dict[str, tuple[float, float]]  # `--sched`: by whom -> (per request, ms off the CPU), else empty
    calibration_ms: float  # thread CPU of `calibrate`'s fixed work, mean of just before and just after the run


def _schedstat() -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable and waiting for one) of the calling thread; nan off Linux."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
            running, waiting, _ = stat.read().split()
    except OSError:
        return float("nan"), float("nan")
    return int(running) / 1e9, int(waiting) / 1e9


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of process `pid`, all its threads (/proc; 10 ms ticks)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def place(placement: str, ep: Endpoint) -> None:
    """`apart`: the calling thread (and the threads it starts from now on) on CPU 0, every thread of the endpoint
    on CPU 1; `shared`: both on every CPU, as suite.py runs them."""
    cpus = sorted(os.sched_getaffinity(0) | set(range(os.cpu_count() or 1)))
    ours, theirs = ({0}, {1}) if placement == "apart" else (set(cpus), set(cpus))
    os.sched_setaffinity(0, ours)
    for task in os.listdir(f"/proc/{ep.proc.pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # a connection's thread that ended meanwhile
            os.sched_setaffinity(int(task), theirs)


class _Opened:
    """Counts the connections the direct path opens (`direct.Connections._open`) while installed."""

    def __init__(self) -> None:
        from bridge.adapters import direct  # noqa: PLC0415 - lambdas/ is on the path once suite is imported

        self.count, self._connections = 0, direct.Connections
        self._open = direct.Connections._open

    def __enter__(self) -> _Opened:
        opened, open_ = self, self._open

        def counting(connections: Any) -> Any:
            opened.count += 1
            return open_(connections)
        self._connections._open = counting  # type: ignore[assignment,method-assign]
        return self

    def __exit__(self, *_: object) -> None:
        self._connections._open = self._open  # type: ignore[method-assign]


class _Syscalls:
    """`perf trace -s` attached to this process while installed: system calls by name, all threads."""

    def __init__(self, on: bool) -> None:
        self.on, self.counts = on, {}  # type: ignore[var-annotated]
        self._perf: subprocess.Popen[str] | None = None

    def __enter__(self) -> _Syscalls:
        if self.on:
            perf = shutil.which("perf")
            if perf is None:
                raise SystemExit("--syscalls needs perf (linux-tools)")
            self._perf = subprocess.Popen([perf, "trace", "-s", "-p", str(os.getpid())], stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)  # attached
        return self

    def __exit__(self, *_: object) -> None:
        if self._perf is None:
            return
        self._perf.send_signal(signal.SIGINT)
        out = self._perf.communicate(timeout=30)[1]
        counts: dict[str, int] = {}
        for found in re.finditer(r"^\s+(\w+)\s+(\d+)\s+\d+\s+[\d.]+", out, re.M):
            counts[found.group(1)] = counts.get(found.group(1), 0) + int(found.group(2))
        self.counts = counts


class _Switches:
    """`perf record -e sched:sched_switch -a` while installed: who preempted the calling thread (the endpoint's
    threads, this process's other threads, anything else) and how long it was off the CPU each time."""

    def __init__(self, on: bool, ep: Endpoint) -> None:
        self.on, self.ep, self.by = on, ep, {}  # type: ignore[var-annotated]
        self._perf: subprocess.Popen[str] | None = None
        self._tool = "perf"
        self._data = f"/tmp/bench_multiplex_sched_{os.getpid()}.data"  # noqa: S108 - a scratch file of our own

    def __enter__(self) -> _Switches:
        if self.on:
            perf = shutil.which("perf")
            if perf is None:
                raise SystemExit("--sched needs perf (linux-tools)")
            self._tool = perf
            self._perf = subprocess.Popen([perf, "record", "-q", "-e", "sched:sched_switch", "-a", "-o", self._data],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # recording
        return self

    def __exit__(self, *_: object) -> None:
        if self._perf is None:
            return
        self._perf.send_signal(signal.SIGINT)
        self._perf.wait(30)
        me, mine, theirs = threading.get_native_id(), os.getpid(), self.ep.proc.pid
        script = subprocess.run([self._tool, "script", "-i", self._data, "-F", "pid,tid,time,trace"],
                                capture_output=True, text=True, check=True).stdout
        os.unlink(self._data)
        events = []
        process: dict[int, int] = {}  # thread id -> process id, from the events where the thread was switched out
        for line in script.splitlines():
            found = re.search(r"^\s*(\d+)/(\d+)\s+([\d.]+):\s+prev_comm=.*? prev_pid=(\d+) .*?prev_state=(\S+) "
                              r"==> next_comm=.*? next_pid=(\d+)", line)
            if found is not None:
                pid, tid, when, prev, state, nxt = found.groups()
                process[int(tid)] = int(pid)
                events.append((float(when), int(prev), state, int(nxt)))
        counts: dict[str, int] = {}
        waited: dict[str, float] = {}
        out: tuple[str, float] | None = None  # preempted by whom, when
        for when, prev, state, nxt in events:
            if prev == me and state.startswith("R"):
                who = {theirs: "endpoint", mine: "bridge"}.get(process.get(nxt, 0), "other")
                counts[who] = counts.get(who, 0) + 1
                out = (who, when)
            elif nxt == me and out is not None:
                waited[out[0]] = waited.get(out[0], 0.0) + when - out[1]
                out = None
        self.by = {who: (n, waited.get(who, 0.0) * 1e3) for who, n in counts.items()}


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


def run(bridge: Any, variant: str, event: dict[str, Any], ep: Endpoint, syscalls: bool = False,
        sched: bool = False) -> Run:
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
    speed = calibrate()
    with _Switches(sched, ep) as switched, _Syscalls(syscalls) as calls, _Opened() as opened:
        process, thread = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_THREAD)
        endpoint = _process_cpu(ep.proc.pid)
        on_cpu, waiting = _schedstat()
        wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
        try:
            bridge.handle(event)
        finally:
            end = time.perf_counter()
            wall, cpu, own = end - wall, time.process_time() - cpu, time.thread_time() - own
            undo()
        on_cpu_after, waiting_after = _schedstat()
        endpoint = _process_cpu(ep.proc.pid) - endpoint
        process_after = resource.getrusage(resource.RUSAGE_SELF)
        thread_after = resource.getrusage(resource.RUSAGE_THREAD)
    speed = (speed + calibrate()) / 2
    on_cpu, waiting = on_cpu_after - on_cpu, waiting_after - waiting
    switches = process_after.ru_nvcsw - process.ru_nvcsw
    stats = ep.control()
    messages, requests = len(records_of(event)), stats["requests"]
    if stats["entries"] - 1 != messages:  # the audit event is one more entry
        raise SystemExit(f"{variant}: {stats['entries'] - 1} entries for {messages} records")
    return Run(messages / wall, cpu / messages * 1e6, stats["busy_s"] / wall, switches / requests,
               own / messages * 1e6, waiting * 1e3, (wall - on_cpu - waiting) * 1e3,
               (end - marks[0]) * 1e3 if marks else float("nan"),
               (process_after.ru_utime - process.ru_utime) / messages * 1e6,
               (process_after.ru_stime - process.ru_stime) / messages * 1e6,
               (thread_after.ru_nivcsw - thread.ru_nivcsw) / requests, endpoint / requests * 1e6, opened.count,
               requests / messages, {name: n / requests for name, n in calls.counts.items()},
               {who: (n / requests, ms) for who, (n, ms) in switched.by.items()}, speed)


def fmt(xs: Sequence[float], digits: int = 0) -> str:
    return f"{statistics.median(xs):,.{digits}f} [{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kinds", nargs="*", default=["fifo", "sqs", "sns"], choices=["fifo", "sqs", "sns"])
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--placements", nargs="*", default=["shared"], choices=PLACEMENTS,
                        help="apart: bridge on CPU 0, endpoint on CPU 1 (module docstring)")
    parser.add_argument("--fresh", action="store_true", help="a new bridge for every run, as suite.py")
    parser.add_argument("--records", type=int, help="records per run at both latencies (default: the suite's)")
    parser.add_argument("--syscalls", action="store_true", help="system calls per request (perf trace -s)")
    parser.add_argument("--sched", action="store_true", help="who preempted the planning thread (perf record)")
    args = parser.parse_args(argv)
    variants, placements = tuple(args.variants), tuple(args.placements)
    ep = Endpoint()
    results: dict[tuple[str, int, str, str], list[Run]] = {}
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
                    for placement in placements if rnd % 2 == 0 else placements[::-1]:
                        place(placement, ep)
                        for variant in order:
                            if args.fresh:
                                bridge = warm()
                            results.setdefault((kind, delay, variant, placement), []).append(
                                run(bridge, variant, events[delay], ep, args.syscalls, args.sched))
                print(f"  {kind}: round {rnd + 1} done", file=sys.stderr, flush=True)
    finally:
        place("shared", ep)
        ep.close()
    load_after = os.getloadavg()
    print(f"{args.rounds} interleaved rounds{', a fresh bridge per run' if args.fresh else ''}; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after\n")

    def label(key: tuple[str, int, str, str]) -> str:
        kind, delay, variant, placement = key
        return f"| {kind} | {delay} ms | {variant} |" + (f" {placement} |" if len(placements) > 1 else "")

    head = "| scenario | latency | variant |" + (" placement |" if len(placements) > 1 else "")
    rule = "|---|---|---|" + ("---|" if len(placements) > 1 else "")
    print(head + " msg/s | CPU µs/msg | requests in flight | context switches/request |")
    print(rule + "---|---|---|---|")
    for key, runs in results.items():
        print(f"{label(key)} {fmt([r.rate for r in runs])} | {fmt([r.cpu_us for r in runs])} "
              f"| {fmt([r.in_flight for r in runs], 1)} | {fmt([r.switches for r in runs], 1)} |")
    print("\n" + head + " planning thread CPU µs/msg | other threads CPU µs/msg "
          "| planning thread waiting for a CPU, ms | blocked, ms | of which the tail (finish, audit), ms |")
    print(rule + "---|---|---|---|---|")
    for key, runs in results.items():
        print(f"{label(key)} {fmt([r.planning_us for r in runs], 1)} "
              f"| {fmt([r.cpu_us - r.planning_us for r in runs], 1)} | {fmt([r.waiting_ms for r in runs])} "
              f"| {fmt([r.blocked_ms for r in runs])} | {fmt([r.tail_ms for r in runs])} |")
    print("\n" + head + " user CPU µs/msg | system CPU µs/msg | planning thread preempted, per request "
          "| endpoint CPU µs/request | connections opened | requests/msg |")
    print(rule + "---|---|---|---|---|---|")
    for key, runs in results.items():
        print(f"{label(key)} {fmt([r.user_us for r in runs], 1)} | {fmt([r.sys_us for r in runs], 1)} "
              f"| {fmt([r.preempted for r in runs], 2)} | {fmt([r.endpoint_us for r in runs])} "
              f"| {fmt([r.connections for r in runs])} | {fmt([r.requests_per_message for r in runs], 3)} |")
    if args.syscalls:
        names = sorted({n for runs in results.values() for r in runs for n in r.syscalls},
                       key=lambda n: -max(r.syscalls.get(n, 0) for runs in results.values() for r in runs))[:12]
        print("\nSystem calls per request, the bridge process, all threads (perf trace -s):\n")
        print(head + "".join(f" {n} |" for n in names))
        print(rule + "---|" * len(names))
        for key, runs in results.items():
            print(label(key) + "".join(f" {statistics.median(r.syscalls.get(n, 0) for r in runs):.2f} |"
                                       for n in names))
    if args.sched:
        print("\nWho preempted the planning thread (perf sched_switch, all CPUs): per request, and the ms it waited "
              "for its CPU back in all:\n")
        print(head + " by the endpoint's threads | by the bridge's other threads | by anything else |")
        print(rule + "---|---|---|")
        for key, runs in results.items():
            cells = [f" {fmt([r.preemptions.get(who, (0.0, 0.0))[0] for r in runs], 2)}, "
                     f"{fmt([r.preemptions.get(who, (0.0, 0.0))[1] for r in runs])} ms |"
                     for who in ("endpoint", "bridge", "other")]
            print(label(key) + "".join(cells))
    print("\n| scenario |" + (" placement |" if len(placements) > 1 else "") + " " + " | ".join(
        [*(["one thread / send threads, CPU per message"] if variants == VARIANTS else []),
         *(f"10 ms / 0 ms throughput, {v}" for v in variants),
         *(f"10 ms / 0 ms CPU per message, {v}" for v in variants)]) + " |")
    print("|---" * (1 + (len(placements) > 1) + 2 * len(variants) + (variants == VARIANTS)) + "|")
    for kind in args.kinds:
        for placement in placements:
            cells = []
            if variants == VARIANTS:
                one = results[(kind, 10, "one-thread", placement)]
                threads = results[(kind, 10, "send-threads", placement)]
                cells.append(fmt([a.cpu_us / b.cpu_us for a, b in zip(one, threads, strict=True)], 2))
            for v in variants:
                cells.append(fmt([a.rate / b.rate for a, b in zip(results[(kind, 10, v, placement)],
                                                                  results[(kind, 0, v, placement)], strict=True)], 2))
            for v in variants:
                slow, quick = results[(kind, 10, v, placement)], results[(kind, 0, v, placement)]
                cells.append(fmt([a.cpu_us / b.cpu_us for a, b in zip(slow, quick, strict=True)], 2))
            print(f"| {kind} 10 ms |" + (f" {placement} |" if len(placements) > 1 else "") + " " + " | ".join(cells)
                  + " |")
    reference = statistics.median(r.calibration_ms for runs in results.values() for r in runs)
    print(f"\nThe machine's speed taken out: each run's CPU per message (and msg/s) scaled by its calibration against "
          f"the median calibration, {reference:.1f} ms:\n")
    print(head + " calibration, ms | CPU µs/msg at the median speed | msg/s at the median speed |")
    print(rule + "---|---|---|")
    for key, runs in results.items():
        print(f"{label(key)} {fmt([r.calibration_ms for r in runs], 1)} "
              f"| {fmt([r.cpu_us * reference / r.calibration_ms for r in runs], 1)} "
              f"| {fmt([r.rate * r.calibration_ms / reference for r in runs])} |")
    print("\n| scenario |" + (" placement |" if len(placements) > 1 else "") + " "
          + " | ".join(f"10 ms / 0 ms {what}, {v}, speed taken out" for v in variants
                       for what in ("throughput", "CPU per message")) + " |")
    print("|---" * (1 + (len(placements) > 1) + 2 * len(variants)) + "|")
    for kind in args.kinds:
        for placement in placements:
            cells = []
            for v in variants:
                slow, quick = results[(kind, 10, v, placement)], results[(kind, 0, v, placement)]
                cells.append(fmt([(a.rate * a.calibration_ms) / (b.rate * b.calibration_ms)
                                  for a, b in zip(slow, quick, strict=True)], 2))
                cells.append(fmt([(a.cpu_us / a.calibration_ms) / (b.cpu_us / b.calibration_ms)
                                  for a, b in zip(slow, quick, strict=True)], 2))
            print(f"| {kind} 10 ms |" + (f" {placement} |" if len(placements) > 1 else "") + " " + " | ".join(cells)
                  + " |")

if __name__ == "__main__":
    main()
