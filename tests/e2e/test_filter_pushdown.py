"""Filter pushdown through the local broker and poller: only matching records reach the function."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from bridge.config import BridgeConfig
from confluent_kafka import Producer

from bridge_local.poller import Poller, PollerSettings
from bridge_local.provision import provision_kafka
from tests.e2e.conftest import E2EStack

pytestmark = pytest.mark.e2e

TOPIC = "e2e-clicks"
CLUSTER_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/e2e/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-1"


def _config(pushdown: bool, group: str) -> BridgeConfig:
    return BridgeConfig.from_dict({
        "name": "e2e-pushdown",
        "source": {"kind": "msk", "topics": [TOPIC], "consumer_group_id": group, "filter_pushdown": pushdown,
                   "cluster_arn": CLUSTER_ARN},
        "destinations": [{"name": "out", "type": "sqs"}],
        "routes": [{"name": "placed", "match": {"body": {"type": "OrderPlaced"}}, "to": ["out"]}],
        "unmatched": {"action": "skip"},
    })


def test_filtered_records_are_committed_but_never_handed_to_the_function(stack: E2EStack) -> None:
    # given 200 records, every tenth an OrderPlaced, the rest heartbeats (and one that is not JSON)
    bootstrap = stack.state.bootstrap_servers
    provision_kafka(_config(False, "g"), bootstrap, partitions=2)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(200):
        value = b"not json" if i == 7 else json.dumps({"type": "OrderPlaced" if i % 10 == 0 else "Heartbeat"}).encode()
        producer.produce(TOPIC, key=f"k{i}".encode(), value=value)
    producer.flush(10)
    handed: dict[bool, list[dict[str, Any]]] = {False: [], True: []}
    for pushdown in (False, True):
        def handler(event: dict[str, Any], context: Any, pushdown: bool = pushdown) -> dict[str, Any]:
            handed[pushdown].extend(r for rs in event["records"].values() for r in rs)
            return {"batchItemFailures": []}

        poller = Poller(_config(pushdown, f"e2e-pushdown-{pushdown}"), bootstrap, handler,
                        PollerSettings(batch_size=10, batching_window_seconds=0.2, idle_seconds=1.5),
                        stop_event=threading.Event(), notice=lambda _t: None)
        stats = poller.run()
        # then: every record was read and committed either way
        assert stats.records == 200
        assert stats.filtered_out == (180 if pushdown else 0)
    # without pushdown the function sees all 200; with it only the 20 OrderPlaced records
    assert len(handed[False]) == 200
    assert len(handed[True]) == 20
    assert {r["offset"] for r in handed[True]} <= {r["offset"] for r in handed[False]}
