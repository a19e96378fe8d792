"""An Avro topic routed on body fields: broker -> local poller, decoding as the mapping does -> handler -> MiniStack."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
from bridge.config import BridgeConfig, load_config_file
from confluent_kafka import Producer

from bridge_local.poller import Poller, PollerSettings, load_real_handler
from bridge_local.provision import provision_all
from bridge_local.schemas import encode_confluent
from tests.e2e.conftest import E2EStack

pytestmark = pytest.mark.e2e

HERE = Path(__file__).resolve().parent
SCHEMA = json.loads((HERE / "schemas" / "order.avsc").read_text(encoding="utf-8"))


def _orders() -> list[dict[str, Any]]:
    regions = ["EU-west", "US-east", "EU-north", "AP-south"]
    return [{"order_id": f"o-{i}", "region": regions[i % 4], "total": float(250 * (i % 8)),
             "items": [f"sku-{i}"], "coupon": None if i % 3 else "WELCOME"} for i in range(40)]


def queue(config: BridgeConfig, destination: str) -> str:
    return config.destination(destination).physical_name(config.prefix)


def _receive_all(stack: E2EStack, queue: str) -> list[dict[str, Any]]:
    sqs = stack.clients.sqs
    url = stack.queue_url(queue)
    out: list[dict[str, Any]] = []
    while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"],
                                      WaitTimeSeconds=0).get("Messages", []):
        out += msgs
        sqs.delete_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                                                         for i, m in enumerate(msgs)])
    return out


def test_avro_records_are_decoded_and_routed_on_body_fields(stack: E2EStack) -> None:
    # given: the Avro config provisioned beside the dev one, and 40 orders serialized with schema id 7
    config_path = HERE / "avro.yaml"
    config = load_config_file(config_path)
    provision_all(config, stack.state.bootstrap_servers, stack.state.endpoint_url, partitions=2)
    producer = Producer({"bootstrap.servers": stack.state.bootstrap_servers})
    orders = _orders()
    for order in orders:
        producer.produce("avro-orders", key=order["order_id"].encode(), value=encode_confluent(SCHEMA, 7, order))
    producer.flush(10)
    try:
        handler = load_real_handler(stack.state, config, str(config_path), log_level="ERROR")
        poller = Poller(config, stack.state.bootstrap_servers, handler,
                        PollerSettings(batch_size=25, batching_window_seconds=0.2, idle_seconds=1.5),
                        stop_event=threading.Event(), notice=lambda _t: None, schema_base_dir=HERE)
        # when
        stats = poller.run()
    finally:
        # the session's other tests run the dev config's handler
        load_real_handler(stack.state, stack.config, str(stack.config_path), log_level="ERROR")
    # then: every record read; routed by total and region, which exist only inside the Avro body
    assert stats.records == len(orders)
    big = {(doc := json.loads(m["Body"]))["order_id"]: doc for m in _receive_all(stack, queue(config, "big-orders"))}
    eu = {json.loads(m["Body"])["order_id"] for m in _receive_all(stack, queue(config, "eu-orders"))}
    assert set(big) == {o["order_id"] for o in orders if o["total"] >= 1000}
    assert eu == {o["order_id"] for o in orders if o["region"].startswith("EU-")}
    # the function received (and sent on) the decoded JSON document, not the Avro bytes
    assert all(big[o["order_id"]] == o for o in orders if o["order_id"] in big)
    assert stats.skipped == sum(1 for o in orders if o["total"] < 1000 and not o["region"].startswith("EU-"))
    print(f"\nAvro topic: {len(orders)} records, {len(big)} to big-orders (total >= 1000), "
          f"{len(eu)} to eu-orders (region EU-*), {stats.skipped} skipped")
