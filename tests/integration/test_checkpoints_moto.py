"""Checkpoints against a real DynamoDB API (moto_server over HTTP): the adapter's calls, and the bridge
skipping on redelivery what it delivered, through the real SQS/SNS/DynamoDB adapters."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from bridge.adapters.dynamodb import MAX_BATCH_WRITE_ITEMS, DynamoDbCheckpointStore
from bridge.checkpoints import ProgressEntry
from bridge.parking import ParkingFailedError
from bridge.service import Bridge

from bridge_local.checkpoint_table import ensure_checkpoint_table
from bridge_local.redrive import LEDGER_TTL_SECONDS, MAX_BATCH_GET_KEYS, DynamoDbRedriveLedger
from tests.helpers import kafka_event, kafka_record
from tests.integration.conftest import HERE, Deployed

pytestmark = pytest.mark.integration

Deploy = Callable[..., Deployed]


def checkpointed(deploy: Deploy, tmp_path: Path, name: str) -> tuple[Deployed, Any]:
    doc = yaml.safe_load((HERE / "bridge.yaml").read_text(encoding="utf-8"))
    doc["settings"] = {"checkpoints": "on"}
    source = tmp_path / "checkpointed.yaml"
    source.write_text(yaml.safe_dump(doc), encoding="utf-8")
    env = deploy(source, name=name)
    dynamodb = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=env.endpoint)
    table = ensure_checkpoint_table(dynamodb, env.config)
    env.settings = dataclasses.replace(env.settings, checkpoint_table=table)
    return env, dynamodb


def test_store_writes_in_chunks_of_25_and_reads_every_entry_of_a_shard(deploy: Deploy, tmp_path: Path) -> None:
    env, dynamodb = checkpointed(deploy, tmp_path, "it-cp-store")
    store = DynamoDbCheckpointStore(dynamodb, env.config.checkpoint_table_name, 3600)
    entries = [ProgressEntry("orders-0/0", "delivered", f"d{i % 3}", (f"{i}.1767225600000",))
               for i in range(MAX_BATCH_WRITE_ITEMS + 5)]
    store.write([*entries, ProgressEntry("orders-1/0", "parked", "", ("7.1",))])
    got = store.read(["orders-0/0"])
    assert sorted(got, key=lambda e: int(e.tokens[0].split(".")[0])) == entries
    assert store.read(["orders-1/0", "nothing/0"]) == [ProgressEntry("orders-1/0", "parked", "", ("7.1",))]
    item = dynamodb.scan(TableName=env.config.checkpoint_table_name, Limit=1)["Items"][0]
    assert int(item["expires_at"]["N"]) > 0


def test_retry_after_parking_failed_sends_only_what_was_not_delivered(deploy: Deploy, tmp_path: Path) -> None:
    # given: 10 routable records and 1 unroutable one, and the bridge DLQ missing
    env, _ = checkpointed(deploy, tmp_path, "it-cp-retry")
    records = [kafka_record("bulk", 0, i, value=json.dumps({"n": i})) for i in range(10)]
    records.append(kafka_record("elsewhere", 0, 0))
    event = kafka_event(records)
    dlq_url = env.url(env.config.bridge_dlq_name)
    env.sqs.delete_queue(QueueUrl=dlq_url)
    bridge = Bridge(env.config, env.settings, sleep=lambda _s: None)
    with pytest.raises(ParkingFailedError):
        bridge.handle(event)

    # when: the DLQ is back and the batch is redelivered
    env.sqs.create_queue(QueueName=env.config.bridge_dlq_name)
    report = bridge.handle(event)

    # then: each record reached "work" once, the unroutable one is parked once
    assert len(env.drain("it-cp-retry-dev-work")) == 10
    assert len(env.drain(env.config.bridge_dlq_name)) == 1
    assert report.summary["checkpoint"] == {"on": True, "skipped": 10, "errors": 0}


def test_redrive_ledger_round_trips_in_the_checkpoint_table_apart_from_the_progress(deploy: Deploy,
                                                                                      tmp_path: Path) -> None:
    # given: the checkpoint table, and a ledger whose clock the test moves
    env, dynamodb = checkpointed(deploy, tmp_path, "it-cp-ledger")
    table = env.config.checkpoint_table_name
    now = [1_767_225_600.0]
    ledger = DynamoDbRedriveLedger(dynamodb, table, clock=lambda: now[0])
    digests = [f"{i:064x}" for i in range(MAX_BATCH_GET_KEYS + 30)]  # more than one BatchGetItem

    # when: a run records what it handed over
    ledger.record(digests)

    ledger.record_records({"orders-0-7@1767225600000": "a" * 64, "orders-0-8@1767225600000": "b" * 64})

    # then: a later run finds exactly those, until they expire
    assert ledger.replayed([*digests, "f" * 64]) == set(digests)
    assert ledger.replayed_records(["orders-0-7@1767225600000", "orders-0-9@1767225600000"]) == {
        "orders-0-7@1767225600000": "a" * 64}
    assert DynamoDbCheckpointStore(dynamodb, table, 3600).read(["orders-0/0"]) == []  # not the function's shards
    now[0] += LEDGER_TTL_SECONDS + 1
    assert ledger.replayed(digests[:3]) == set()
    assert ledger.replayed_records(["orders-0-7@1767225600000"]) == {}
