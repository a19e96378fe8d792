"""Filter pushdown, side by side: invocations and records handed to the function, with and without.

One topic on the local broker (Tansu, 127.0.0.1) holds N records of which 10% match the only route
(`body: {type: OrderPlaced}`) and 90% are heartbeats the bridge would skip (`unmatched: skip`). The
local poller (bridge_local.poller, the stand-in for Lambda's event-source mapping) reads the topic
twice per batch size, in one process, with its own consumer group each time: once as the mapping is
without `source.filter_pushdown`, once with the filter criteria the stack generates
(bridge.filter_pushdown), which the poller applies as Lambda does. The function is a counting
stand-in: what is measured is what crosses the function boundary, which the handler does not change.

Run: `.venv/bin/python benchmarks/bench_filter_pushdown.py [--records 5000] [--rounds 3]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import BridgeConfig
from bridge.filter_pushdown import topic_filters
from confluent_kafka import Producer

from bridge_local.poller import Poller, PollerSettings
from bridge_local.provision import provision_kafka
from bridge_local.services import HOST, start_kafka, stop_process

TOPIC = "clicks"
MATCH_EVERY = 10  # one record in ten matches the route: 90% would be skipped
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/bench/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-1"
ROUTE = {"name": "placed", "match": {"topic": TOPIC, "body": {"type": "OrderPlaced"}}, "to": ["orders-out"]}


def config(pushdown: bool, group: str) -> BridgeConfig:
    return BridgeConfig.from_dict({
        "name": "bench-pushdown",
        "source": {"kind": "msk", "topics": [TOPIC], "consumer_group_id": group, "filter_pushdown": pushdown,
                   "cluster_arn": CLUSTER_ARN},
        "destinations": [{"name": "orders-out", "type": "sqs"}],
        "routes": [ROUTE],
        "unmatched": {"action": "skip"},
    })


@dataclass
class Counted:
    invocations: int = 0
    records: int = 0

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.invocations += 1
        self.records += sum(len(rs) for rs in event["records"].values())
        return {"batchItemFailures": []}


def produce(bootstrap: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        kind = "OrderPlaced" if i % MATCH_EVERY == 0 else "Heartbeat"
        producer.produce(TOPIC, key=f"k{i}".encode(), value=json.dumps({"type": kind, "n": i}).encode())
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(30)


def run(bootstrap: str, pushdown: bool, batch_size: int, group: str) -> tuple[Counted, int]:
    cfg = config(pushdown, group)
    counted = Counted()
    settings = PollerSettings(batch_size=batch_size, batching_window_seconds=0.2, idle_seconds=2.0)
    poller = Poller(cfg, bootstrap, counted, settings, stop_event=threading.Event(), notice=lambda _t: None)
    stats = poller.run()
    return counted, stats.records


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-sizes", default="10,100,500")
    args = ap.parse_args(argv)
    print("filter criteria with pushdown:", topic_filters(config(True, "g"), TOPIC).criteria())
    rows: list[tuple[int, str, float, float, int]] = []
    with tempfile.TemporaryDirectory() as state:
        kafka = start_kafka(Path(state))
        try:
            bootstrap = f"{HOST}:{kafka.port}"
            provision_kafka(config(False, "g"), bootstrap, partitions=3)
            produce(bootstrap, args.records)
            for size in (int(s) for s in args.batch_sizes.split(",")):
                for pushdown in (False, True):
                    results = [run(bootstrap, pushdown, size, f"bench-{size}-{pushdown}-{r}")
                               for r in range(args.rounds)]
                    assert all(read == args.records for _, read in results), "the poller did not read every record"
                    rows.append((size, "with" if pushdown else "without",
                                 statistics.median(c.invocations for c, _ in results),
                                 statistics.median(c.records for c, _ in results), args.rounds))
        finally:
            stop_process(kafka.pid)
    print(f"\n{args.records} records, 1 in {MATCH_EVERY} matching the route (median of {args.rounds} rounds)")
    print("| batch size | filter pushdown | invocations | records handed to the function |")
    print("|---:|---|---:|---:|")
    for size, mode, invocations, records, _ in rows:
        print(f"| {size} | {mode} | {invocations:.0f} | {records:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
