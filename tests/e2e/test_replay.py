"""`bridge replay` against the local stack (MiniStack's SQS and SNS, the handler in-process), one test per DLQ kind:
a destination queue's DLQ (FIFO), a subscription's DLQ (SNS envelopes), the audit monitor's DLQ and the audit
subscription's DLQ."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import Any

import pytest

from bridge_local.cli import main
from tests.e2e.conftest import ROOT, E2EStack
from tests.helpers import kafka_event, kafka_record

pytestmark = pytest.mark.e2e


def _bridge(stack: E2EStack, *args: str) -> int:
    return main(["--state-dir", str(stack.state_dir), *args])


def _receive_all(stack: E2EStack, queue: str, *, delete: bool = True, visibility: int = 30) -> list[dict[str, Any]]:
    """Every message of a queue, in the order received (FIFO: in order per group); each once, even when a short
    visibility brings it back."""
    url = stack.queue_url(queue)
    out: dict[str, dict[str, Any]] = {}
    for _ in range(200):  # bounded
        got = stack.clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility,
                                                WaitTimeSeconds=0, AttributeNames=["All"],
                                                MessageAttributeNames=["All"]).get("Messages", [])
        fresh = [m for m in got if m["MessageId"] not in out]
        if not fresh:
            break
        out.update((m["MessageId"], m) for m in fresh)
        if delete:
            stack.clients.sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(fresh)])
    return list(out.values())


def _fail_consumer(stack: E2EStack, queue: str, times: int) -> None:
    """A consumer that receives every message `times` times and never deletes one: SQS moves them to the DLQ."""
    url = stack.queue_url(queue)
    for _ in range(times):
        for _ in range(20):  # every message once per round (bounded)
            got = stack.clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                                    WaitTimeSeconds=0).get("Messages", [])
            if not got:
                break


def _shape(m: dict[str, Any]) -> tuple[str, dict[str, Any], str | None]:
    """What a consumer sees of a message: body, attributes, FIFO group."""
    attributes = {k: (v["DataType"], v.get("StringValue", v.get("BinaryValue")))
                  for k, v in (m.get("MessageAttributes") or {}).items()}
    return m["Body"], attributes, (m.get("Attributes") or {}).get("MessageGroupId")


def test_a_fifo_destinations_dlq_goes_back_to_its_queue_in_group_order_with_its_attributes(
        clean: E2EStack, capsys: pytest.CaptureFixture[str]) -> None:
    # given: orders for two order ids delivered to fulfilment (FIFO, group = key), which its consumer then fails
    stack = clean
    config = stack.config
    queue = next(d for d in config.destinations if d.name == "fulfilment")
    records = [kafka_record("orders", 0, offset, key=f"order-{offset % 2}", value=json.dumps({"n": offset}),
                            headers=[("event-type", "OrderPlaced")]) for offset in range(6)]
    summary = stack.handler(kafka_event(records), None)["summary"]
    assert summary["delivered"]["fulfilment"] == 6
    delivered = _receive_all(stack, queue.physical_name(config.prefix), delete=False, visibility=0)
    _fail_consumer(stack, queue.physical_name(config.prefix), queue.max_receive_count + 1)
    assert len(_receive_all(stack, queue.dlq_physical_name(config.prefix), delete=False, visibility=0)) == 6

    # and: inspect says what to run
    assert _bridge(stack, "inspect") == 0
    assert (f"{queue.dlq_physical_name(config.prefix)} holds 6 messages: once the cause is fixed, bridge replay "
            "--from fulfilment-dlq.fifo --dry-run") in capsys.readouterr().out

    # when: a dry run, then the replay
    assert _bridge(stack, "replay", "--from", "fulfilment-dlq", "--dry-run") == 0
    assert "dry run: would replay 6 of 6 messages" in capsys.readouterr().out
    assert _bridge(stack, "replay", "--from", "fulfilment-dlq") == 0

    # then: the queue holds them again as its consumers first got them, in order within each group
    out = capsys.readouterr().out
    assert "replayed 6 of 6 messages from" in out
    assert "2 FIFO groups, order kept within each" in out
    again = _receive_all(stack, queue.physical_name(config.prefix))
    assert sorted(map(_shape, again)) == sorted(map(_shape, delivered))
    for group in ("order-0", "order-1"):
        assert [json.loads(m["Body"]) for m in again if _shape(m)[2] == group] == [
            json.loads(m["Body"]) for m in delivered if _shape(m)[2] == group]
    # and: the DLQ is empty
    assert _receive_all(stack, queue.dlq_physical_name(config.prefix)) == []


def test_a_subscription_dlq_goes_into_the_subscribed_queue_as_sns_raw_delivery_would_have_put_it(
        clean: E2EStack, capsys: pytest.CaptureFixture[str]) -> None:
    # given: one publish to order-events; analytics and billing (raw subscriptions) got it, and a queue subscribed
    # without raw delivery got SNS's envelope of it
    stack = clean
    config = stack.config
    sqs, sns = stack.clients.sqs, stack.clients.sns
    topic_arn = next(t["TopicArn"] for t in sns.list_topics()["Topics"]
                     if t["TopicArn"].endswith(f":{config.prefix}-order-events"))
    probe_url = sqs.create_queue(QueueName=f"{config.prefix}-envelope-probe")["QueueUrl"]
    probe_arn = sqs.get_queue_attributes(QueueUrl=probe_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    subscription = sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=probe_arn,
                                 ReturnSubscriptionArn=True)["SubscriptionArn"]
    try:
        sns.publish(TopicArn=topic_arn, Message='{"order_id": "o-1", "total": 12.5}', MessageAttributes={
            "event-type": {"DataType": "String", "StringValue": "OrderPlaced"},
            "record-id": {"DataType": "String", "StringValue": "orders-0-42"},
            "amount": {"DataType": "Number", "StringValue": "12.5"}})
        envelope = _receive_all(stack, f"{config.prefix}-envelope-probe")[0]["Body"]
    finally:
        sns.unsubscribe(SubscriptionArn=subscription)
        sqs.delete_queue(QueueUrl=probe_url)
    as_delivered = [_shape(m) for m in _receive_all(stack, f"{config.prefix}-analytics")]
    assert _receive_all(stack, f"{config.prefix}-billing")  # billing lost it: say its queue policy refused SNS
    # ... and SNS kept the envelope in billing's subscription DLQ (sent here as SNS would: MiniStack does not
    # route failed deliveries to a subscription DLQ)
    dlq = config.subscription_dlq_name(config.destination("order-events"), "billing")
    sqs.send_message(QueueUrl=stack.queue_url(dlq), MessageBody=envelope)

    # when
    assert _bridge(stack, "replay", "--from", "order-events-to-billing-dlq") == 0

    # then: billing holds exactly what raw delivery gave analytics
    assert "1 SNS envelope unwrapped" in capsys.readouterr().out
    assert [_shape(m) for m in _receive_all(stack, f"{config.prefix}-billing")] == as_delivered
    assert _receive_all(stack, dlq) == []


def test_the_audit_monitors_dlq_and_the_audit_subscriptions_dlq_go_back_to_the_monitor_queue(
        clean: E2EStack, capsys: pytest.CaptureFixture[str]) -> None:
    # given: a batch's audit event in the monitor queue, which its consumer then fails
    stack = clean
    config = stack.config
    stack.handler(kafka_event([kafka_record("orders", 0, 1, headers=[("event-type", "OrderPlaced")])]), None)
    audit = _receive_all(stack, config.audit_queue_name, delete=False, visibility=0)
    assert len(audit) == 1
    _fail_consumer(stack, config.audit_queue_name, 6)
    assert len(_receive_all(stack, config.audit_queue_dlq_name, delete=False, visibility=0)) == 1

    # when / then: the monitor's DLQ goes back to the monitor queue
    assert _bridge(stack, "replay", "--from", "audit-dlq") == 0
    back = _receive_all(stack, config.audit_queue_name)
    assert [_shape(m) for m in back] == [_shape(m) for m in audit]

    # given: the same audit event as SNS keeps it when it cannot deliver into the monitor queue
    envelope = json.dumps({"Type": "Notification", "MessageId": "5f1c", "TopicArn":
                           f"arn:aws:sns:us-east-1:000000000000:{config.audit_topic_name}",
                           "Message": back[0]["Body"], "Timestamp": "2026-12-02T06:00:00.000Z",
                           "MessageAttributes": {}})
    stack.clients.sqs.send_message(QueueUrl=stack.queue_url(config.audit_subscription_dlq_name), MessageBody=envelope)

    # when / then: the audit subscription's DLQ goes to the monitor queue, unwrapped (raw delivery)
    capsys.readouterr()
    assert _bridge(stack, "replay", "--from", "audit-subscription-dlq", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["from"], doc["to"], doc["replayed"], doc["unwrapped_sns_envelopes"]) == (
        config.audit_subscription_dlq_name, config.audit_queue_name, 1, 1)
    assert [m["Body"] for m in _receive_all(stack, config.audit_queue_name)] == [back[0]["Body"]]
    assert _receive_all(stack, config.audit_subscription_dlq_name) == []


def test_ctrl_c_during_a_replay_loses_nothing_and_leaves_nothing_in_flight(clean: E2EStack) -> None:
    # given: 500 messages in analytics' DLQ
    stack = clean
    config = stack.config
    dlq, target = f"{config.prefix}-analytics-dlq", f"{config.prefix}-analytics"
    for batch in range(50):
        stack.clients.sqs.send_message_batch(QueueUrl=stack.queue_url(dlq), Entries=[
            {"Id": str(i), "MessageBody": json.dumps({"n": batch * 10 + i})} for i in range(10)])

    # when: Ctrl-C as soon as the replay has said what it starts
    replay = subprocess.Popen([sys.executable, "-m", "bridge_local.cli", "--state-dir", str(stack.state_dir), "replay",
                               "--from", "analytics-dlq"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    assert replay.stdout is not None
    assert replay.stdout.readline().startswith("replaying ")
    replay.send_signal(signal.SIGINT)
    _out, err = replay.communicate(timeout=120)

    # then: it stopped, said so, and every message is in exactly one of the two queues (none hidden in flight),
    # the queue holding at most the duplicates it announced
    assert replay.returncode == 130, err
    assert "interrupted" in err
    left = {json.loads(m["Body"])["n"] for m in _receive_all(stack, dlq)}
    moved = [json.loads(m["Body"])["n"] for m in _receive_all(stack, target)]
    assert left | set(moved) == set(range(500))
    announced = int(err.split(" resent and not yet deleted")[0].rsplit(" ", 2)[-2]) if "resent and not" in err else 0
    assert len(moved) - len(set(moved)) <= announced
    assert len(left & set(moved)) <= announced
