"""What checkpoints cost: DynamoDB requests per batch and per million records, and throughput on vs off.

`python benchmarks/bench_checkpoints.py [--rounds 3] [--records 5000] [--send-ms 10] [--write-ms 5] [--read-ms 3]
 [--in-flight N ...] [--entries E ...]`

`--in-flight` runs "on" once per value of `settings.checkpoint_in_flight` (default: the config's), the
requests to one standard destination under way at once until their checkpoint is written, and
`--entries` once per value of `settings.checkpoint_request_entries` (default: the config's), the
messages per such request: what a crash can re-send (N x E), traded against throughput.
`--default-switch` adds each "on" variant again with CPython's default 5 ms thread switch interval
instead of the 0.5 ms a checkpointed delivery runs with (bridge.checkpoints.prompt_checkpoints).

Both variants run in the same process, round by round, against the suite's loopback SQS/SNS endpoint
(benchmarks/endpoint.py, real HTTP, `--send-ms` per answer, about a same-Region SQS call). The
checkpoint store is the real `BatchProgress` over an in-memory table that counts requests and waits
`--write-ms` per BatchWriteItem and `--read-ms` per Query: DynamoDB's own latency, which no local
emulator reproduces, is the stated assumption here. Prices: on-demand us-east-1, $0.625 per million
write request units and $0.125 per million read request units (each item written here is under 1 KB:
one unit; a Query reads up to 4 KB per unit, strongly consistent).

`--paths` answers another question: what a checkpointed run (production's default) costs on the one-thread
path (`MultiplexedRun`, its checkpoint writes on the writer thread, bridge.adapters.checkpoint_writer) against
the same bridge on send threads (each writing its request's checkpoint), at 0 and 10 ms, the two interleaved in
every round. There the checkpoint table is the real adapter (`DynamoDbCheckpointStore` over the bridge's own
DynamoDB client) talking to the same loopback endpoint, which answers DynamoDB's BatchWriteItem and Query with
the same latency as the sends: the writes' client CPU (botocore) is counted, as on Lambda.
`python benchmarks/bench_checkpoints.py --paths [--rounds 3] [--kinds fifo sqs sns]`
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "lambdas"))
sys.path.insert(0, str(HERE.parent))

from bridge import checkpoints  # noqa: E402
from bridge.checkpoints import ProgressEntry  # noqa: E402

from benchmarks.suite import Endpoint, _bridge, kafka_event  # noqa: E402

WRITE_PRICE_PER_MILLION = 0.625
READ_PRICE_PER_MILLION = 0.125
ITEM_BYTES_ESTIMATE = 300  # shard, entry, 10 tokens of about 20 bytes, expires_at


class TimedTable:
    """An in-memory progress table with DynamoDB's latency and a request count."""

    def __init__(self, write_s: float, read_s: float) -> None:
        self.write_s = write_s
        self.read_s = read_s
        self.entries: list[ProgressEntry] = []
        self.writes = 0
        self.items = 0
        self.reads = 0
        self._lock = threading.Lock()

    def read(self, shards: Sequence[str]) -> list[ProgressEntry]:
        time.sleep(self.read_s * len(shards))  # one Query per shard
        with self._lock:
            self.reads += len(shards)
            wanted = set(shards)
            return [e for e in self.entries if e.shard in wanted]

    def write(self, entries: Sequence[ProgressEntry]) -> None:
        time.sleep(self.write_s * -(-len(entries) // 25))  # BatchWriteItem, 25 items a call
        with self._lock:
            self.writes += -(-len(entries) // 25)
            self.items += len(entries)
            self.entries.extend(entries)


# --paths: records per run (0 ms, 10 ms); a standard destination with checkpoints on sends one request of 4 at a
# time (checkpoint_in_flight 1), so its 10 ms runs are kept short
PATH_SIZES = {"fifo": (10_000, 5_000), "sqs": (5_000, 1_000), "sns": (5_000, 1_000), "mixed": (2_000, 1_000)}
PATHS = ("one-thread", "send-threads")


def checkpointed_bridge(kind: str, endpoint_url: str) -> Any:
    """The suite's bridge for `kind` with checkpoints on, its table the real adapter over the bridge's own
    DynamoDB client, pointed at the loopback endpoint. `mixed`: every record to a FIFO queue and to a
    standard one (two targets a write can cover together)."""
    from bridge.adapters import clients  # noqa: PLC0415
    from bridge.adapters.dynamodb import DynamoDbCheckpointStore  # noqa: PLC0415
    from bridge.config import BridgeConfig  # noqa: PLC0415
    from bridge.service import Bridge  # noqa: PLC0415

    from benchmarks.suite import bench_config  # noqa: PLC0415

    plain = _bridge("sqs", endpoint_url)
    doc = bench_config("fifo" if kind == "mixed" else kind)
    if kind == "mixed":
        doc["destinations"].append({"name": "std", "type": "sqs", "header_attributes": ["tenant"]})
        doc["routes"][0]["to"] = ["out", "std"]
    doc["settings"] = {"checkpoints": "on"}
    settings = dataclasses.replace(plain.settings, checkpoint_table="bench-checkpoints")
    store = DynamoDbCheckpointStore(clients.dynamodb_client(settings), "bench-checkpoints", 3600)
    return Bridge(BridgeConfig.from_dict(doc), settings, checkpoints=store)


def path_run(bridge: Any, path: str, event: dict[str, Any], ep: Endpoint) -> tuple[float, float, float, float]:
    """(msg/s, CPU µs per message, BatchWriteItem calls per send request, voluntary context switches per
    send request) of one checkpointed `handle`; the CPU is the process's, every thread's."""
    import resource  # noqa: PLC0415

    from benchmarks.suite import records_of, timed  # noqa: PLC0415

    deliverer = bridge._deliverer
    if path == "send-threads":
        deliverer.multiplexed = lambda on_delivered=None: False  # what a checkpointed run did before
    else:
        deliverer.__dict__.pop("multiplexed", None)
    ep.control()
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw
    wall, cpu = timed(lambda: bridge.handle(event))
    switches = resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw - switches
    actions = ep.control()["by_action"]
    sends = actions.get("SendMessageBatch", 0) + actions.get("PublishBatch", 0)
    messages = len(records_of(event)) * (2 if len(bridge.targets) == 2 else 1)
    return messages / wall, cpu / messages * 1e6, actions.get("BatchWriteItem", 0) / sends, switches / sends


def compare_paths(rounds: int, kinds: Sequence[str]) -> None:
    import os  # noqa: PLC0415

    from benchmarks.suite import kafka_event  # noqa: PLC0415

    def fmt(xs: Sequence[float], digits: int = 0) -> str:
        return f"{statistics.median(xs):,.{digits}f} [{min(xs):,.{digits}f}-{max(xs):,.{digits}f}]"

    ep = Endpoint()
    results: dict[tuple[str, int, str], list[tuple[float, float, float, float]]] = {}
    load_before = os.getloadavg()
    try:
        for kind in kinds:
            bridge = checkpointed_bridge(kind, ep.url)
            for _ in range(2):  # each client's first two requests go through botocore
                bridge.handle(kafka_event(20))
            events = {delay: kafka_event(PATH_SIZES[kind][delay > 0]) for delay in (0, 10)}
            for rnd in range(rounds):
                for delay in (0, 10):
                    ep.control(delay)
                    for path in PATHS if rnd % 2 == 0 else PATHS[::-1]:
                        results.setdefault((kind, delay, path), []).append(path_run(bridge, path, events[delay], ep))
                print(f"  {kind}: round {rnd + 1} done", file=sys.stderr, flush=True)
    finally:
        ep.close()
    load_after = os.getloadavg()
    print(f"checkpointed runs, one thread vs send threads: {rounds} interleaved rounds; load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; checkpoint_in_flight 1, "
          "checkpoint_request_entries 4 (the defaults); DynamoDB answers with the sends' latency\n")
    print("| scenario | latency | path | msg/s | CPU µs/msg | checkpoint writes per request | context switches per "
          "request |")
    print("|---|---|---|---|---|---|---|")
    for (kind, delay, path), runs in results.items():
        print(f"| {kind} | {delay} ms | {path} | {fmt([r[0] for r in runs])} | {fmt([r[1] for r in runs])} "
              f"| {fmt([r[2] for r in runs], 2)} | {fmt([r[3] for r in runs], 1)} |")
    print("\n| scenario | one thread / send threads: CPU per message | one thread / send threads: msg/s |")
    print("|---|---|---|")
    for kind in kinds:
        for delay in (0, 10):
            one, threads = results[(kind, delay, "one-thread")], results[(kind, delay, "send-threads")]
            cpu = [a[1] / b[1] for a, b in zip(one, threads, strict=True)]
            rate = [a[0] / b[0] for a, b in zip(one, threads, strict=True)]
            print(f"| {kind} {delay} ms | {fmt(cpu, 2)} | {fmt(rate, 2)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--records", type=int, default=5_000)
    ap.add_argument("--batch", type=int, default=500, help="records per Kafka batch (the mapping's batch size)")
    ap.add_argument("--send-ms", type=float, default=10.0)
    ap.add_argument("--write-ms", type=float, default=5.0)
    ap.add_argument("--read-ms", type=float, default=3.0)
    ap.add_argument("--in-flight", type=int, nargs="+", default=None,
                    help="settings.checkpoint_in_flight values to run with checkpoints on")
    ap.add_argument("--entries", type=int, nargs="+", default=None,
                    help="settings.checkpoint_request_entries values to run with checkpoints on")
    ap.add_argument("--default-switch", action="store_true",
                    help="also run each 'on' variant with the default 5 ms thread switch interval")
    ap.add_argument("--paths", action="store_true",
                    help="checkpointed runs on the one-thread path against send threads, at 0 and 10 ms")
    ap.add_argument("--kinds", nargs="*", default=["fifo", "sqs", "sns", "mixed"],
                    choices=["fifo", "sqs", "sns", "mixed"],
                    help="--paths: the scenarios (mixed: every record to a FIFO and a standard queue)")
    args = ap.parse_args()
    if args.paths:
        compare_paths(args.rounds, args.kinds)
        return

    endpoint = Endpoint()
    endpoint.control(delay_ms=args.send_ms)
    defaults = _bridge("sqs", None, checkpoints=TimedTable(0, 0)).config.settings
    in_flight = args.in_flight or [defaults.checkpoint_in_flight]
    entries = args.entries or [defaults.checkpoint_request_entries]
    variants = ["off", *(f"on {n}x{e}{s}" for n in in_flight for e in entries
                         for s in ("", " 5ms")[:2 if args.default_switch else 1])]
    shipped_switch = checkpoints.CHECKPOINTED_SWITCH_INTERVAL_SECONDS
    rates: dict[str, list[float]] = {v: [] for v in variants}
    per_batch: dict[str, list[tuple[float, float, float]]] = {}  # on variant -> per round
    try:
        for rnd in range(args.rounds):
            for v, variant in enumerate(variants):
                table = TimedTable(args.write_ms / 1000, args.read_ms / 1000)
                bridge = _bridge("sqs", endpoint.url, checkpoints=table)
                bridge._checkpoints = table if variant != "off" else None  # same config, store switched
                checkpoints.CHECKPOINTED_SWITCH_INTERVAL_SECONDS = 0.005 if variant.endswith(" 5ms") \
                    else shipped_switch
                if variant != "off":
                    n, e = (int(v) for v in variant[3:].split(" ")[0].split("x"))
                    settings = dataclasses.replace(bridge.config.settings, checkpoint_in_flight=n,
                                                   checkpoint_request_entries=e)
                    bridge.config = dataclasses.replace(bridge.config, settings=settings)
                # distinct offsets per round and variant: no batch finds another's progress
                events = [kafka_event(args.batch) for _ in range(args.records // args.batch)]
                base = (rnd * len(variants) + v) * 10_000_000
                for n, event in enumerate(events):
                    for rs in event["records"].values():
                        for r in rs:
                            r["offset"] += base + n * args.batch
                t0 = time.perf_counter()
                for event in events:
                    bridge.handle(event)
                wall = time.perf_counter() - t0
                rates[variant].append(len(events) * args.batch / wall)
                if variant != "off":
                    per_batch.setdefault(variant, []).append((table.writes / len(events), table.reads / len(events),
                                                              table.items / len(events)))
    finally:
        endpoint.close()

    batches_per_million = 1_000_000 / args.batch
    off = statistics.median(rates["off"])
    print(f"checkpoints cost, {args.records} records in batches of {args.batch} to one standard queue, "
          f"{args.rounds} rounds (medians), sends {args.send_ms} ms, DynamoDB write {args.write_ms} ms / "
          f"read {args.read_ms} ms")
    for variant, rounds in per_batch.items():
        writes, reads, items = (statistics.median(v[i] for v in rounds) for i in range(3))
        wru = items * batches_per_million  # one unit per item under 1 KB
        # a Query reads every item of its shard: about (1000 offsets / batch) batches' items per shard read
        rru = reads * batches_per_million * max(1.0, items * ITEM_BYTES_ESTIMATE / 4096)
        print(f"  {variant}: per batch {writes:.1f} BatchWriteItem calls ({items:.1f} items), {reads:.1f} Query "
              f"calls; per million records {writes * batches_per_million:,.0f} write requests, "
              f"{reads * batches_per_million:,.0f} read requests, about {wru:,.0f} WRU + {rru:,.0f} RRU = "
              f"${wru / 1e6 * WRITE_PRICE_PER_MILLION + rru / 1e6 * READ_PRICE_PER_MILLION:.3f}")
    print(f"  throughput: off {off:,.0f} records/s; per round {[round(r) for r in rates['off']]}")
    for variant in variants[1:]:
        on = statistics.median(rates[variant])
        print(f"              {variant} (checkpoint_in_flight x request_entries) {on:,.0f} records/s "
              f"({(on / off - 1) * 100:+.1f}%); "
              f"per round {[round(r) for r in rates[variant]]}")


if __name__ == "__main__":
    main()
