"""The bridge against MiniStack (the local AWS) over real HTTP: the must-show scenarios and the handler entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import MAX_BATCH_ENTRIES, SNS_DEFAULT_MAX_MESSAGE_BYTES
from bridge.service import Bridge

from tests.helpers import DEV_CONFIG, ROOT, kafka_event, kafka_record, load_event
from tests.integration.conftest import Deployed

pytestmark = pytest.mark.integration

Deploy = Callable[..., Deployed]


def bodies(messages: list[dict[str, Any]]) -> list[Any]:
    return [json.loads(m["Body"]) for m in messages]


def test_must_show_a_100_records_one_too_large_for_sns_99_delivered_1_parked(deploy: Deploy) -> None:
    # given: 100 order records for the SNS destination, one of them larger than SNS accepts
    env = deploy(name="it-a")
    records = [kafka_record(partition=i % 4, offset=i, key=f"order-{i}", value=json.dumps({"n": i}),
                            headers=[("event-type", "OrderPlaced")]) for i in range(100)]
    records[42] = kafka_record(partition=2, offset=42, key="order-42",
                               value=json.dumps({"blob": "x" * SNS_DEFAULT_MAX_MESSAGE_BYTES}))
    event = kafka_event(records)
    # when
    report = Bridge(env.config, env.settings).handle(event)
    # then: 99 reached the topic (and its subscribed queue), 1 is in the bridge DLQ, the audit counts both
    assert report.summary["delivered"] == {"notifications": 99}
    assert report.summary["parked"] == {"too_large": 1}
    copies = env.drain("it-a-dev-notifications-copy")
    assert len(copies) == 99
    assert {m["MessageAttributes"]["event-type"]["StringValue"] for m in copies} == {"OrderPlaced"}
    (parked,) = bodies(env.drain("it-a-dev-bridge-dlq"))
    assert parked["reason"] == "too_large"
    assert parked["record_id"] == "orders-2-42"
    assert parked["destination"] == "notifications"
    assert parked["route"] == "notify"
    assert parked["record"] == event["records"]["orders-2"][10]
    (audit,) = bodies(env.drain("it-a-dev-audit-monitor"))
    assert (audit["records"], audit["delivered"], audit["parked"]) == (100, {"notifications": 99},
                                                                       {"too_large": 1})
    print(f"\nmust-show (a, local AWS): delivered={audit['delivered']} parked={audit['parked']} "
          f"dlq=1 subscribed-queue={len(copies)}")


def test_must_show_b_1000_small_records_make_100_send_message_batch_calls_against_the_local_aws(deploy: Deploy) -> None:
    env = deploy(name="it-b")
    calls: list[int] = []
    env.sqs.meta.events.register("before-parameter-build.sqs.SendMessageBatch",
                                 lambda params, **kw: calls.append(len(params["Entries"])))
    bridge = Bridge(env.config, env.settings, sqs=SqsBatchSender(env.sqs))
    records = [kafka_record(topic="bulk", partition=i % 3, offset=i, value=f'{{"n": {i}}}') for i in range(1000)]

    report = bridge.handle(kafka_event(records))

    # Counted, not received: the depth is what SQS reports.
    attrs = env.sqs.get_queue_attributes(QueueUrl=env.url("it-b-dev-work"),
                                         AttributeNames=["ApproximateNumberOfMessages"])
    received = int(attrs["Attributes"]["ApproximateNumberOfMessages"])
    assert report.summary["delivered"] == {"work": 1000}
    work_calls = calls  # the sender is used for the DLQ too, but nothing is parked here
    assert received == 1000
    assert len(work_calls) == -(-1000 // MAX_BATCH_ENTRIES) == 100
    print(f"\nmust-show (b, local AWS): 1000 records -> {len(work_calls)} SendMessageBatch calls")


def test_must_show_c_fifo_batch_handled_twice_is_in_the_queue_once_in_key_order(deploy: Deploy) -> None:
    env = deploy(name="it-c")
    records = [kafka_record(topic="ledger", partition=0, offset=i, key=f"acct-{i % 3}",
                            value=json.dumps({"seq": i})) for i in range(25)]

    first = Bridge(env.config, env.settings).handle(kafka_event(records))
    second = Bridge(env.config, env.settings).handle(kafka_event(records))  # Lambda redelivers the batch

    assert first.summary["delivered"] == second.summary["delivered"] == {"ordered": 25}
    messages = env.drain("it-c-dev-ordered.fifo")
    seqs = [json.loads(m["Body"])["seq"] for m in messages]
    assert sorted(seqs) == list(range(25))  # each record exactly once
    for key in range(3):
        in_group = [s for s in seqs if s % 3 == key]
        assert in_group == sorted(in_group)  # Kafka's order kept per key
    print(f"\nmust-show (c, local AWS): 2 x 25 sends -> {len(messages)} messages in the FIFO queue")


def test_fifo_re_sends_are_dropped_even_after_the_first_copies_were_consumed(deploy: Deploy) -> None:
    # Why checkpoint_in_flight leaves FIFO lanes alone: a crash's re-sends reach a FIFO queue whose
    # consumer may already have received and deleted the first copies. SQS drops a message whose
    # deduplication id it saw within 5 minutes, deleted or not; MiniStack (the fault tier's AWS) too.
    env = deploy(name="it-f")
    records = [kafka_record(topic="ledger", partition=0, offset=i, key=f"acct-{i % 3}",
                            value=json.dumps({"seq": i})) for i in range(25)]
    Bridge(env.config, env.settings).handle(kafka_event(records))
    assert len(env.drain("it-f-dev-ordered.fifo")) == 25  # received and deleted

    Bridge(env.config, env.settings).handle(kafka_event(records))  # the batch again, after a crash

    assert env.drain("it-f-dev-ordered.fifo") == []


def test_lambda_handler_in_process_with_the_dev_config_and_no_payload_in_logs(deploy: Deploy, tmp_path: Any) -> None:
    # given: the function's environment pointed at the local AWS, as the local poller runs it
    env = deploy(DEV_CONFIG, name="it-dev")
    out = tmp_path / "result.json"
    script = (
        "import json, sys; from bridge.handler import lambda_handler; from tests.helpers import load_event; "
        f"json.dump(lambda_handler(load_event('msk'), None), open({str(out)!r}, 'w'))"
    )
    # when: a fresh interpreter, so the handler's cold start is exercised for real
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env.env(), capture_output=True,
                          text=True, timeout=60, check=False)
    # then
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["batchItemFailures"] == []
    assert result["summary"]["delivered"] == {"fulfilment": 2, "order-events": 2, "fraud-review": 1,
                                              "stock-alerts": 1}
    assert len(env.drain("it-dev-dev-fulfilment.fifo")) == 2
    assert len(env.drain("it-dev-dev-analytics")) == 2  # SNS -> SQS subscription
    assert len(env.drain("it-dev-dev-billing")) == 2  # filter policy event-type OrderPlaced
    assert [b["reason"] for b in bodies(env.drain("it-dev-dev-bridge-dlq"))] == ["unroutable"]
    assert len(env.drain("it-dev-dev-audit-monitor")) == 1
    logs = proc.stdout
    assert '"correlation_id"' in logs
    assert "RecordsIn" in logs
    for record in load_event("msk")["records"]["orders-0"]:
        assert record["value"] not in logs
        assert "order_id" not in logs


def test_lambda_handler_rejects_a_console_test_event_in_one_line(deploy: Deploy) -> None:
    env = deploy(DEV_CONFIG, name="it-inv")
    script = "from bridge.handler import lambda_handler; lambda_handler({'key1': 'value1'}, None)"

    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env.env(), capture_output=True,
                          text=True, timeout=60, check=False)

    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 1
    assert last.startswith("bridge.records.InvalidEventError: This function expects a Kafka event-source event")
