"""`bridge replay` (bridge_local.dlq_replay): which DLQ goes back where, SNS envelopes, FIFO order, Ctrl-C.

The queues are an in-memory `ReplayQueues` that keeps SQS's receive/hold/delete semantics; the same code
runs against MiniStack in tests/e2e/test_replay.py.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from bridge.config import SQS_MAX_MESSAGE_BYTES, load_config_file

from bridge_local.cli import main
from bridge_local.dlq_replay import (
    ReplayError,
    ReplayQueues,
    Resend,
    replay_dlq,
    replay_sources,
    resend_of,
    resolve_source,
)
from tests.helpers import DEV_CONFIG

CONFIG = load_config_file(DEV_CONFIG)
FULFILMENT_DLQ = resolve_source(CONFIG, "fulfilment-dlq")  # FIFO, a queue's own DLQ
BILLING_SUB_DLQ = resolve_source(CONFIG, "order-events-to-billing-dlq")  # a raw subscription's DLQ
TOPIC_ARN = f"arn:aws:sns:us-east-1:123456789012:{CONFIG.prefix}-order-events"


def _message(i: int, body: str = "", group: str | None = None, **attributes: str) -> dict[str, Any]:
    attrs = {"SentTimestamp": "1"} | ({"MessageGroupId": group} if group else {})
    return {"MessageId": f"m-{i}", "ReceiptHandle": f"h-{i}", "Body": body or f"body-{i}", "Attributes": attrs,
            "MessageAttributes": {k: {"DataType": "String", "StringValue": v} for k, v in attributes.items()}}


def _envelope(message: str, topic_arn: str = TOPIC_ARN, attributes: dict[str, dict[str, str]] | None = None) -> str:
    return json.dumps({"Type": "Notification", "MessageId": "sns-1", "TopicArn": topic_arn, "Message": message,
                       "Timestamp": "2026-12-02T06:00:00.000Z", "SignatureVersion": "1", "Signature": "x",
                       "MessageAttributes": attributes or {}})


@dataclass
class MemoryQueues:
    """A DLQ and a target queue in memory: received messages are held until deleted or released."""

    dlq: list[dict[str, Any]]
    sent: list[Resend] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    held: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)  # message ids the target refuses
    interrupt_on_delete: bool = False
    requests: list[int] = field(default_factory=list)  # entries per send request

    def receive(self, limit: int, hold_seconds: int) -> list[Mapping[str, Any]]:
        out: list[Mapping[str, Any]] = [m for m in self.dlq if m["ReceiptHandle"] not in self.held][:limit]
        self.held |= {m["ReceiptHandle"] for m in out}
        return out

    def send(self, resends: Sequence[Resend]) -> dict[str, str]:
        self.requests.append(len(resends))
        refused = {r.message_id: "KMS.AccessDeniedException: denied" for r in resends if r.message_id in self.refuse}
        self.sent += [r for r in resends if r.message_id not in refused]
        return refused

    def delete(self, receipt_handles: Sequence[str]) -> int:
        if self.interrupt_on_delete:
            raise KeyboardInterrupt
        self.deleted += receipt_handles
        self.dlq = [m for m in self.dlq if m["ReceiptHandle"] not in receipt_handles]
        self.held -= set(receipt_handles)
        return len(receipt_handles)

    def release(self, receipt_handles: Sequence[str]) -> None:
        self.held -= set(receipt_handles)

    def depth(self) -> int | None:
        return len(self.dlq)


def test_every_dlq_the_stack_creates_but_the_bridge_dlq_has_a_replay_source() -> None:
    # given: every queue `bridge inspect` lists as a DLQ (the config model's names)
    expected = {d.dlq_physical_name(CONFIG.prefix) for d in CONFIG.destinations if d.type == "sqs"}
    expected |= {CONFIG.subscription_dlq_name(d, s.queue) for d in CONFIG.destinations for s in d.subscriptions}
    expected |= {CONFIG.audit_queue_dlq_name, CONFIG.audit_subscription_dlq_name}

    # then: each has a source naming the queue its messages go back to
    sources = {s.dlq: s for s in replay_sources(CONFIG)}
    assert set(sources) == expected
    assert sources[CONFIG.audit_subscription_dlq_name].target == CONFIG.audit_queue_name
    assert sources[CONFIG.audit_queue_dlq_name].kind == "queue"
    assert (BILLING_SUB_DLQ.kind, BILLING_SUB_DLQ.target, BILLING_SUB_DLQ.raw) == (
        "subscription", f"{CONFIG.prefix}-billing", True)
    assert FULFILMENT_DLQ.fifo
    assert resolve_source(CONFIG, "audit-dlq").dlq == CONFIG.audit_queue_dlq_name


def test_the_bridge_dlq_and_unknown_names_are_refused_with_the_fix() -> None:
    with pytest.raises(ReplayError, match="holds parked records, not messages: replay them with bridge redrive"):
        resolve_source(CONFIG, "bridge-dlq")
    with pytest.raises(ReplayError, match=r"unknown DLQ 'nope'\. Fix: --from one of fulfilment-dlq\.fifo, "):
        resolve_source(CONFIG, "nope")


def test_a_queue_dlq_message_goes_back_as_it_was_with_its_group_and_the_dlq_message_id_as_dedup_id() -> None:
    resend = resend_of(_message(1, group="order-7", **{"record-id": "orders-0-7", "event-type": "OrderPlaced"}),
                       FULFILMENT_DLQ)
    assert resend == Resend("m-1", "body-1", {"record-id": {"DataType": "String", "StringValue": "orders-0-7"},
                                              "event-type": {"DataType": "String", "StringValue": "OrderPlaced"}},
                            "order-7", "m-1")


def test_a_raw_subscriptions_sns_envelope_is_unwrapped_with_its_attributes_as_raw_delivery_writes_them() -> None:
    blob = base64.b64encode(b"\x00\xff").decode()
    body = _envelope('{"order_id": "o-1"}', attributes={"event-type": {"Type": "String", "Value": "OrderPlaced"},
                                                       "total": {"Type": "Number", "Value": "12.5"},
                                                       "blob": {"Type": "Binary", "Value": blob}})
    resend = resend_of(_message(1, body), BILLING_SUB_DLQ)
    assert resend.unwrapped
    assert resend.body == '{"order_id": "o-1"}'
    assert resend.attributes == {"event-type": {"DataType": "String", "StringValue": "OrderPlaced"},
                                 "total": {"DataType": "Number", "StringValue": "12.5"},
                                 "blob": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}}


def test_a_raw_subscriptions_dlq_message_as_aws_writes_it_goes_back_unchanged() -> None:
    # given: what SNS puts in a raw-delivery subscription's DLQ, as recorded against AWS in LocalStack's
    # snapshot (tests/aws/services/sns/test_sns.snapshot.json, TestSNSSubscriptionSQS::
    # test_redrive_policy_sqs_queue_subscription[True], 24-08-2023): the raw body, the published attributes as
    # SQS message attributes (a Binary one as bytes), no envelope and no attributes of SNS's own
    message = {"MessageId": "m-1", "ReceiptHandle": "h-1", "Body": "test_dlq_after_sqs_endpoint_deleted",
               "Attributes": {"SenderId": "AIDA", "SentTimestamp": "1", "ApproximateReceiveCount": "1"},
               "MessageAttributes": {"attr1": {"DataType": "Number", "StringValue": "111"},
                                     "attr2": {"DataType": "Binary", "BinaryValue": b"\x02\x03\x04"}}}

    # when: it is replayed
    resend = resend_of(message, BILLING_SUB_DLQ)

    # then: body and attributes go back as they are, nothing unwrapped
    assert resend == Resend("m-1", "test_dlq_after_sqs_endpoint_deleted",
                            {"attr1": {"DataType": "Number", "StringValue": "111"},
                             "attr2": {"DataType": "Binary", "BinaryValue": b"\x02\x03\x04"}})
    assert not resend.unwrapped


def test_a_subscription_without_raw_delivery_gets_the_envelope_whole() -> None:
    source = resolve_source(CONFIG, "order-events-to-billing-dlq")
    not_raw = type(source)(**{**{f: getattr(source, f) for f in source.__slots__}, "raw": False})
    body = _envelope("hello")
    resend = resend_of(_message(1, body), not_raw)
    assert (resend.body, resend.unwrapped) == (body, False)


def test_an_envelope_from_another_topic_or_a_fifo_message_without_group_is_skipped_and_left() -> None:
    queues = MemoryQueues([_message(1, _envelope("x", "arn:aws:sns:us-east-1:123456789012:someone-elses")),
                           _message(2, _envelope("ok"))])
    report = replay_dlq(queues, BILLING_SUB_DLQ)
    assert report.skipped == [("m-1", "an SNS envelope from topic 'someone-elses', not "
                                      f"'{CONFIG.prefix}-order-events': not this subscription's")]
    assert [r.body for r in queues.sent] == ["ok"]
    assert [m["MessageId"] for m in queues.dlq] == ["m-1"]  # left in the DLQ, visible again
    assert queues.held == set()
    with pytest.raises(ValueError, match="no MessageGroupId on a message of a FIFO DLQ"):
        resend_of(_message(3), FULFILMENT_DLQ)


def test_a_dry_run_sends_and_deletes_nothing_and_releases_what_it_read() -> None:
    queues = MemoryQueues([_message(i, _envelope(f"m{i}")) for i in range(25)])
    port: ReplayQueues = queues  # the fake keeps the port's shape (mypy checks it)
    report = replay_dlq(port, BILLING_SUB_DLQ, dry_run=True)
    assert (report.received, report.replayed, report.unwrapped) == (25, 25, 25)
    assert (queues.sent, queues.deleted, queues.held) == ([], [], set())


def test_standard_messages_go_in_batches_of_ten_and_of_at_most_the_sqs_payload() -> None:
    big = "x" * (SQS_MAX_MESSAGE_BYTES // 2 - 100)  # two fit in one request, a third does not
    queues = MemoryQueues([_message(i, big if i < 4 else "") for i in range(14)])
    report = replay_dlq(queues, resolve_source(CONFIG, "analytics-dlq"))
    assert report.replayed == 14
    # received 10 (4 big, 6 small), then 4: never three big ones, never more than 10 entries in a request
    assert queues.requests == [2, 8, 4]
    assert queues.dlq == []


def test_a_fifo_group_whose_resend_failed_is_held_back_so_no_later_message_overtakes_it() -> None:
    # given: two groups; the target refuses group a's second message
    messages = [_message(1, group="a"), _message(2, group="b"), _message(3, group="a"), _message(4, group="a"),
                _message(5, group="b")]
    queues = MemoryQueues(messages, refuse={"m-3"})

    # when
    report = replay_dlq(queues, FULFILMENT_DLQ)

    # then: a's first and b's both went, in order; a's failed one and the one after it stayed
    assert [(r.group_id, r.message_id) for r in queues.sent] == [("a", "m-1"), ("b", "m-2"), ("b", "m-5")]
    assert report.failed == [("m-3", "KMS.AccessDeniedException: denied")]
    assert report.held_back == 1
    assert [m["MessageId"] for m in queues.dlq] == ["m-3", "m-4"]
    assert queues.held == set()  # released for the next run


def test_ctrl_c_between_resend_and_delete_loses_nothing_and_says_how_many_a_later_run_duplicates() -> None:
    # given: a run interrupted right after the target took the first request
    queues = MemoryQueues([_message(i) for i in range(3)], interrupt_on_delete=True)

    # when
    report = replay_dlq(queues, resolve_source(CONFIG, "analytics-dlq"))

    # then: all three were sent, none deleted, the count says so, and they are visible again
    assert report.interrupted
    assert report.sent_not_deleted == 3
    assert len(queues.dlq) == 3
    assert queues.held == set()
    # and: the next run sends them again (the duplicates announced) and empties the DLQ
    queues.interrupt_on_delete = False
    again = replay_dlq(queues, resolve_source(CONFIG, "analytics-dlq"))
    assert (again.replayed, len(queues.sent), queues.dlq) == (3, 6, [])


def test_replay_into_a_signed_only_queue_is_refused_before_anything_is_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(DEV_CONFIG), "--state-dir", "/nonexistent", "replay", "--from",
                 "payments-ledger-dlq"]) == 1
    err = capsys.readouterr().err
    assert "accepts only records signed by its accept_from producers" in err
    assert f"Fix: its consumers read {CONFIG.prefix}-payments-ledger-dlq.fifo itself" in err



def test_a_first_ctrl_c_ends_the_run_after_the_request_in_hand_with_nothing_left_half_done() -> None:
    # given: a run told to stop while its first request is being sent
    queues = MemoryQueues([_message(i) for i in range(30)])
    stop = []
    sent = queues.send

    def send_then_stop(resends: Sequence[Resend]) -> dict[str, str]:
        stop.append(True)
        return sent(resends)

    queues.send = send_then_stop  # type: ignore[method-assign]

    # when
    report = replay_dlq(queues, resolve_source(CONFIG, "analytics-dlq"), stopping=lambda: bool(stop))

    # then: that request was sent and deleted, nothing else was received, nothing is held
    assert report.interrupted
    assert (report.replayed, report.sent_not_deleted, len(queues.sent)) == (10, 0, 10)
    assert len(queues.dlq) == 20
    assert queues.held == set()
