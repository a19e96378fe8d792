"""bridge.adapters.direct without a network: against AWS's own endpoints (regional, FIPS, dual-stack, another
Region) the request it builds is the one botocore prepared, header for header, signature included.
tests/integration/test_direct_wire.py compares the bytes on a loopback wire, answers and errors."""

from __future__ import annotations

import json
import socket
from typing import Any

import botocore.auth
import botocore.awsrequest
import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from bridge.adapters import clients, direct

from tests.helpers import FROZEN_INVOCATION, FROZEN_NOW, RawBody, freeze_botocore_clock

NOW, INVOCATION = FROZEN_NOW, FROZEN_INVOCATION


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    freeze_botocore_clock(monkeypatch)


def _entries(service: str, fifo: bool) -> dict[str, Any]:
    body = "MessageBody" if service == "sqs" else "Message"
    entries: list[dict[str, Any]] = [
        {"Id": str(i), body: json.dumps({"order": i, "note": "ünïcode & spaces=+/"}),
         "MessageAttributes": {"correlation-id": {"DataType": "String", "StringValue": f"cid-{i}"}}}
        for i in range(10)]
    for i, entry in enumerate(entries if fifo else []):
        entry["MessageGroupId"], entry["MessageDeduplicationId"] = f"customer-{i % 3}", f"orders-0-{i}"
    name = "orders.fifo" if fifo else "orders"
    if service == "sqs":
        return {"QueueUrl": f"https://sqs.us-east-1.amazonaws.com/123456789012/{name}", "Entries": entries}
    return {"TopicArn": f"arn:aws:sns:us-east-1:123456789012:{name}", "PublishBatchRequestEntries": entries}


def _answer(request: Any, service: str) -> Any:
    if service == "sqs":
        return botocore.awsrequest.AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"},
                                               RawBody(b'{"Successful": [], "Failed": []}'))
    return botocore.awsrequest.AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, RawBody(
        b'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult><Successful/>'
        b"<Failed/></PublishBatchResult></PublishBatchResponse>"))


@pytest.mark.parametrize(("service", "fifo"), [("sqs", False), ("sqs", True), ("sns", False), ("sns", True)])
@pytest.mark.parametrize("config", [{}, {"use_fips_endpoint": True}, {"use_dualstack_endpoint": True},
                                    {"region_name": "eu-west-1"}, {"in_lambda": True}])
def test_against_aws_endpoints_the_request_is_botocores_for_its_region_fips_and_dual_stack(
        frozen: None, monkeypatch: pytest.MonkeyPatch, service: str, fifo: bool, config: dict[str, Any]) -> None:
    # given: stock clients for AWS's own endpoints (no endpoint_url), requests captured before sending;
    # in Lambda, with its trace id (botocore adds it to every request: recursion detection)
    in_lambda = config.pop("in_lambda", False)
    if in_lambda:
        monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "orders-bridge")
        monkeypatch.setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;"
                                               "Sampled=1;Lineage=a87bd80c:0")
    session = botocore.session.get_session()
    session._credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "token")
    region = config.pop("region_name", "us-east-1")
    client = session.create_client(service, region_name=region, config=clients._SEND_CONFIG.merge(Config(**config)))
    seen: list[Any] = []

    def capture(request: Any, **_: Any) -> Any:
        seen.append(request)
        return _answer(request, service)

    client.meta.events.register(f"before-send.{service}", capture)
    params = _entries(service, fifo)
    (client.send_message_batch if service == "sqs" else client.publish_batch)(**params)
    template = direct.read_template(seen[-1], session.get_credentials().secret_key)
    # when: the direct call's bytes are built from that template for the same entries
    assert template is not None
    encode = direct._sqs_body if service == "sqs" else direct._sns_body
    body = encode(params, client.meta.service_model.metadata["apiVersion"])
    assert body is not None
    trace: dict[str, str] = {}
    direct.add_recursion_detection_header(params={"headers": trace})
    call = direct.DirectBatchCall(client, keep=1, clock=lambda: NOW)
    wire = call.request_bytes(template, body, session.get_credentials().get_frozen_credentials(),
                              trace.get("X-Amzn-Trace-Id", ""))
    # then: they carry botocore's endpoint (host), headers and signature, and its body
    head, _, sent = wire.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    expected_host = botocore.auth._host_from_url(seen[-1].url)
    assert lines[:3] == ["POST / HTTP/1.1", f"Host: {expected_host}", "Accept-Encoding: identity"]
    assert lines[3:] == [f"{k}: {direct._text(v)}" for k, v in seen[-1].headers.items()]
    stock_body = seen[-1].body
    assert sent == (stock_body.encode() if isinstance(stock_body, str) else stock_body)
    assert ("X-Amzn-Trace-Id" in seen[-1].headers) == in_lambda
    if config.get("use_fips_endpoint"):
        assert "fips" in expected_host
    if config.get("use_dualstack_endpoint"):
        assert "api.aws" in expected_host


def _read(wire: bytes) -> direct.Answer:
    """`wire` read off a real socket whose other end wrote it and closed."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(wire)
        theirs.shutdown(socket.SHUT_WR)
        return direct.read_answer(direct._Reader(ours))


@pytest.mark.parametrize(("wire", "status", "body", "reusable"), [
    (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 200, b"hello", True),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: x\r\n\r\n",
     200, b"hello", True),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\ncontent-length: 2\r\nConnection: close\r\n\r\n{}",
     500, b"{}", False),
    (b"HTTP/1.0 200 OK\r\n\r\nuntil the end", 200, b"until the end", False),
    (b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 204, b"", True),
])
def test_an_answer_is_read_by_its_framing(wire: bytes, status: int, body: bytes, reusable: bool) -> None:
    # given / when: an answer as a server may frame it (length, chunks, interim 100, HTTP/1.0, no body)
    answer = _read(wire)
    # then: its status, body, and whether the connection can carry the next request
    assert (answer.status, answer.body, answer.reusable) == (status, body, reusable)


@pytest.mark.parametrize("wire", [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", b"SSH-2.0-OpenSSH\r\n",
                                  b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab"])
def test_an_answer_cut_short_or_not_http_is_a_closed_connection(wire: bytes) -> None:
    with pytest.raises(direct._Closed):
        _read(wire)


def test_the_answer_cap_is_well_above_the_largest_legal_answer() -> None:
    # given: the largest SendMessageBatch answer the limits allow, with 98 more header lines: 10 failed entries
    # with 80-character Ids, a Code and a Message of 1,024 characters that JSON escapes into 6 bytes each
    doc = {"Successful": [], "Failed": [{"Id": f"{i}".rjust(80, "x"), "SenderFault": True, "Code": "\x01" * 1024,
                                         "Message": "\x01" * 1024} for i in range(10)]}
    wire = (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
            + b"".join(b"x-amz-h%d: %s\r\n" % (i, b"v" * 100) for i in range(98)))
    body = json.dumps(doc).encode()
    wire += b"Content-Length: %d\r\n\r\n%s" % (len(body), body)

    # when / then: it is under the figure the cap is derived from, the cap leaves more than 6 times that, and
    # the reader reads it whole
    assert len(wire) <= direct._LARGEST_LEGAL_ANSWER
    assert direct._MAX_ANSWER > 6 * direct._LARGEST_LEGAL_ANSWER
    assert _read(wire).body == body
