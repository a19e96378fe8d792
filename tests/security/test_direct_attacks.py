"""Attacks on the direct sends (bridge.adapters.direct): an endpoint that misbehaves on purpose.

Every batch the bridge delivers goes through `DirectBatchCall`, which writes the request on a socket
itself and reads the answer with its own small HTTP/1.1 reader. A mistake there loses or duplicates
messages silently: an answer taken for success that is not one, the answer of one request read as
another's, a request sent twice, a secret in an exception. Here a real loopback server answers with
the bytes each test scripts (truncated, too long, chunked, split, huge, reset, silent), and the
outcome of the direct call is compared with what a stock botocore client (no bridge parts) makes of
the same bytes: delivered, per-entry failures, a retryable error or a sender fault, never "delivered"
for a batch the server did not accept.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import gzip
import inspect
import json
import logging
import selectors
import socket
import struct
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import botocore.auth
import botocore.client
import botocore.endpoint
import botocore.httpsession
import botocore.loaders
import botocore.parsers
import botocore.session
import pytest
import urllib3
from aws_xray_sdk import global_sdk_config
from aws_xray_sdk.core import xray_recorder
from aws_xray_sdk.ext.botocore.patch import patch as xray_patch
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError
from botocore.stub import Stubber
from bridge.adapters import clients, direct, query_body, sqs_body
from bridge.adapters.errors import call_error
from bridge.adapters.sqs import SqsBatchSender
from bridge.delivery import SendCallError, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import LoopbackServer, Respond

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"

Script = Respond  # writes an answer; False: stop serving this connection


def _ids(request: bytes) -> list[str]:
    head, _, body = request.partition(b"\r\n\r\n")
    if b"X-Amz-Target" in head:
        return [e["Id"] for e in json.loads(body)["Entries"]]
    return [str(i) for i in range(body.count(b".Id="))]


def _marker(request: bytes) -> str:
    """What distinguishes one request from another in these tests: its first entry's body."""
    head, _, body = request.partition(b"\r\n\r\n")
    if b"X-Amz-Target" in head:
        return str(json.loads(body)["Entries"][0]["MessageBody"])
    return body.split(b".Message=", 1)[1].split(b"&", 1)[0].decode()


def success_body(request: bytes) -> tuple[bytes, str]:
    """Every entry accepted (message ids carry the request's marker), in the request's protocol."""
    ids, marker = _ids(request), _marker(request)
    if b"X-Amz-Target" in request.partition(b"\r\n\r\n")[0]:
        doc = {"Successful": [{"Id": i, "MessageId": f"{marker}/{i}", "MD5OfMessageBody": "0" * 32} for i in ids],
               "Failed": []}
        return json.dumps(doc).encode(), "application/x-amz-json-1.0"
    members = "".join(f"<member><Id>{i}</Id><MessageId>{marker}/{i}</MessageId></member>" for i in ids)
    return (f'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
            f"<Successful>{members}</Successful><Failed/></PublishBatchResult><ResponseMetadata><RequestId>r"
            f"</RequestId></ResponseMetadata></PublishBatchResponse>").encode(), "text/xml"


def answer(status: int, body: bytes, content_type: str, *, extra: str = "", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nx-amzn-RequestId: r-1\r\n{extra}"
            f"Content-Length: {size}\r\n\r\n").encode() + body


def success(request: bytes) -> bytes:
    return answer(200, *success_body(request))


def failing_first_entry(request: bytes) -> bytes:
    doc = {"Successful": [{"Id": i, "MessageId": "m", "MD5OfMessageBody": "0" * 32} for i in _ids(request)[1:]],
           "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError", "Message": "try again"}]}
    return answer(200, json.dumps(doc).encode(), "application/x-amz-json-1.0")


def reply(make: Callable[[bytes], bytes], *, then_close: bool = False) -> Script:
    def script(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(make(request))
        return not then_close
    return script


def reset(conn: socket.socket) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed peer or a middlebox does."""
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


class Endpoint(LoopbackServer):
    """Answers with the next queued script (a whole success answer when none is queued), keeps
    connections alive unless a script ends one."""

    def __init__(self) -> None:
        self.scripts: list[Script] = []
        super().__init__()

    def next_answer(self, request: bytes) -> Script:
        return self.scripts.pop(0) if self.scripts else reply(success)


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    yield server
    server.close()


_BLOCKING_CALL = direct.DirectBatchCall.__call__


def _through_start(call: direct.DirectBatchCall, **parameters: Any) -> dict[str, Any]:
    """A direct call made as the one-thread run makes it (bridge.delivery.MultiplexedRun): `start` on a
    non-blocking connection, `Exchange.step` whenever its socket is ready (or its deadline has passed),
    then `outcome`; botocore's own path when `start` declines."""
    exchange = call.start(**parameters)
    if exchange is None:
        return _BLOCKING_CALL(call, **parameters)
    while True:
        with selectors.DefaultSelector() as selector:
            selector.register(exchange.fileno(), selectors.EVENT_WRITE if exchange.wants_write
                              else selectors.EVENT_READ)
            ready = selector.select(max(0.0, exchange.deadline - time.monotonic()))
        answer = exchange.step(expired=not ready)
        if answer is not None:
            return call.outcome(answer)


@pytest.fixture(autouse=True, params=["blocking", "one-thread"])
def reading(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every attack on both ways the direct sends read an answer: a blocking call on a send thread, and a
    request left in flight on a non-blocking socket (`_through_start`), whatever the test calls."""
    if request.param == "one-thread":
        monkeypatch.setattr(direct.DirectBatchCall, "__call__", _through_start)
    return str(request.param)


@functools.cache
def _loader() -> botocore.loaders.Loader:
    loader: botocore.loaders.Loader = botocore.session.get_session().get_component("data_loader")
    return loader


def _session(credentials: Any = None) -> botocore.session.Session:
    """A session of its own (credentials, clients), reading the service models through one loader for the
    module, as one session's clients share theirs: a loader per session read the SQS or SNS model, the
    endpoint data and the list of services again for each client (JSON, about 0.5 s of CPU per case)."""
    session = botocore.session.get_session()
    session.register_component("data_loader", _loader())
    session._credentials = credentials or Credentials("AKIDEXAMPLE", SECRET, "session-token")
    return session


def _config(**overrides: Any) -> Config:
    return clients._SEND_CONFIG.merge(Config(**overrides)) if overrides else clients._SEND_CONFIG


def stock_client(service: str, url: str, session: botocore.session.Session | None = None, **config: Any) -> Any:
    """A botocore client with nothing of the bridge's: the reference."""
    return (session or _session()).create_client(service, region_name="us-east-1", endpoint_url=url,
                                                 config=_config(**config))


def direct_call(service: str, url: str, session: botocore.session.Session | None = None, *,
                region: str = "us-east-1", **config: Any) -> direct.DirectBatchCall:
    """A client set up as clients.sqs_client / sns_client set it up, already sending directly."""
    client = (session or _session()).create_client(service, region_name=region, endpoint_url=url,
                                                   config=_config(**config))
    assert (sqs_body if service == "sqs" else query_body).install(client)
    call = direct.DirectBatchCall(client, keep=4)
    call(**params(service, "warm-1"))
    call(**params(service, "warm-2"))
    assert call.direct
    return call


def params(service: str, marker: str, count: int = 10) -> dict[str, Any]:
    if service == "sqs":
        return {"QueueUrl": QUEUE, "Entries": [
            {"Id": str(i), "MessageBody": marker if i == 0 else f"{marker}-{i}",
             "MessageAttributes": {"correlation-id": {"DataType": "String", "StringValue": f"c-{i}"}}}
            for i in range(count)]}
    return {"TopicArn": TOPIC, "PublishBatchRequestEntries": [
        {"Id": str(i), "Message": marker if i == 0 else f"{marker}-{i}"} for i in range(count)]}


def stock_send(client: Any, service: str) -> Callable[..., Any]:
    return client.send_message_batch if service == "sqs" else client.publish_batch


def outcome(send: Callable[..., Any], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """What the bridge's sender makes of one call: delivered (with the failed entries), or the error
    as bridge.adapters.errors maps it (class, code, retryable). Anything else escapes: a crash."""
    try:
        result = send(**kwargs)
    except (ClientError, BotoCoreError, botocore.parsers.ResponseParserError) as exc:
        error = call_error(exc)
        return ("error", type(exc).__name__, error.code, error.retryable)
    return ("ok", sorted(e["Id"] for e in result.get("Successful", [])),
            sorted((e["Id"], e["Code"]) for e in result.get("Failed", [])))


def same_as_botocore(endpoint: Endpoint, service: str, script: Script, **config: Any) -> tuple[Any, Any]:
    """The outcome of one scripted answer for stock botocore and for the direct call (sending directly)."""
    stock = stock_client(service, endpoint.url, **config)
    call = direct_call(service, endpoint.url, **config)
    endpoint.scripts.append(script)
    expected = outcome(stock_send(stock, service), params(service, "stock"))
    endpoint.scripts.append(script)
    got = outcome(call, params(service, "direct"))
    assert endpoint.scripts == []
    return expected, got


def _truncated_then_close(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    conn.sendall(answer(200, body, kind)[:-20])
    return False


def _truncated_then_silent(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    conn.sendall(answer(200, body, kind)[:-20])
    return True


def _chunked(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    pieces = [body[i:i + 100] for i in range(0, len(body), 100)]
    chunks = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in pieces)
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                 + chunks + b"0\r\nx-trailer: t\r\n\r\n")
    return True


def _chunked_cut(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                 + b"%x\r\n%s" % (len(body), body[:-10]))
    return False


def _http10_to_close(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    conn.sendall(f"HTTP/1.0 200 OK\r\nContent-Type: {kind}\r\n\r\n".encode() + body)
    return False


def _continue_first(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" + success(request))
    return True


def _byte_by_byte(conn: socket.socket, request: bytes) -> bool:
    data = success(request)
    head = data.index(b"\r\n\r\n") + 4
    for i in range(head):
        conn.sendall(data[i:i + 1])
        time.sleep(0.0005)
    conn.sendall(data[head:])
    return True


def _gzip(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    conn.sendall(answer(200, gzip.compress(body), kind, extra="Content-Encoding: gzip\r\n"))
    return True


def _huge_header(conn: socket.socket, request: bytes) -> bool:
    pad = "a" * 70_000
    conn.sendall(success(request).replace(b"\r\n", f"\r\nx-pad: {pad}Content-Length: 0\r\n".encode(), 1))
    return True


def _many_headers(conn: socket.socket, request: bytes) -> bool:
    extra = "".join(f"x-h{i}: v\r\n" for i in range(150))
    conn.sendall(success(request).replace(b"\r\n", f"\r\n{extra}".encode(), 1))
    return True


def _reset_mid_answer(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(success(request)[:60])
    time.sleep(0.05)
    reset(conn)
    return False


def _missing_entry(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    doc = json.loads(body)
    doc["Successful"] = doc["Successful"][1:]
    conn.sendall(answer(200, json.dumps(doc).encode(), kind))
    return True


def _empty_object(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(answer(200, b"{}", "application/x-amz-json-1.0"))
    return True


def _error_with_200(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(answer(200, b'{"__type":"com.amazonaws.sqs#InternalError","message":"oops"}',
                        "application/x-amz-json-1.0"))
    return True



@pytest.mark.attack("endpoint sends more than Content-Length: a forged answer for the next request",
                    outcome="refused at runtime: the next request reads its own answer",
                    how="loopback server, direct call")
@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_bytes_past_the_answer_are_never_read_as_the_next_requests_answer(endpoint: Endpoint, service: str) -> None:
    # given: a direct call sending directly, and an endpoint whose answer to one request is followed, in
    # the same write, by a whole second answer that accepts every entry of a request it has not seen
    call = direct_call(service, endpoint.url)

    def answer_and_forge(conn: socket.socket, request: bytes) -> bool:
        forged = request.replace(_marker(request).encode(), b"forged")
        conn.sendall(success(request) + success(forged))
        return True

    endpoint.scripts.append(answer_and_forge)
    first = call(**params(service, "first"))
    # when: the next batch is sent and the endpoint fails its first entry
    endpoint.scripts.append(reply(failing_first_entry) if service == "sqs" else reply(_sns_failing_first_entry))
    second = call(**params(service, "second"))
    # then: each request got its own answer: the forged bytes were not taken for the second's answer
    assert {e["MessageId"].split("/")[0] for e in first["Successful"]} == {"first"}
    assert [e["Id"] for e in second["Failed"]] == ["0"]
    assert len(endpoint.requests) == 4


def _sns_failing_first_entry(request: bytes) -> bytes:
    members = "".join(f"<member><Id>{i}</Id><MessageId>m</MessageId></member>" for i in _ids(request)[1:])
    return answer(200, (f'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
                        f"<Successful>{members}</Successful><Failed><member><Id>0</Id><Code>InternalError</Code>"
                        f"<SenderFault>false</SenderFault></member></Failed></PublishBatchResult>"
                        f"</PublishBatchResponse>").encode(), "text/xml")


@pytest.mark.attack("a header line longer than 64 KiB, or more than 100 headers", outcome="refused at runtime: "
                    "ConnectionClosedError, as botocore", how="loopback server, stock botocore vs direct call")
@pytest.mark.parametrize("script", [_huge_header, _many_headers])
def test_an_oversized_header_block_is_refused_as_botocore_refuses_it(endpoint: Endpoint, script: Script) -> None:
    expected, got = same_as_botocore(endpoint, "sqs", script)
    assert expected == ("error", "ConnectionClosedError", "ConnectionClosedError", True)
    assert got == expected


@pytest.mark.parametrize("connection", ["close", "Close", "keep-alive, close"])
def test_connection_close_in_any_spelling_is_not_reused(endpoint: Endpoint, connection: str) -> None:
    # given: a direct call sending directly
    call = direct_call("sqs", endpoint.url)
    call(**params("sqs", "opens-its-connection"))
    before = endpoint.connections

    def answer_then_close_later(conn: socket.socket, request: bytes) -> bool:
        body, kind = success_body(request)
        conn.sendall(answer(200, body, kind, extra=f"Connection: {connection}\r\n"))
        time.sleep(0.2)  # the server closes a moment later, after the client may have reused it
        return False

    # when: an answer says the server closes the connection, and the next batch follows at once
    endpoint.scripts.append(answer_then_close_later)
    call(**params("sqs", "first"))
    second = outcome(call, params("sqs", "second"))
    # then: the next batch went on a new connection and was delivered
    assert second[0] == "ok"
    assert endpoint.connections == before + 1


# Answers on which the direct call must reach botocore's outcome (the same delivered entries, failures,
# or error class, code and retryability).
SAME_AS_BOTOCORE: list[tuple[str, Script]] = [
    ("sqs", _chunked), ("sns", _chunked), ("sqs", _chunked_cut), ("sqs", _http10_to_close), ("sns", _http10_to_close),
    ("sqs", _continue_first), ("sqs", _byte_by_byte), ("sns", _byte_by_byte), ("sqs", _reset_mid_answer),
    ("sqs", reply(failing_first_entry)), ("sns", reply(_sns_failing_first_entry)), ("sqs", _missing_entry),
    ("sqs", _empty_object), ("sqs", _error_with_200),
    ("sqs", reply(lambda r: answer(503, b"", "text/html"), then_close=True)),
    ("sqs", reply(lambda r: success(r).replace(b"HTTP/1.1 200 X", b"HTTP/1.1 20 X", 1))),  # not a status
    ("sqs", reply(lambda r: success(r).replace(b"HTTP/1.1 200 X", b"HTTP/1.1 2000 X", 1))),
    ("sqs", reply(lambda r: b"HTTP/1.1 204 No Content\r\nx-amzn-RequestId: r\r\n\r\n")),  # no body, kept open
]


@pytest.mark.parametrize(("service", "script"), SAME_AS_BOTOCORE,
                         ids=[f"{s}-{getattr(f, '__name__', 'reply')}-{i}" for i, (s, f) in
                              enumerate(SAME_AS_BOTOCORE)])
def test_odd_answers_give_botocores_outcome(endpoint: Endpoint, service: str, script: Script) -> None:
    # given: a stock botocore client and a direct call; when: both get the same bytes back
    expected, got = same_as_botocore(endpoint, service, script)
    # then: the same delivered entries and failures, or the same error
    assert got == expected


@pytest.mark.attack("a success answer cut short (Content-Length not reached, or negative) and the connection closed",
                    outcome="refused at runtime: ConnectionClosedError, retried", how="loopback server, direct call")
@pytest.mark.parametrize("script", [_truncated_then_close, _chunked_cut, reply(
    lambda r: b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", then_close=True)], ids=["length", "chunk", "negative"])
@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_an_answer_cut_short_is_a_retryable_error_never_a_delivery(endpoint: Endpoint, service: str,
                                                                   script: Script) -> None:
    # (stock botocore 1.44 takes the first and the last for a success naming no entry: the bridge's sender
    # would count all ten delivered; the direct call does not)
    call = direct_call(service, endpoint.url)
    endpoint.scripts.append(script)
    assert outcome(call, params(service, "cut")) == ("error", "ConnectionClosedError", "ConnectionClosedError", True)
    assert outcome(call, params(service, "next"))[0] == "ok"


def test_a_silent_endpoint_is_a_read_timeout_after_the_configured_read_timeout(endpoint: Endpoint) -> None:
    # given: a direct call configured with a 1 s read timeout, sending directly
    call = direct_call("sqs", endpoint.url, read_timeout=1)
    endpoint.scripts.append(_truncated_then_silent)  # half an answer, then nothing, the connection open
    started = time.monotonic()
    # when: the endpoint stops answering mid-answer
    got = outcome(call, params("sqs", "silent"))
    # then: botocore's ReadTimeoutError (retried), not before the configured timeout, and not the 20 s default
    assert got == ("error", "ReadTimeoutError", "ReadTimeoutError", True)
    assert 1 <= time.monotonic() - started < 15


@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_a_hang_up_after_the_request_is_one_request_and_a_retryable_error_as_botocore(
        endpoint: Endpoint, service: str) -> None:
    # given: an endpoint that reads the request and closes the connection without answering (an idle
    # keep-alive connection the server dropped just as the request went out)
    def hang_up(conn: socket.socket, request: bytes) -> bool:
        return False

    stock = stock_client(service, endpoint.url)
    call = direct_call(service, endpoint.url)
    for send in (stock_send(stock, service), call):
        endpoint.scripts.append(hang_up)
        before = len(endpoint.requests)
        # when: a batch is sent
        got = outcome(send, params(service, "lost"))
        # then: the error is botocore's (delivery retries the batch, knowing it may have arrived), and the
        # request went out once: neither botocore nor the direct call re-sends it on their own
        assert got == ("error", "ConnectionClosedError", "ConnectionClosedError", True)
        assert len(endpoint.requests) == before + 1


def test_sixteen_threads_on_one_client_each_read_their_own_answer(endpoint: Endpoint) -> None:
    # given: one direct call shared by 16 sending threads (P's pacing runs up to max_concurrency), and an
    # endpoint that answers every third request with trailing bytes forging another request's success
    call = direct_call("sqs", endpoint.url)
    count = [0]

    def answer_some_with_a_forged_tail(conn: socket.socket, request: bytes) -> bool:
        count[0] += 1
        forged = request.replace(_marker(request).encode(), b"forged")
        conn.sendall(success(request) + (success(forged) if count[0] % 3 == 0 else b""))
        return True

    endpoint.scripts.extend([answer_some_with_a_forged_tail] * 16 * 12)
    mismatches: list[str] = []
    errors: list[BaseException] = []

    def sender(thread: int) -> None:
        for n in range(12):
            marker = f"t{thread}-{n}"
            try:
                got = call(**params("sqs", marker))
            except BaseException as exc:
                errors.append(exc)
                continue
            mismatches.extend(e["MessageId"] for e in got["Successful"] if not e["MessageId"].startswith(f"{marker}/"))

    threads = [threading.Thread(target=sender, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # then: every batch got its own answer, none an answer meant for another request
    assert errors == []
    assert mismatches == []
    assert len(endpoint.requests) == 2 + 16 * 12


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[datetime.datetime]:
    """botocore's signing clock and invocation id under the test's control (the direct call is given
    the same clock)."""
    if not hasattr(botocore.auth, "get_current_datetime"):
        pytest.skip("this botocore reads datetime.utcnow() (tests/integration/test_direct_wire.py covers it)")
    now = [datetime.datetime(2026, 12, 2, 23, 59, 58)]
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: now[0])
    monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID("12345678-1234-5678-1234-567812345678"))
    return now


@pytest.mark.attack("credentials rotated (new secret, same key id), a new day, the session token dropped",
                    outcome="refused at runtime: every request signed as botocore signs it",
                    how="loopback bytes, stock botocore vs direct call, shared RefreshableCredentials")
def test_a_rotated_secret_a_new_day_and_a_dropped_token_sign_as_botocore_signs(
        endpoint: Endpoint, clock: list[datetime.datetime]) -> None:
    # given: expiring credentials shared by a stock client and a direct call sending directly
    current = {"access_key": "AKIDEXAMPLE", "secret_key": "first-secret", "token": "token-1"}

    def refresh() -> dict[str, str | None]:
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
        return {**current, "expiry_time": expiry.isoformat()}

    credentials = RefreshableCredentials.create_from_metadata(refresh(), refresh, "test")
    session = _session(credentials)
    stock = stock_client("sqs", endpoint.url, session)
    client = session.create_client("sqs", region_name="us-east-1", endpoint_url=endpoint.url, config=_config())
    assert sqs_body.install(client)
    call = direct.DirectBatchCall(client, keep=4, clock=lambda: clock[0])
    call(**params("sqs", "warm-1"))
    call(**params("sqs", "warm-2"))
    assert call.direct
    signatures = set()
    steps: list[Callable[[], None]] = [
        lambda: None,
        lambda: current.update(secret_key="second-secret"),  # rotated: same key id, new secret
        lambda: clock.__setitem__(0, clock[0] + datetime.timedelta(seconds=3)),  # past midnight: a new scope
        lambda: current.update(token=None),  # credentials without a session token
    ]
    for step in steps:
        # when: the credentials or the clock change, and both send the same batch
        step()
        credentials._expiry_time = datetime.datetime.now(datetime.UTC)  # refreshed on the next use
        stock.send_message_batch(**params("sqs", "same"))
        reference = endpoint.requests[-1]
        call(**params("sqs", "same"))
        # then: the direct request is botocore's, byte for byte (signature, scope, token header)
        assert endpoint.requests[-1] == reference
        signatures.add(reference.split(b"Signature=")[1][:64])
    assert len(signatures) == len(steps)
    assert b"20261203/us-east-1/sqs" in endpoint.requests[-1]
    assert b"X-Amz-Security-Token" not in endpoint.requests[-1]


@pytest.mark.attack("the secret key in logs, exception messages or reprs of the direct sends",
                    outcome="refused at runtime: it appears nowhere", how="DEBUG logs and errors captured")
def test_the_secret_appears_in_no_log_error_or_repr(endpoint: Endpoint, caplog: pytest.LogCaptureFixture) -> None:
    # given: everything logged at DEBUG while a direct call sends, fails and meets a closed endpoint
    caplog.set_level(logging.DEBUG)
    call = direct_call("sqs", endpoint.url)
    errors: list[BaseException] = []
    endpoint.scripts.extend([reply(lambda r: answer(403, b'{"__type":"com.amazon.coral.service#AccessDeniedException",'
                                                        b'"message":"no"}', "application/x-amz-json-1.0")),
                             _reset_mid_answer])
    for _ in range(2):
        try:
            call(**params("sqs", "fails"))
        except (ClientError, BotoCoreError) as exc:
            errors.append(exc)
    endpoint.close()
    try:
        call(**params("sqs", "refused"))
    except BotoCoreError as exc:
        errors.append(exc)
    # then: three errors, none of them, no log line and no repr holding the secret (or the token)
    assert len(errors) == 3
    assert SECRET not in caplog.text  # (botocore's own DEBUG lines show the session token: not the direct sends')
    texts = [repr(call), repr(call._template), *(f"{e!s} {e!r} {e.__cause__!r}" for e in errors)]
    assert not [t for t in texts if SECRET in t or "session-token" in t]


def test_clients_for_other_regions_and_endpoints_keep_their_own_template() -> None:
    # given: two direct calls in one process, each for its own endpoint and Region
    first, second = Endpoint(), Endpoint()
    try:
        east = direct_call("sqs", first.url, region="us-east-1")
        west = direct_call("sqs", second.url, region="eu-west-1")
        # when: each sends a batch directly, one after the other
        east(**params("sqs", "east"))
        west(**params("sqs", "west"))
    finally:
        first.close()
        second.close()
    # then: each request went to its own endpoint, with its own Host and signing scope
    for server, region, marker in ((first, "us-east-1", "east"), (second, "eu-west-1", "west")):
        request = server.requests[-1]
        assert f"Host: {server.url.removeprefix('http://')}\r\n".encode() in request
        assert f"/{region}/sqs/aws4_request".encode() in request
        assert _marker(request) == marker
        assert len(server.requests) == 3


def test_a_stubber_on_a_direct_client_answers_and_nothing_goes_on_the_wire(endpoint: Endpoint) -> None:
    # given: a bridge client sending directly
    call = direct_call("sqs", endpoint.url)
    client = call._client
    sent = len(endpoint.requests)
    # when: a test stubs the client (botocore.stub.Stubber) and sends through the bridge's callable
    stubbed = {"Successful": [{"Id": "0", "MessageId": "stubbed", "MD5OfMessageBody": "0" * 32}], "Failed": []}
    with Stubber(client) as stub:
        stub.add_response("send_message_batch", stubbed)
        got = direct.batch_call(client, "SendMessageBatch")(**params("sqs", "stubbed", count=1))
        stub.assert_no_pending_responses()
    # then: the stubbed answer, and no request reached the endpoint
    assert got["Successful"] == stubbed["Successful"]
    assert not call.direct
    assert len(endpoint.requests) == sent


def test_the_x_ray_sdks_patch_sends_through_botocore_with_a_subsegment_per_call(endpoint: Endpoint) -> None:
    # given: a bridge client sending directly, then the X-Ray SDK patching botocore as the Powertools
    # Tracer does when settings.tracing is on (restored afterwards: the patch is process-wide)
    call = direct_call("sqs", endpoint.url)
    saved = (botocore.client.BaseClient.__dict__["_make_api_call"],
             botocore.endpoint.Endpoint.__dict__["prepare_request"])
    enabled = global_sdk_config.sdk_enabled()  # another test's disabled Tracer turns the SDK off
    global_sdk_config.set_sdk_enabled(True)
    xray_patch()
    try:
        # when: a batch is sent inside a segment
        with xray_recorder.in_segment("bridge") as segment:
            got = call(**params("sqs", "traced"))
            subsegments = [s.name for s in segment.subsegments]
    finally:
        botocore.client.BaseClient._make_api_call, botocore.endpoint.Endpoint.prepare_request = saved
        del botocore.client._xray_enabled
        global_sdk_config.set_sdk_enabled(enabled)
    # then: it went through botocore (the SDK's subsegment, its trace header on the request), delivered
    assert subsegments == ["sqs"]
    assert b"X-Amzn-Trace-Id: Root=" in endpoint.requests[-1]
    assert len(got["Successful"]) == 10
    assert call.direct  # patch removed: direct again


def _botocore_reads_short_bodies() -> bool:
    return "enforce_content_length=False" in inspect.getsource(botocore.httpsession.URLLib3Session.send)


def _messages(count: int) -> list[OutgoingMessage]:
    return [OutgoingMessage(record_id=f"orders-0-{i}", destination="orders", body=f"body {i}",
                            attributes=(("correlation-id", f"c-{i}"),), correlation_id=f"c-{i}", size=20)
            for i in range(count)]


@pytest.mark.attack("a 200 whose body names fewer entries than were sent (cut short, a proxy's JSON, {})",
                    outcome="refused at runtime: the unnamed entries are retried, never counted delivered",
                    how="loopback server, the bridge's SqsBatchSender through botocore and directly")
@pytest.mark.parametrize("path", ["botocore", "direct"])
@pytest.mark.parametrize(("script", "unnamed"), [
    (_missing_entry, [0]), (_empty_object, list(range(10))), (_error_with_200, list(range(10))),
    (_truncated_then_close, list(range(10)))], ids=["one-missing", "empty-object", "error-json", "cut-short"])
def test_entries_a_success_answer_does_not_name_are_not_delivered(
        endpoint: Endpoint, path: str, script: Script, unnamed: list[int]) -> None:
    # given: the bridge's SQS sender on a stock client (botocore) or a client sending directly
    if path == "botocore":
        client = stock_client("sqs", endpoint.url)
    else:
        call = direct_call("sqs", endpoint.url)
        client = call._client
        client._bridge_direct_call = call  # as direct.install leaves it
    sender = SqsBatchSender(client)
    target = Target("orders", "sqs", QUEUE, 262_144)
    # when: the endpoint answers a batch of ten with a 200 that names fewer than ten entries
    endpoint.scripts.append(script)
    # a body cut short: the direct call (and botocore 1.35, which enforced Content-Length) raise a
    # retryable error for the whole batch; botocore 1.44 parses what arrived to an empty result
    if script is _truncated_then_close and (path == "direct" or not _botocore_reads_short_bodies()):
        with pytest.raises(SendCallError) as cut:
            sender.send_batch(target, _messages(10))
        assert cut.value.retryable
        return
    result = sender.send_batch(target, _messages(10))
    # then: every entry it does not name is a retryable failure, not a delivery
    assert [(f.index, f.code, f.sender_fault) for f in result.failures] == [(i, "NotInAnswer", False) for i in unnamed]


def _interim_flood(count: int) -> Script:
    def script(conn: socket.socket, request: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n" * count + success(request))
        return True
    return script


@pytest.mark.attack("a stream of interim (1xx) answers before the answer (endless: the reader never finished)",
                    outcome="refused at runtime: a retryable ConnectionClosedError past 16, on both readers",
                    how="loopback server, direct call (blocking and one-thread)")
@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_a_stream_of_interim_answers_is_a_retryable_error_not_an_endless_read(endpoint: Endpoint,
                                                                              service: str) -> None:
    # given: a direct call; the endpoint sends 16 interim answers before one answer, then 1,000
    call = direct_call(service, endpoint.url)
    endpoint.scripts += [_interim_flood(16), _interim_flood(1000)]

    # when / then: 16 are skipped as http.client skips them (botocore takes the answer after any number, an
    # endless stream held it, and the one-thread reader parsed it all again at each step); more is a
    # retryable ConnectionClosedError, never a delivery
    assert outcome(call, params(service, "sixteen"))[0] == "ok"
    assert outcome(call, params(service, "flood")) == ("error", "ConnectionClosedError", "ConnectionClosedError", True)


# --- answers past the size cap, and answers in 1-byte pieces -------------------------------------------

_FLOOD = 8 << 20  # what an "endless" answer sends at most before it ends (8 times the cap)


def _then_silent(conn: socket.socket) -> bool:
    """Keep the connection open and send nothing more, until the client closes it."""
    with contextlib.suppress(OSError):
        while conn.recv(65536):
            pass
    return False


def _flood(conn: socket.socket, head: bytes, piece: bytes, last: bytes = b"") -> bool:
    """`head`, then `piece` again and again (up to _FLOOD bytes, then `last`) until the client hangs up."""
    with contextlib.suppress(OSError):
        conn.sendall(head)
        for _ in range(_FLOOD // len(piece)):
            conn.sendall(piece)
        conn.sendall(last)
    return False


def _huge_length_then_silent(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                 b"Content-Length: 1000000000000\r\n\r\n")
    return _then_silent(conn)


def _huge_chunk_then_silent(conn: socket.socket, request: bytes) -> bool:
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffff\r\n")
    return _then_silent(conn)


def _legal_but_padded_past_the_cap(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)  # a success naming every entry, then whitespace: a 1 MiB body
    conn.sendall(answer(200, body + b" " * ((1 << 20) - len(body)), kind))
    return True


def _endless_body(conn: socket.socket, request: bytes) -> bool:
    return _flood(conn, b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n\r\n", b" " * 65536)


def _endless_chunks(conn: socket.socket, request: bytes) -> bool:
    return _flood(conn, b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n",
                  b"1000\r\n" + b" " * 4096 + b"\r\n", b"0\r\n\r\n")


def _endless_trailers(conn: socket.socket, request: bytes) -> bool:
    body, kind = success_body(request)
    return _flood(conn, f"HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
                  + b"%x\r\n%s\r\n0\r\n" % (len(body), body), b"x-trailer: " + b"t" * 1000 + b"\r\n", b"\r\n")


@pytest.mark.attack("an answer past 1 MiB: a huge Content-Length or chunk size, a legal answer padded past the cap, "
                    "an endless body, endless chunks, endless trailers",
                    outcome="refused at runtime: a retryable ConnectionClosedError as soon as the answer passes 1 MiB "
                            "(at once for a declared size), the connection closed, on both readers",
                    how="loopback server, direct call (blocking and one-thread)")
@pytest.mark.parametrize("script", [_huge_length_then_silent, _huge_chunk_then_silent, _legal_but_padded_past_the_cap,
                                    _endless_body, _endless_chunks, _endless_trailers],
                         ids=["huge-length", "huge-chunk", "padded-legal", "endless-body", "endless-chunks",
                              "endless-trailers"])
@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_an_answer_past_the_size_cap_is_a_retryable_error_closing_the_connection(endpoint: Endpoint, service: str,
                                                                                 script: Script) -> None:
    # given: a direct call with a 2 s read timeout, on one keep-alive connection; the endpoint answers the
    # next request with more than 1 MiB, or announces more and then sends nothing
    call = direct_call(service, endpoint.url, read_timeout=2)
    served: list[socket.socket] = []

    def recorded(respond: Script) -> Script:
        def script(conn: socket.socket, request: bytes) -> bool:
            served.append(conn)
            return respond(conn, request)
        return script

    endpoint.scripts += [recorded(script), recorded(reply(success))]

    # when / then: a retryable ConnectionClosedError, never a delivery; before the cap, an announced size was
    # waited for until the read timeout, and an endless one read to the end (memory and CPU without bound)
    assert outcome(call, params(service, "huge")) == ("error", "ConnectionClosedError", "ConnectionClosedError", True)
    # and the connection was closed, not reused: the next batch goes out on another one and is delivered
    assert outcome(call, params(service, "next"))[0] == "ok"
    assert len(served) == 2
    assert served[0] is not served[1]


class _Profiled:
    """Function calls (Python and C) made while `counting`: the work the reader does, whatever the machine."""

    def __init__(self) -> None:
        self.calls = 0

    def _count(self, frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            self.calls += 1

    @contextlib.contextmanager
    def counting(self) -> Iterator[None]:
        sys.setprofile(self._count)
        try:
            yield
        finally:
            sys.setprofile(None)


class _OneByteAtATime:
    """A socket from which each recv takes one byte: the answer as a peer sending 1-byte segments delivers it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def recv(self, size: int) -> bytes:
        return self.sock.recv(1)


def _legal_answer(message: int) -> bytes:
    """A legal SendMessageBatch answer (one entry failed with a `message`-character Message), under 50 header
    lines, framed in 16-byte chunks: the answer whose re-parse from the start costs most per byte."""
    doc = {"Successful": [{"Id": str(i), "MessageId": f"m-{i}", "MD5OfMessageBody": "0" * 32} for i in range(1, 10)],
           "Failed": [{"Id": "0", "SenderFault": False, "Code": "InternalError", "Message": "e" * message}]}
    body = json.dumps(doc).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 16]), body[i:i + 16]) for i in range(0, len(body), 16))
    headers = "".join(f"x-amz-h{i}: v\r\n" for i in range(50))
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n{headers}"
            f"Transfer-Encoding: chunked\r\n\r\n").encode() + chunks + b"0\r\n\r\n"


def _calls_to_read_byte_by_byte(reading: str, wire: bytes) -> int:
    """Function calls made by one reader reading `wire` delivered one byte at a time."""
    profiled = _Profiled()
    if reading == "blocking":
        ours, theirs = socket.socketpair()
        with ours, theirs:
            theirs.sendall(wire)
            theirs.shutdown(socket.SHUT_WR)
            with profiled.counting():
                got = direct.read_answer(direct._Reader(_OneByteAtATime(ours)))
    else:  # the one-thread run's reader: each byte sent once the last was read, each read a step
        listener = socket.create_server(("127.0.0.1", 0))
        with listener:
            port = listener.getsockname()[1]
            pool = urllib3.HTTPConnectionPool("127.0.0.1", port, timeout=urllib3.Timeout(connect=5, read=5))
            connections = direct.Connections(pool, f"http://127.0.0.1:{port}", keep=1)
            exchange = connections.start(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            server, _ = listener.accept()
            with server, selectors.DefaultSelector() as selector:
                server.recv(65536)
                selector.register(exchange.fileno(), selectors.EVENT_READ)
                for i in range(len(wire)):
                    server.sendall(wire[i:i + 1])
                    assert selector.select(5)
                    with profiled.counting():
                        got = exchange.step()  # type: ignore[assignment]
                    assert (got is None) == (i < len(wire) - 1)
    assert got is not None
    assert got.status == 200
    return profiled.calls


@pytest.mark.attack("a legal answer in 1-byte pieces (50 headers, 16-byte chunks): the one-thread reader parsed "
                    "everything received from the start at each piece, in quadratic time",
                    outcome="refused at runtime: parsing goes on from where it stopped; the calls per answer grow "
                            "linearly with its size, on both readers",
                    how="function calls counted (sys.setprofile) for answers of 1x and 4x the size")
def test_an_answer_in_one_byte_pieces_costs_work_linear_in_its_size(reading: str) -> None:
    # given: one legal answer and another 4 times its size (a longer error message), each in 1-byte pieces
    small, large = _legal_answer(2_000), _legal_answer(12_900)
    assert 3.8 < len(large) / len(small) < 4.2

    # when: each is read by the reader under test, counting the function calls it makes
    calls_small, calls_large = (_calls_to_read_byte_by_byte(reading, wire) for wire in (small, large))

    # then: linear work (4 times the bytes, about 4 times the calls; quadratic would be about 16 times), and
    # a bounded number of calls per byte received
    assert calls_large < 5 * calls_small
    assert calls_large < 40 * len(large)
