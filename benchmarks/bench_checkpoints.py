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
    args = ap.parse_args()

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
