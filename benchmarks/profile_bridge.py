"""CPU profile of the bridge's own work on the benchmark's 10,000-record event, AWS stubbed.

Run: `.venv/bin/python benchmarks/profile_bridge.py [--top 20]`; prints the functions that take the
most time of their own (cProfile `tottime`), the list issue 10 asks to compare before and after.
`--steps` prints instead what each step of planning costs per record, timed alone without the
profiler (best of `--rounds`, process CPU), beside the decode floor and the whole `handle`: where the
own CPU above the floor goes. `--gc` counts the cyclic garbage collector's collections and their time
in `handle`, with the bridge's pause around planning and without it. `--checkpoints` times `handle` with
checkpoints off and on (through the general path, and through the fast path), the table in memory.
Timings here move with the machine's load; benchmarks/count_instructions.py counts the same `handle` in
instructions, which it does not move, against another git ref in the same run.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import pstats
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))
sys.path.insert(0, str(HERE))

from suite import NoKeys, NoStore, NullSender, _bridge, decode_floor, kafka_event  # noqa: E402


def step_cases(bridge: Any, event: dict[str, Any]) -> list[tuple[str, Callable[[], object]]]:
    """Each step of planning as a call over the event's records, inputs prepared up front (`--steps` times
    them; benchmarks/count_instructions.py `--steps` counts their instructions)."""
    import binascii  # noqa: PLC0415

    from bridge.audit import BatchTally, batch_id_of_runs  # noqa: PLC0415
    from bridge.delivery import Deliverer  # noqa: PLC0415
    from bridge.envelope import control_free, correlation_id_from  # noqa: PLC0415
    from bridge.fast_path import AHEAD_RECORDS, plan_plain  # noqa: PLC0415
    from bridge.records import decode_event, last_header_values  # noqa: PLC0415
    from bridge.service import Bridge  # noqa: PLC0415

    batch = decode_event(event)
    items, runs = batch.items, batch.runs  # what the bridge plans from: each record's dict, the position runs
    records = decode_event(event).records
    raws = [r.raw for r in records]
    n = len(records)
    factory = bridge._factories["out"]
    header = bridge.config.settings.correlation_header
    a2b = binascii.a2b_base64
    values = [a2b(r["value"]) for r in raws]
    lasts = [last_header_values(r["headers"]) for r in raws]
    ids = [r.record_id for r in records]
    cids = [correlation_id_from(last.get(header), i) for last, i in zip(lasts, ids, strict=True)]
    messages = [factory.plain_message(v, i, c, last, None) for v, i, c, last in zip(values, ids, cids, lasts,
                                                                                    strict=True)]
    target = bridge.targets["out"]
    one_thread = Bridge(bridge.config, bridge.settings, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(),
                        signing_keys=NoKeys())
    one_thread._deliverer._max_concurrency = 1

    class Discard:
        def add(self, target: Any, message: Any) -> None:
            pass

        def add_all(self, target: Any, messages: Any) -> None:
            pass

    def plan() -> None:
        plan_plain(items, bridge._plain_topic, BatchTally(max_correlation_ids=100), Discard(),
                   lambda r: None, correlation_header=header, producer_header="x-bridge-producer")

    def deliver(threads: int) -> None:
        deliverer = Deliverer({"sqs": NullSender(), "sns": NullSender()}, max_attempts=3, base_delay_ms=0,
                              max_concurrency=threads)
        with deliverer.start(keep_delivered=False) as run:
            for m in messages:
                run.add(target, m)
            run.finish()

    cases: list[tuple[str, Callable[[], object]]] = [
        ("decode floor (the reference)", lambda: decode_floor(event)),
        ("bridge.handle, whole", lambda: bridge.handle(event)),
        ("bridge.handle, whole, 1 send thread", lambda: one_thread.handle(event)),
        ("decode_event: positions checked, dicts kept", lambda: decode_event(event)),
        ("batch_id_of_runs", lambda: batch_id_of_runs(runs)),
        ("plan_plain: the fast path, messages discarded", plan),
        ("- base64 key and value", lambda: [(a2b(r["key"], strict_mode=True), a2b(r["value"], strict_mode=True))
                                            for r in raws]),
        ("- last_header_values", lambda: [last_header_values(r["headers"]) for r in raws]),
        ("- correlation_id_from", lambda: [correlation_id_from(last.get(header), i) is None
                                           for last, i in zip(lasts, ids, strict=True)]),
        (f"- control_free, runs of {AHEAD_RECORDS} values", lambda: [
            control_free(values[i:i + AHEAD_RECORDS]) for i in range(0, n, AHEAD_RECORDS)]),
        ("- MessageFactory.plain_message, values control-checked", lambda: [
            factory.plain_message(v, i, c, last, None, True) is None
            for v, i, c, last in zip(values, ids, cids, lasts, strict=True)]),
        ("DeliveryRun.add + send, 1 thread (stubbed)", lambda: deliver(1)),
        (f"DeliveryRun.add + send, {bridge._deliverer.max_concurrency} threads (stubbed)",
         lambda: deliver(bridge._deliverer.max_concurrency)),
    ]
    return cases


def steps(bridge: Any, event: dict[str, Any], rounds: int) -> None:
    """Each step of planning timed alone over the event's records (`step_cases`)."""
    n = sum(len(rs) for rs in event["records"].values())
    cases = step_cases(bridge, event)
    print("| step | µs per record |\n|---|---|")
    for name, fn in cases:
        best = float("inf")
        for _ in range(rounds):
            gc.collect()
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        print(f"| {name} | {best / n * 1e6:.2f} |")


def collections(bridge: Any, event: dict[str, Any], rounds: int) -> None:
    """What the cyclic garbage collector costs in `handle`: collections per generation and their time per
    record, with the bridge's pause (`service.cyclic_gc_paused`) and without it."""
    import contextlib  # noqa: PLC0415

    from bridge import service  # noqa: PLC0415

    n = sum(len(rs) for rs in event["records"].values())
    started = [0.0]
    seen: dict[int, list[float]] = {}

    def timer(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.thread_time()
        else:
            seen.setdefault(info["generation"], []).append(time.thread_time() - started[0])

    paused = service.cyclic_gc_paused
    print("| cyclic GC during handle | collections (gen 0/1/2) per handle | µs per record |\n|---|---|---|")
    for label, pause in (("paused (as the bridge runs)", paused), ("not paused", contextlib.nullcontext)):
        service.cyclic_gc_paused = pause  # type: ignore[assignment]
        seen.clear()
        gc.collect()
        gc.callbacks.append(timer)
        try:
            for _ in range(rounds):
                bridge.handle(event)
        finally:
            gc.callbacks.remove(timer)
            service.cyclic_gc_paused = paused
        counts = "/".join(f"{len(seen.get(g, [])) / rounds:.1f}" for g in range(3))
        total = sum(sum(ts) for ts in seen.values()) / rounds
        print(f"| {label} | {counts} | {total / n * 1e6:.2f} |")


class MemoryTable:
    """An in-memory checkpoint table (`CheckpointStore`), free of cost."""

    def __init__(self) -> None:
        self.entries: list[Any] = []

    def read(self, shards: Any) -> list[Any]:
        wanted = set(shards)
        return [e for e in self.entries if e.shard in wanted]

    def write(self, entries: Any) -> None:
        self.entries.extend(entries)


def checkpointed(event: dict[str, Any], rounds: int) -> None:
    """`handle` per record with checkpoints off, and on through the general path and the fast path (1 send
    thread, AWS and the checkpoint table stubbed; each run a batch's first attempt), beside the decode floor:
    medians of `rounds` interleaved rounds, and each one's ratio to the floor of its round."""
    import statistics  # noqa: PLC0415

    from bridge.config import BridgeConfig  # noqa: PLC0415
    from bridge.service import Bridge  # noqa: PLC0415
    from suite import bench_config  # noqa: PLC0415

    probe = _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(), signing_keys=NoKeys())
    doc = bench_config("sqs")
    on = BridgeConfig.from_dict({**doc, "settings": {"checkpoints": True}})

    def bridge(checkpoints: bool, fast_path: bool = True) -> Any:
        b = Bridge(on if checkpoints else probe.config, probe.settings, sqs=NullSender(), sns=NullSender(),
                   parking_store=NoStore(), signing_keys=NoKeys(), checkpoints=MemoryTable() if checkpoints else None,
                   fast_path=fast_path)
        b._deliverer._max_concurrency = 1
        return b

    variants: dict[str, Callable[[], Any]] = {
        "decode floor (the reference)": lambda: None,
        "checkpoints off (fast path)": lambda: bridge(False),
        "checkpoints on, general path only": lambda: bridge(True, fast_path=False),
        "checkpoints on (fast path)": lambda: bridge(True),
    }
    n = sum(len(rs) for rs in event["records"].values())
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, make in variants.items():
            b = make()  # a fresh table: nothing of the batch is recorded yet
            run = (lambda: decode_floor(event)) if b is None else (lambda b=b: b.handle(event))
            gc.collect()
            t0 = time.process_time()
            run()
            times[name].append(time.process_time() - t0)
    floor = times["decode floor (the reference)"]
    print("| handle, 1 send thread | µs per record | × decode floor (same round) |\n|---|---|---|")
    for name, ts in times.items():
        ratios = [t / f for t, f in zip(ts, floor, strict=True)]
        print(f"| {name} | {statistics.median(ts) / n * 1e6:.2f} | {statistics.median(ratios):.2f} "
              f"[{min(ratios):.2f}-{max(ratios):.2f}] |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--steps", action="store_true", help="time each planning step alone instead")
    parser.add_argument("--gc", action="store_true", help="count the cyclic GC's collections in handle instead")
    parser.add_argument("--checkpoints", action="store_true",
                        help="handle with checkpoints off, on through the general path and on through the fast path")
    parser.add_argument("--rounds", type=int, default=7, help="with --steps: best of this many runs; --gc: handles")
    args = parser.parse_args()
    bridge = _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(), signing_keys=NoKeys())
    bridge.handle(kafka_event(20))
    event = kafka_event(args.records)
    if args.steps:
        steps(bridge, event, args.rounds)
        return
    if args.gc:
        collections(bridge, event, args.rounds)
        return
    if args.checkpoints:
        checkpointed(event, args.rounds)
        return
    profile = cProfile.Profile()
    profile.enable()
    bridge.handle(event)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out).strip_dirs().sort_stats("tottime")
    stats.print_stats(args.top)
    text = out.getvalue()
    print(text[text.index("   ncalls"):] if "   ncalls" in text else text)


if __name__ == "__main__":
    main()
