"""Checkpointed runs (production's default) on the one-thread path, against the local AWS (MiniStack over
HTTP): the SQS and SNS requests left in flight on the direct path's connections by the planning thread, the
checkpoint writes made to a real DynamoDB table on the writer thread (bridge.adapters.checkpoint_writer),
and the redelivered batch skipping everything they recorded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge.delivery import DeliveryRun, MultiplexedRun
from bridge.service import Bridge

from tests.helpers import kafka_event, kafka_record
from tests.integration.conftest import Deployed
from tests.integration.test_checkpoints_moto import checkpointed

pytestmark = pytest.mark.integration

Deploy = Callable[..., Deployed]


def test_a_checkpointed_batch_goes_out_from_one_thread_and_its_redelivery_sends_nothing_again(
        deploy: Deploy, tmp_path: Path) -> None:
    # given: a checkpointed bridge over the real adapters; 120 records to the topic (and its queue), 120 in 12
    # key groups to the FIFO queue, 120 to the standard queue
    env, dynamodb = checkpointed(deploy, tmp_path, "it-cp1")
    records = [kafka_record(topic, p, i, key=f"k{i % 12}", value=json.dumps({"n": i}))
               for p, topic in enumerate(("orders", "ledger", "bulk")) for i in range(120)]
    event = kafka_event(records)
    bridge = Bridge(env.config, env.settings, sleep=lambda _s: None)
    bridge.handle(kafka_event([kafka_record("bulk", 9, 0), kafka_record("orders", 9, 0),
                               kafka_record("ledger", 9, 0)]))  # each client's first two requests: botocore
    bridge.handle(kafka_event([kafka_record("bulk", 9, 1), kafka_record("orders", 9, 1),
                               kafka_record("ledger", 9, 1)]))
    for queue in ("it-cp1-dev-work", "it-cp1-dev-notifications-copy", "it-cp1-dev-ordered.fifo"):
        env.drain(queue)
    runs: list[DeliveryRun] = []
    threads: set[str] = set()
    start = bridge._deliverer.start

    def noted(*args: Any, **kwargs: Any) -> DeliveryRun:
        runs.append(start(*args, **kwargs))
        return runs[-1]

    bridge._deliverer.start = noted  # type: ignore[method-assign]
    table_items = dynamodb.scan(TableName=env.config.checkpoint_table_name, Select="COUNT")["Count"]

    def watch(frame: Any, event: str, arg: Any) -> None:
        threads.add(threading.current_thread().name)

    # when
    threading.settrace(watch)
    try:
        first = bridge.handle(event)
    finally:
        threading.settrace(None)  # type: ignore[arg-type]

    # then: one thread sent (no send thread ran; the checkpoint writer did), everything was delivered once,
    # FIFO groups in Kafka order, and the writes covered several requests each
    assert runs
    assert {type(r) for r in runs} == {MultiplexedRun}
    assert "bridge-checkpoints" in threads
    assert not [t for t in threads if t.startswith("bridge-send")], threads
    assert first.summary["delivered"] == {"notifications": 120, "ordered": 120, "work": 120}
    assert first.summary["checkpoint"] == {"on": True, "skipped": 0, "errors": 0}
    work = env.drain("it-cp1-dev-work")
    copies = env.drain("it-cp1-dev-notifications-copy")
    ordered = env.drain("it-cp1-dev-ordered.fifo")
    assert sorted(json.loads(m["Body"])["n"] for m in work) == list(range(120))
    assert sorted(json.loads(m["Body"])["n"] for m in copies) == list(range(120))
    by_key: dict[int, list[int]] = {}  # the group is the record's key, k{n % 12}
    for m in ordered:
        n = json.loads(m["Body"])["n"]
        by_key.setdefault(n % 12, []).append(n)
    assert sorted(n for ns in by_key.values() for n in ns) == list(range(120))
    assert all(ns == sorted(ns) for ns in by_key.values()), by_key
    items = dynamodb.scan(TableName=env.config.checkpoint_table_name, Select="COUNT")["Count"] - table_items
    requests = 120 // 4 * 2 + 120 // 10  # standard: 4 messages a request with checkpoints on; FIFO: 10
    assert 0 < items < requests, (items, requests)

    # when: the mapping delivers the batch again
    again = bridge.handle(event)

    # then: every record skipped as delivered, nothing sent again
    assert again.summary["checkpoint"] == {"on": True, "skipped": 360, "errors": 0}
    assert env.drain("it-cp1-dev-work") == []
    assert env.drain("it-cp1-dev-notifications-copy") == []
    assert env.drain("it-cp1-dev-ordered.fifo") == []
