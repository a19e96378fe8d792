"""Adapters against botocore: exact request shapes (Stubber) and real request counting (event hooks)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import (
    EndpointConnectionError,
    MissingParametersError,
    ParamValidationError,
    UnknownParameterError,
)
from botocore.session import get_session
from botocore.stub import Stubber
from bridge.adapters import errors
from bridge.adapters.batching import batch_outcome
from bridge.adapters.errors import call_error
from bridge.adapters.s3 import S3ObjectStore
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import SNS_DEFAULT_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES
from bridge.delivery import Deliverer, EntryFailure, SendCallError, Target
from bridge.envelope import OutgoingMessage
from bridge.parking import ObjectStoreError
from bridge.service import Bridge

from tests.helpers import (
    FakeKeys,
    FakeSender,
    FakeStore,
    RawBody,
    kafka_event,
    kafka_record,
    make_config,
    make_settings,
)

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/t-ordered.fifo"
TOPIC = "arn:aws:sns:us-east-1:123456789012:t-feed"


def client(service: str) -> Any:
    return boto3.client(service, region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def msg(i: int, group: str | None = None, dedup: str | None = None) -> OutgoingMessage:
    attrs = (("correlation-id", f"c{i}"), ("record-id", f"orders-0-{i}"))
    return OutgoingMessage(f"orders-0-{i}", "d", f"body-{i}", attrs, f"c{i}", 10, group, dedup)


def attrs(i: int) -> dict[str, Any]:
    return {"correlation-id": {"DataType": "String", "StringValue": f"c{i}"},
            "record-id": {"DataType": "String", "StringValue": f"orders-0-{i}"}}


def test_sqs_send_message_batch_request_shape_and_failed_entries() -> None:
    sqs = client("sqs")
    target = Target("ordered", "sqs", URL, SQS_MAX_MESSAGE_BYTES, fifo=True)
    with Stubber(sqs) as stub:
        stub.add_response("send_message_batch", {
            "Successful": [{"Id": "0", "MessageId": "m0", "MD5OfMessageBody": "x"}],
            "Failed": [{"Id": "1", "SenderFault": True, "Code": "InvalidParameterValue", "Message": "bad"}],
        }, {"QueueUrl": URL, "Entries": [
            {"Id": "0", "MessageBody": "body-0", "MessageAttributes": attrs(0), "MessageGroupId": "g0",
             "MessageDeduplicationId": "d0"},
            {"Id": "1", "MessageBody": "body-1", "MessageAttributes": attrs(1), "MessageGroupId": "g1",
             "MessageDeduplicationId": "d1"},
        ]})

        outcome = SqsBatchSender(sqs).send_batch(target, [msg(0, "g0", "d0"), msg(1, "g1", "d1")])

    assert outcome.failures == (EntryFailure(1, "InvalidParameterValue", "bad", True),)


def test_sns_publish_batch_request_shape() -> None:
    sns = client("sns")
    target = Target("feed", "sns", TOPIC, SNS_DEFAULT_MAX_MESSAGE_BYTES)
    with Stubber(sns) as stub:
        stub.add_response("publish_batch", {"Successful": [{"Id": "0", "MessageId": "m0"}], "Failed": []}, {
            "TopicArn": TOPIC,
            "PublishBatchRequestEntries": [{"Id": "0", "Message": "body-0", "MessageAttributes": attrs(0)}],
        })

        outcome = SnsBatchSender(sns).send_batch(target, [msg(0)])

    assert outcome.failures == ()


def test_sns_fifo_publish_batch_carries_group_and_dedup_ids_and_maps_failed_entries() -> None:
    sns = client("sns")
    target = Target("feed", "sns", f"{TOPIC}.fifo", SNS_DEFAULT_MAX_MESSAGE_BYTES, fifo=True)
    with Stubber(sns) as stub:
        stub.add_response("publish_batch", {
            "Successful": [{"Id": "1", "MessageId": "m1"}],
            "Failed": [{"Id": "0", "Code": "InternalError", "SenderFault": False}],
        }, {"TopicArn": f"{TOPIC}.fifo", "PublishBatchRequestEntries": [
            {"Id": "0", "Message": "body-0", "MessageAttributes": attrs(0), "MessageGroupId": "g0",
             "MessageDeduplicationId": "d0"},
            {"Id": "1", "Message": "body-1", "MessageAttributes": attrs(1), "MessageGroupId": "g0",
             "MessageDeduplicationId": "d1"},
        ]})

        outcome = SnsBatchSender(sns).send_batch(target, [msg(0, "g0", "d0"), msg(1, "g0", "d1")])

    assert outcome.failures == (EntryFailure(0, "InternalError", "", False),)


@pytest.mark.parametrize(("code", "status", "retryable"), [
    ("ThrottlingException", 400, True), ("InternalError", 500, True), ("AccessDenied", 403, False),
    ("AWS.SimpleQueueService.NonExistentQueue", 400, False),
])
def test_whole_call_errors_become_send_call_errors(code: str, status: int, retryable: bool) -> None:
    sqs = client("sqs")
    with Stubber(sqs) as stub:
        stub.add_client_error("send_message_batch", service_error_code=code, http_status_code=status)
        with pytest.raises(SendCallError) as err:
            SqsBatchSender(sqs).send_batch(Target("q", "sqs", URL, SQS_MAX_MESSAGE_BYTES), [msg(0)])
    assert (err.value.code, err.value.retryable) == (code, retryable)


def test_connection_error_is_retryable() -> None:
    sns = client("sns")

    def refuse(**kw: Any) -> None:
        raise EndpointConnectionError(endpoint_url="https://sns.us-east-1.amazonaws.com")

    sns.meta.events.register("before-send.sns.PublishBatch", refuse)
    with pytest.raises(SendCallError) as err:
        SnsBatchSender(sns).send_batch(Target("t", "sns", TOPIC, SNS_DEFAULT_MAX_MESSAGE_BYTES), [msg(0)])
    assert err.value.retryable
    assert err.value.code == "EndpointConnectionError"


def test_invalid_parameters_are_not_retried_and_the_entries_are_parked_at_once() -> None:
    # given a message botocore refuses before sending (an attribute value that is not a string)
    sqs = client("sqs")
    bad = OutgoingMessage("orders-0-0", "q", "body", (("n", 5),), "c0", 10)  # type: ignore[arg-type]
    sleeps: list[float] = []
    deliverer = Deliverer({"sqs": SqsBatchSender(sqs), "sns": SqsBatchSender(sqs)}, max_attempts=4,
                          base_delay_ms=100, sleep=sleeps.append)

    # when
    (receipt,) = deliverer.deliver([(Target("q", "sqs", URL, SQS_MAX_MESSAGE_BYTES), [bad])])

    # then: one attempt, no wait, a sender fault named by the botocore error
    assert (receipt.delivered, receipt.attempts, receipt.code, receipt.sender_fault) == (
        False, 1, "ParamValidationError", True)
    assert sleeps == []


@pytest.mark.parametrize("error", [
    ParamValidationError(report="Invalid length for parameter Entries[0].MessageGroupId"),
    UnknownParameterError(name="Foo", operation="SendMessageBatch", choices="QueueUrl, Entries"),
    MissingParametersError(object_name="SendMessageBatch", missing="Entries"),
])
def test_caller_errors_raised_by_botocore_are_not_retryable(error: Exception) -> None:
    assert call_error(error).retryable is False


def test_s3_store_puts_json_and_wraps_errors() -> None:
    s3 = client("s3")
    with Stubber(s3) as stub:
        stub.add_response("put_object", {}, {"Bucket": "bkt", "Key": "parked/t/0/1-too_large.json", "Body": b"{}",
                                             "ContentType": "application/json"})
        stub.add_client_error("put_object", "AccessDenied", http_status_code=403)
        store = S3ObjectStore(s3, "bkt")

        assert store.put("parked/t/0/1-too_large.json", b"{}") == "s3://bkt/parked/t/0/1-too_large.json"
        with pytest.raises(ObjectStoreError):
            store.put("k", b"{}")


def test_must_show_b_counted_on_the_real_sqs_client_1000_small_records_make_100_calls() -> None:
    # given: a real boto3 SQS client whose HTTP send is answered by a hook that counts requests
    sqs = client("sqs")
    calls: list[int] = []

    def answer(request: Any, **kw: Any) -> AWSResponse:
        entries = json.loads(request.body)["Entries"]
        calls.append(len(entries))
        body = {"Successful": [{"Id": e["Id"], "MessageId": e["Id"], "MD5OfMessageBody": "x"} for e in entries],
                "Failed": []}
        return AWSResponse(request.url, 200, {}, RawBody(json.dumps(body).encode()))

    sqs.meta.events.register("before-send.sqs.SendMessageBatch", answer)
    config = make_config(destinations=[{"name": "out", "type": "sqs"}], routes=[{"name": "all", "match": {},
                                                                                "to": ["out"]}])
    bridge = Bridge(config, make_settings(), sqs=SqsBatchSender(sqs), sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=FakeKeys())
    # when
    report = bridge.handle(kafka_event([kafka_record(offset=i, value=f'{{"n": {i}}}') for i in range(1000)]))
    # then
    assert report.summary["delivered"] == {"out": 1000}
    assert len(calls) == 100
    assert set(calls) == {10}
    print(f"\nmust-show (b, real client): 1000 records -> {len(calls)} SendMessageBatch requests")



def test_an_unreadable_answer_guard_is_this_clients_only() -> None:
    # given: two clients of one botocore session (which shares one parser factory among its clients)
    session = get_session()
    guarded = session.create_client("sqs", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    other = session.create_client("sqs", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    # when: one is guarded (twice: clients may be set up again)
    assert errors.guard_answers(guarded)
    assert errors.guard_answers(guarded)
    # then: only its parsers raise UnreadableAnswer; the other client's parser is botocore's own
    body = {"status_code": 200, "headers": {"Content-Type": "application/x-amz-json-1.0"}, "body": b"\x8b\x00"}
    shape = guarded.meta.service_model.operation_model("SendMessageBatch").output_shape
    with pytest.raises(errors.UnreadableAnswer, match=r"HTTP 200, application/x-amz-json-1.0, 2 bytes"):
        guarded._endpoint._response_parser_factory.create_parser("json").parse(body, shape)
    with pytest.raises(UnicodeDecodeError):
        other._endpoint._response_parser_factory.create_parser("json").parse(body, shape)
    assert not isinstance(guarded._endpoint._response_parser_factory._stock, errors.ReadableAnswers)


def test_the_bridges_own_errors_around_the_call_are_not_taken_for_an_unreadable_answer() -> None:
    # given: a guarded client on which something outside the parse step fails (here a handler before the call)
    sqs = client("sqs")
    errors.guard_answers(sqs)

    def broken(**_: Any) -> None:
        raise KeyError("a bug before the request")

    sqs.meta.events.register("before-call.sqs.SendMessageBatch", broken)
    # when / then: the bug surfaces as itself, not as a retryable UnreadableAnswer
    with pytest.raises(KeyError, match="a bug before the request"):
        SqsBatchSender(sqs).send_batch(Target("q", "sqs", URL, SQS_MAX_MESSAGE_BYTES), [msg(0)])


@pytest.mark.parametrize(("response", "expected"), [
    ({"Successful": [{"Id": "0"}, {"Id": "0"}], "Failed": []}, [(1, "NotInAnswer", False)]),  # 1 in neither list
    ({"Successful": [{"Id": "1"}], "Failed": [{"Id": "0", "Code": "InternalError", "SenderFault": False}]},
     [(0, "InternalError", False)]),
    ({"Failed": [{"Id": "1", "Code": "InvalidParameterValue", "Message": "bad", "SenderFault": True}]},
     [(1, "InvalidParameterValue", True), (0, "NotInAnswer", False)]),
])
def test_batch_outcome_reads_the_services_answer_as_before(response: dict[str, Any],
                                                           expected: list[tuple[int, str, bool]]) -> None:
    assert [(f.index, f.code, f.sender_fault) for f in batch_outcome(response, 2).failures] == expected
