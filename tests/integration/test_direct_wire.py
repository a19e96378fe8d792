"""bridge.adapters.direct over loopback HTTP: the bytes it sends are botocore's, its answers and errors are
botocore's, and anything it does not reproduce goes through botocore.

A loopback HTTP server records every request byte for byte and answers what each test queues. Stock
botocore clients (no bridge serialisers) are the reference, with the same clock, invocation id and
credentials."""

from __future__ import annotations

import datetime
import json
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.client
import botocore.parsers
import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, EndpointConnectionError
from bridge.adapters import clients, direct, query_body, sqs_body
from bridge.adapters.errors import call_error
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import MAX_CONCURRENCY
from bridge.delivery import SendCallError, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import (
    FROZEN_INVOCATION,
    FROZEN_NOW,
    LoopbackServer,
    Respond,
    batch_success_body,
    freeze_botocore_clock,
    make_settings,
)

NOW, INVOCATION = FROZEN_NOW, FROZEN_INVOCATION
TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"
TOPIC_FIFO = "arn:aws:sns:us-east-1:123456789012:orders.fifo"


class Answer:
    def __init__(self, status: int, body: bytes, content_type: str, extra: str = "") -> None:
        self.status, self.body, self.content_type, self.extra = status, body, content_type, extra

    def wire(self) -> bytes:
        return (f"HTTP/1.1 {self.status} X\r\nContent-Type: {self.content_type}\r\nContent-Length: {len(self.body)}"
                f"\r\n{self.extra}x-amzn-RequestId: r-1\r\n\r\n").encode() + self.body


def success(request: bytes) -> Answer:
    """Every entry accepted, in the protocol of the request."""
    return Answer(200, *batch_success_body(request))


class Recorder(LoopbackServer):
    """Answers from `answers` (a queue) or with `success`; `hang_up` closes instead of answering the
    next request."""

    def __init__(self) -> None:
        self.answers: list[Answer] = []
        self.hang_up = False
        super().__init__()

    def next_answer(self, request: bytes) -> Respond:
        if self.hang_up:
            return lambda conn, request: False
        answer = self.answers.pop(0) if self.answers else success(request)

        def send(conn: socket.socket, _: bytes) -> bool:
            conn.sendall(answer.wire())
            return True
        return send


@pytest.fixture
def server() -> Iterator[Recorder]:
    recorder = Recorder()
    yield recorder
    recorder.close()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch)


def _session(token: str | None = "session-token") -> botocore.session.Session:
    session = botocore.session.get_session()
    session._credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", token)
    return session


def _client(service: str, url: str, session: botocore.session.Session, **config: Any) -> Any:
    config_ = clients._SEND_CONFIG.merge(Config(**config)) if config else clients._SEND_CONFIG
    return session.create_client(service, region_name="us-east-1", endpoint_url=url, config=config_)


def _direct(service: str, url: str, session: botocore.session.Session) -> tuple[Any, direct.DirectBatchCall]:
    """A client set up as clients.sqs_client / sns_client set it up, with the frozen clock."""
    client = _client(service, url, session)
    assert (sqs_body if service == "sqs" else query_body).install(client)
    call = direct.DirectBatchCall(client, keep=4, clock=lambda: NOW)
    return client, call


def _entries(service: str, fifo: bool) -> dict[str, Any]:
    body = "MessageBody" if service == "sqs" else "Message"
    entries: list[dict[str, Any]] = []
    for i in range(10):
        value = json.dumps({"order": i, "note": "ünïcode & spaces=+/", "pad": "x" * 900})
        entry: dict[str, Any] = {"Id": str(i), body: value,
                                 "MessageAttributes": {
                                     "correlation-id": {"DataType": "String", "StringValue": f"cid-{i:08d}"},
                                     "record-id": {"DataType": "String", "StringValue": f"orders-0-{i}"},
                                     "tenant": {"DataType": "String", "StringValue": "acme corp"}}}
        if fifo:
            entry["MessageGroupId"] = f"customer-{i % 3}"
            entry["MessageDeduplicationId"] = f"orders-0-{i}"
        entries.append(entry)
    if service == "sqs":
        return {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/orders{'.fifo' if fifo else ''}",
                "Entries": entries}
    return {"TopicArn": TOPIC_FIFO if fifo else TOPIC, "PublishBatchRequestEntries": entries}


def _stock_call(client: Any, service: str) -> Callable[..., Any]:
    return client.send_message_batch if service == "sqs" else client.publish_batch


@pytest.mark.parametrize("token", ["session-token", None])
@pytest.mark.parametrize(("service", "fifo"), [("sqs", False), ("sqs", True), ("sns", False), ("sns", True)])
def test_the_direct_request_is_byte_for_byte_what_stock_botocore_sends(
        server: Recorder, frozen: None, service: str, fifo: bool, token: str | None) -> None:
    # given: a stock botocore client and a bridge client with a direct call, same credentials and clock
    session = _session(token)
    stock = _client(service, server.url, session)
    _, call = _direct(service, server.url, session)
    params = _entries(service, fifo)
    # when: stock sends the batch; the direct call sends it three times (two through botocore, which
    # become its template, then on its own)
    _stock_call(stock, service)(**params)
    reference = server.requests[-1]
    call(**params)
    call(**params)
    assert call.direct
    answer = call(**params)
    # then: the direct request's bytes (request line, every header in order, signature, body) are the
    # stock request's, and its answer is read as botocore reads it
    assert server.requests[-1] == reference
    assert b"Authorization: AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261202/us-east-1/" + service.encode() in reference
    assert answer["Failed"] == []
    assert len(answer["Successful"]) == 10


SQS_ERRORS = [
    Answer(400, b'{"__type":"com.amazonaws.sqs#QueueDoesNotExist","message":"The specified queue does not exist."}',
           "application/x-amz-json-1.0", "x-amzn-query-error: AWS.SimpleQueueService.NonExistentQueue;Sender\r\n"),
    Answer(400, b'{"__type":"com.amazonaws.sqs#KmsThrottled","message":"slow down"}', "application/x-amz-json-1.0",
           "x-amzn-query-error: KMS.ThrottlingException;Sender\r\n"),
    Answer(500, b'{"__type":"com.amazonaws.sqs#InternalError","message":"oops"}', "application/x-amz-json-1.0"),
    Answer(503, b"<html>Service Unavailable</html>", "text/html"),
    Answer(200, json.dumps({"Successful": [{"Id": "1", "MessageId": "m", "MD5OfMessageBody": "x"}], "Failed": [
        {"Id": "0", "SenderFault": True, "Code": "InvalidParameterValue", "Message": "bad"},
        {"Id": "2", "SenderFault": False, "Code": "InternalError"}]}).encode(), "application/x-amz-json-1.0"),
    Answer(200, b"<html>not json</html>", "text/html"),
]
SNS_ERRORS = [
    Answer(404, b'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
           b"<Code>NotFound</Code><Message>Topic does not exist</Message></Error><RequestId>r</RequestId>"
           b"</ErrorResponse>", "text/xml"),
    Answer(400, b'<ErrorResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><Error><Type>Sender</Type>'
           b"<Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId>"
           b"</ErrorResponse>", "text/xml"),
    Answer(502, b"<html>Bad Gateway</html>", "text/html"),
    Answer(200, b'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
           b"<Successful><member><Id>1</Id><MessageId>m</MessageId></member></Successful><Failed><member><Id>0</Id>"
           b"<Code>InvalidParameter</Code><Message>bad</Message><SenderFault>true</SenderFault></member><member>"
           b"<Id>2</Id><Code>InternalError</Code><SenderFault>false</SenderFault></member></Failed>"
           b"</PublishBatchResult></PublishBatchResponse>", "text/xml"),
    Answer(200, b"not xml at all", "text/xml"),
]


def _outcome(send: Callable[..., Any], params: dict[str, Any]) -> Any:
    try:
        return ("ok", send(**params).get("Failed"))
    except (ClientError, BotoCoreError, botocore.parsers.ResponseParserError) as exc:
        error = call_error(exc)
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"] if isinstance(exc, ClientError) else None
        return (type(exc).__name__, str(error), error.retryable, status)


@pytest.mark.parametrize(("service", "answer"), [("sqs", a) for a in SQS_ERRORS] + [("sns", a) for a in SNS_ERRORS])
def test_errors_and_per_entry_failures_come_back_as_botocore_makes_them(
        server: Recorder, service: str, answer: Answer) -> None:
    # given: a stock client and a direct call already sending directly
    session = _session()
    stock = _client(service, server.url, session)
    _, call = _direct(service, server.url, session)
    params = _entries(service, fifo=False)
    call(**params)
    call(**params)
    assert call.direct
    # when: both get the same answer
    server.answers = [answer, answer]
    expected = _outcome(_stock_call(stock, service), params)
    got = _outcome(call, params)
    # then: the same exception class, code, message, retryability and status, or the same failed entries
    assert got == expected
    assert server.answers == []


def test_a_closed_idle_connection_is_replaced_and_a_dead_endpoint_is_a_retryable_connection_error(
        server: Recorder) -> None:
    # given: a direct call sending directly
    _, call = _direct("sqs", server.url, _session())
    params = _entries("sqs", fifo=False)
    call(**params)
    call(**params)
    assert call.direct
    opened = server.connections
    # when: it sends three more batches, the server closing its idle connections before each
    for _ in range(3):
        server.drop_idle()
        assert call(**params)["Failed"] == []
    # then: each found its idle connection closed and opened another, no error
    assert server.connections == opened + 3
    # when: the server hangs up on a request, then stops listening
    server.hang_up = True
    with pytest.raises(ConnectionClosedError):
        call(**params)
    server.close()
    with pytest.raises(EndpointConnectionError) as refused:
        call(**params)
    # then: both are the connection errors botocore raises, which delivery retries
    assert call_error(refused.value).retryable


def test_refreshed_credentials_sign_the_next_direct_request(server: Recorder, frozen: None) -> None:
    # given: role credentials that expire (as Lambda's do), a stock client and a direct call sharing them
    key = ["AKIDFIRST"]

    def refresh() -> dict[str, str]:
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {"access_key": key[0], "secret_key": f"secret-of-{key[0]}", "token": "token",
                "expiry_time": expiry.isoformat()}

    session = botocore.session.get_session()
    session._credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    stock = _client("sqs", server.url, session)
    _, call = _direct("sqs", server.url, session)
    params = _entries("sqs", fifo=False)
    call(**params)
    call(**params)
    assert call.direct
    # when: the credentials expire and both send again
    key[0] = "AKIDSECOND"
    session._credentials._expiry_time = datetime.datetime.now(datetime.UTC)
    stock.send_message_batch(**params)
    reference = server.requests[-1]
    call(**params)
    # then: the direct request is signed with the refreshed key, exactly as botocore signed its own
    assert b"Credential=AKIDSECOND/" in reference
    assert server.requests[-1] == reference


def test_a_client_someone_hooks_into_or_a_patched_botocore_goes_through_botocore(
        server: Recorder, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a direct call sending directly
    client, call = _direct("sqs", server.url, _session())
    params = _entries("sqs", fifo=False)
    call(**params)
    call(**params)
    assert call.direct
    # when: botocore's _make_api_call is wrapped (as the X-Ray SDK patches it)
    stock_make_api_call = botocore.client.BaseClient._make_api_call
    seen: list[str] = []

    def traced(self: Any, operation: str, params: Any) -> Any:
        seen.append(operation)
        return stock_make_api_call(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", traced)
    call(**params)
    # then: the call went through it
    assert seen == ["SendMessageBatch"]
    assert not call.direct
    monkeypatch.undo()
    assert call.direct
    # when: a handler is registered on the client (a Stubber, a test's answer, a user's hook)
    hooked: list[Any] = []
    client.meta.events.register("before-send.sqs.SendMessageBatch", lambda request, **_: hooked.append(request))
    call(**params)
    # then: botocore sends from then on, and the handler sees the request
    assert not call.direct
    assert len(hooked) == 1


def test_entries_the_fast_serialiser_does_not_take_go_through_botocore(server: Recorder) -> None:
    # given: a direct call sending directly
    client, call = _direct("sqs", server.url, _session())
    params = _entries("sqs", fifo=False)
    call(**params)
    call(**params)
    seen: list[Any] = []
    # when: an entry has a binary attribute (which the JSON fast path does not write)
    params["Entries"][0]["MessageAttributes"]["blob"] = {"DataType": "Binary", "BinaryValue": b"\x00\x01"}
    before = len(server.requests)
    client._serializer = _Spy(client._serializer, seen)
    call(**params)
    # then: botocore serialised and sent it
    assert len(server.requests) == before + 1
    assert seen == ["SendMessageBatch"]


class _Spy:
    def __init__(self, inner: Any, seen: list[str]) -> None:
        self.inner, self.seen = inner, seen

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        self.seen.append(operation_model.name)
        return self.inner.serialize_to_request(parameters, operation_model)


@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_the_bridges_senders_send_directly_from_the_bridges_clients(
        server: Recorder, monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    # given: the bridge's clients (clients.sqs_client / sns_client) and its senders
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.setattr(clients, "_session", None)
    settings = make_settings(endpoint_url=server.url)
    if service == "sqs":
        client: Any = clients.sqs_client(settings)
        sender: Any = SqsBatchSender(client)
        target = Target("orders", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/orders", 262_144)
    else:
        client = clients.sns_client(settings)
        sender = SnsBatchSender(client)
        target = Target("orders", "sns", TOPIC, 262_144)
    messages = [OutgoingMessage(record_id=f"orders-0-{i}", destination="orders", body=f"body {i}",
                                attributes=(("correlation-id", f"c-{i}"),), correlation_id=f"c-{i}", size=20)
                for i in range(10)]
    # when: they send three batches, the server failing one entry of the last
    sender.send_batch(target, messages)
    sender.send_batch(target, messages)
    server.answers = [next(a for a in (SQS_ERRORS if service == "sqs" else SNS_ERRORS) if a.status == 200
                           and b"Failed" in a.body)]
    outcome = sender.send_batch(target, messages)
    # then: the third went directly, and its failures are the sender's typed failures
    assert client._bridge_direct_call.direct
    # (the answer names entries 0-2 only: the other seven are retried, batching.NOT_IN_ANSWER)
    assert [(f.index, f.code, f.sender_fault) for f in outcome.failures] == [
        (0, "InvalidParameterValue" if service == "sqs" else "InvalidParameter", True), (2, "InternalError", False),
        *((i, "NotInAnswer", False) for i in range(3, 10))]
    server.hang_up = True
    with pytest.raises(SendCallError):
        sender.send_batch(target, messages)


def test_against_the_local_aws_direct_batches_arrive_with_their_attributes_groups_and_order(
        aws_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a standard and a FIFO queue in the local AWS, a FIFO topic fanned out to another FIFO queue,
    # and the bridge's clients for it
    monkeypatch.setattr(clients, "_session", None)
    stock_sqs = botocore.session.get_session().create_client("sqs", region_name="us-east-1", endpoint_url=aws_endpoint)
    stock_sns = botocore.session.get_session().create_client("sns", region_name="us-east-1", endpoint_url=aws_endpoint)
    standard = stock_sqs.create_queue(QueueName="direct-standard")["QueueUrl"]
    fifo = stock_sqs.create_queue(QueueName="direct-fifo.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    fanned = stock_sqs.create_queue(QueueName="direct-fanned.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    topic = stock_sns.create_topic(Name="direct-topic.fifo", Attributes={"FifoTopic": "true"})["TopicArn"]
    fanned_arn = stock_sqs.get_queue_attributes(QueueUrl=fanned, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stock_sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=fanned_arn, Attributes={"RawMessageDelivery": "true"})
    settings = make_settings(endpoint_url=aws_endpoint)
    sqs, sns = clients.sqs_client(settings), clients.sns_client(settings)
    send_sqs, send_sns = direct.batch_call(sqs, "SendMessageBatch"), direct.batch_call(sns, "PublishBatch")
    # when: three batches of ten go to each (the first two through botocore, the third directly)
    for batch in range(3):
        for url, is_fifo in ((standard, False), (fifo, True)):
            params = _entries("sqs", is_fifo)
            params["QueueUrl"] = url
            for entry in params["Entries"]:
                entry["MessageBody"] = f"{batch}-{entry['Id']}"
                if is_fifo:
                    entry["MessageDeduplicationId"] = entry["MessageBody"]
            assert send_sqs(**params)["Failed"] == []
        params = _entries("sns", fifo=True)
        params["TopicArn"] = topic
        for entry in params["PublishBatchRequestEntries"]:
            entry["Message"] = entry["MessageDeduplicationId"] = f"{batch}-{entry['Id']}"
        assert send_sns(**params)["Failed"] == []
    # then: the third batches went directly, and every message arrived with its attributes, FIFO ones
    # in order within their group
    assert isinstance(send_sqs, direct.DirectBatchCall)
    assert isinstance(send_sns, direct.DirectBatchCall)
    assert send_sqs.direct
    assert send_sns.direct
    for url, expect_groups in ((standard, False), (fifo, True), (fanned, True)):
        got: list[dict[str, Any]] = []
        while batch_ := stock_sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
                                                  MessageAttributeNames=["All"],
                                                  MessageSystemAttributeNames=["MessageGroupId"]).get("Messages"):
            got.extend(batch_)
            stock_sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch_)])
        assert sorted(m["Body"] for m in got) == sorted(f"{b}-{i}" for b in range(3) for i in range(10)), url
        assert all(m["MessageAttributes"]["tenant"]["StringValue"] == "acme corp" for m in got), url
        if expect_groups:
            for group in ("customer-0", "customer-1", "customer-2"):
                bodies = [m["Body"] for m in got if m["Attributes"]["MessageGroupId"] == group]
                assert bodies == sorted(bodies, key=lambda b: tuple(map(int, b.split("-")))), (url, group)


def test_send_threads_reuse_the_direct_connections_up_to_max_concurrency(server: Recorder) -> None:
    # given: a direct call kept as the bridge's clients keep it (up to MAX_CONCURRENCY idle connections)
    client = _client("sqs", server.url, _session())
    assert sqs_body.install(client)
    call = direct.DirectBatchCall(client, keep=MAX_CONCURRENCY)
    params = _entries("sqs", fifo=False)
    call(**params)
    call(**params)
    assert call.direct
    before = server.connections
    # when: MAX_CONCURRENCY threads send three rounds of batches at once
    with ThreadPoolExecutor(MAX_CONCURRENCY) as pool:
        for _ in range(3):
            assert all(a["Failed"] == [] for a in pool.map(lambda _: call(**params), range(MAX_CONCURRENCY)))
    # then: at most one connection per thread was opened, the later rounds reused them
    assert server.connections - before <= MAX_CONCURRENCY
    assert len(server.requests) == 2 + 3 * MAX_CONCURRENCY
