"""CPU profile of the bridge's own work on the benchmark's 10,000-record event, AWS stubbed.

Run: `.venv/bin/python benchmarks/profile_bridge.py [--top 20]`; prints the functions that take the
most time of their own (cProfile `tottime`), the list issue 10 asks to compare before and after.
`--steps` prints instead what each step of planning costs per record, timed alone without the
profiler (best of `--rounds`, process CPU), beside the decode floor and the whole `handle`: where the
own CPU above the floor goes.
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


def steps(bridge: Any, event: dict[str, Any], rounds: int) -> None:
    """Each step of planning timed alone over the event's records (decoded once up front)."""
    from bridge.audit import BatchTally, batch_id_for  # noqa: PLC0415
    from bridge.delivery import Deliverer  # noqa: PLC0415
    from bridge.envelope import correlation_id_for  # noqa: PLC0415
    from bridge.records import decode_event  # noqa: PLC0415

    records = decode_event(event).records
    views = [r.decoded() for r in records]
    n = len(records)
    factory = bridge._factories["out"]
    header = bridge.config.settings.correlation_header
    messages = [factory.build(v, producer=None, correlation_id="cid-00000001") for v in views]
    target = bridge.targets["out"]

    def deliver(threads: int) -> None:
        deliverer = Deliverer({"sqs": NullSender(), "sns": NullSender()}, max_attempts=3, base_delay_ms=0,
                              max_concurrency=threads)
        with deliverer.start(keep_delivered=False) as run:
            for m in messages:
                run.add(target, m)
            run.finish()

    tally = BatchTally(max_correlation_ids=100)
    cases: list[tuple[str, Callable[[], object]]] = [
        ("decode floor (the reference)", lambda: decode_floor(event)),
        ("bridge.handle, whole", lambda: bridge.handle(event)),
        ("decode_event: positions, lazy records", lambda: decode_event(event)),
        ("batch_id_for", lambda: batch_id_for(records)),
        ("KafkaRecord.decoded(): key, value, headers", lambda: [r.decoded() is None for r in records]),
        ("correlation_id_for", lambda: [correlation_id_for(v, header) is None for v in views]),
        ("BatchTally.see", lambda: [tally.see(v, "cid") for v in views]),
        ("TrustPolicy.attribute", lambda: [bridge._trust.attribute(v) is None for v in views]),
        ("Router.route", lambda: [bridge._router.route(v) is None for v in views]),
        ("MessageFactory.build", lambda: [factory.build(v, producer=None, correlation_id="c") is None for v in views]),
        ("DeliveryRun.add + send, 1 thread (stubbed)", lambda: deliver(1)),
        ("DeliveryRun.add + send, 8 threads (stubbed)", lambda: deliver(8)),
    ]
    print("| step | µs per record |\n|---|---|")
    for name, fn in cases:
        best = float("inf")
        for _ in range(rounds):
            gc.collect()
            t0 = time.process_time()
            fn()
            best = min(best, time.process_time() - t0)
        print(f"| {name} | {best / n * 1e6:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--steps", action="store_true", help="time each planning step alone instead")
    parser.add_argument("--rounds", type=int, default=7, help="with --steps: best of this many runs")
    args = parser.parse_args()
    bridge = _bridge("sqs", None, sqs=NullSender(), sns=NullSender(), parking_store=NoStore(), signing_keys=NoKeys())
    bridge.handle(kafka_event(20))
    event = kafka_event(args.records)
    if args.steps:
        steps(bridge, event, args.rounds)
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
