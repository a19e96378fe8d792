"""The send clients make exactly one HTTP request per delivery attempt.

A loopback HTTP server answers every request with a 500 and counts them. botocore reads
`retries={"max_attempts": N}` as N *retries* (N + 1 requests); the bridge's own retry loop counts
attempts, so anything botocore adds underneath multiplies the requests and makes the park reason's
"after N attempt(s)" false.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from bridge.adapters import clients
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.delivery import Deliverer, Target
from bridge.envelope import OutgoingMessage
from bridge.settings import Settings


class _Always500(BaseHTTPRequestHandler):
    counts: Counter[str] = Counter()
    garbled = False  # answer with a body no AWS protocol parser accepts (an HTML page from a proxy, say)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        target = self.headers.get("X-Amz-Target") or "query"
        type(self).counts[target] += 1
        if type(self).garbled:
            body, content_type = b"<html><body>502 Bad Gateway</body>", "text/html"
        elif target == "query":  # SNS speaks the query protocol: XML errors
            body = (b'<ErrorResponse><Error><Type>Receiver</Type><Code>InternalError</Code>'
                    b'<Message>injected</Message></Error><RequestId>r</RequestId></ErrorResponse>')
            content_type = "text/xml"
        else:
            body, content_type = b'{"__type":"InternalError","message":"injected"}', "application/x-amz-json-1.0"
        self.send_response(500)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def failing_endpoint() -> Iterator[tuple[str, Counter[str]]]:
    _Always500.counts = Counter()
    _Always500.garbled = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Always500.counts
    finally:
        server.shutdown()
        server.server_close()


def _settings(endpoint: str) -> Settings:
    return Settings(config_path=Path("unused.json"), account_id="123456789012", region="us-east-1",
                    parking_bucket="unused", endpoint_url=endpoint)


def _message() -> OutgoingMessage:
    return OutgoingMessage("orders-0-1", "d", "{}", (("record-id", "orders-0-1"),), "c-1", 40)


@pytest.mark.parametrize("garbled", [False, True], ids=["aws-error", "unparseable-body"])
@pytest.mark.parametrize("kind", ["sqs", "sns"])
def test_each_delivery_attempt_is_one_http_request(failing_endpoint: tuple[str, Counter[str]], kind: str,
                                                   garbled: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a destination that answers 500 to everything, and 4 delivery attempts
    endpoint, counts = failing_endpoint
    _Always500.garbled = garbled
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    settings = _settings(endpoint)
    sender = (SqsBatchSender(clients.sqs_client(settings)) if kind == "sqs"
              else SnsBatchSender(clients.sns_client(settings)))
    target = (Target("d", "sqs", f"{endpoint}/123456789012/d", 1024 * 1024) if kind == "sqs"
              else Target("d", "sns", "arn:aws:sns:us-east-1:123456789012:d", 256 * 1024))
    deliverer = Deliverer({kind: sender}, max_attempts=4, base_delay_ms=0, sleep=lambda _s: None)  # type: ignore[dict-item]

    # when
    (receipt,) = deliverer.deliver([(target, [_message()])])

    # then: 4 attempts reported, 4 requests made (botocore's max_attempts=1 made it 8); a body botocore
    # cannot parse is a retryable failure of that attempt, not an exception out of the invocation
    assert not receipt.delivered
    assert receipt.attempts == 4
    assert sum(counts.values()) == 4
