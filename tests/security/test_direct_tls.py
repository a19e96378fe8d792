"""The direct sends (bridge.adapters.direct) verify the endpoint's certificate exactly as botocore does.

They write signed batches on connections they keep themselves, so a connection opened with another TLS
setup (no verification, the system's CAs instead of the configured bundle) would hand the batch, its
signature and the session token to whoever answers. Attack: once the direct path is sending, the
endpoint is replaced by one with a certificate from a CA the client does not trust (a man in the
middle); the next batch must fail with botocore's SSLError before any byte of it is sent.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import trustme
from botocore.credentials import Credentials
from botocore.exceptions import SSLError
from bridge.adapters import clients, direct, sqs_body
from bridge.adapters.errors import call_error
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import SQS_MAX_MESSAGE_BYTES
from bridge.delivery import Deliverer, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import answer_send_message_batch


class TlsSqs:
    """A loopback SQS over HTTPS (keep-alive) whose certificate can be swapped; counts requests."""

    def __init__(self, ca: trustme.CA) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(self.context)
        self.requests = 0
        self.sockets: list[socket.socket] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                outer.sockets.append(self.connection)

            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests += 1
                answer_send_message_batch(self, (e["Id"] for e in doc["Entries"]))

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = self.context.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def impersonated_by(self, rogue: trustme.CA) -> None:
        """From now on the endpoint presents a certificate for the same address from `rogue`, and the
        connections the client keeps are closed (it must connect, and shake hands, again)."""
        rogue.issue_cert("127.0.0.1").configure_cert(self.context)
        while self.sockets:
            try:
                self.sockets.pop().shutdown(socket.SHUT_RDWR)
            except OSError:
                continue

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def endpoint(ca: trustme.CA) -> Iterator[TlsSqs]:
    server = TlsSqs(ca)
    yield server
    server.close()


def _direct_call(url: str, bundle: Path) -> direct.DirectBatchCall:
    session = botocore.session.get_session()
    session._credentials = Credentials("AKIDEXAMPLE", "secret", "session-token")
    client = session.create_client("sqs", region_name="us-east-1", endpoint_url=url, verify=str(bundle),
                                   config=clients._SEND_CONFIG)
    assert sqs_body.install(client)
    return direct.DirectBatchCall(client, keep=2)


PARAMS: dict[str, Any] = {"QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/orders",
                          "Entries": [{"Id": "0", "MessageBody": "secret order"}]}


def test_a_man_in_the_middle_certificate_stops_the_direct_send_before_a_byte_is_sent(
        endpoint: TlsSqs, ca: trustme.CA, tmp_path: Path) -> None:
    # given: a client trusting only the endpoint's CA (`verify` = its bundle) sending directly over TLS
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    call = _direct_call(endpoint.url, bundle)
    for _ in range(3):
        assert call(**PARAMS)["Failed"] == []
    assert call.direct
    sent = endpoint.requests
    # when: someone else answers at that address, with a certificate from a CA the client does not trust
    endpoint.impersonated_by(trustme.CA())
    with pytest.raises(SSLError) as refused:
        call(**PARAMS)
    # then: botocore's SSLError (delivery retries it, then parks), and the batch never reached the impostor
    assert endpoint.requests == sent
    assert call_error(refused.value).retryable


def test_a_certificate_the_configured_bundle_does_not_sign_is_refused_from_the_first_request(
        endpoint: TlsSqs, tmp_path: Path) -> None:
    # given: a client whose bundle holds another CA than the endpoint's
    bundle = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(bundle))
    call = _direct_call(endpoint.url, bundle)
    # when: it sends three times (botocore twice, which gives the direct call its template, then directly)
    for _ in range(3):
        with pytest.raises(SSLError):
            call(**PARAMS)
    # then: each failed verification, the direct one too, and nothing reached the endpoint
    assert call.direct
    assert endpoint.requests == 0


# --- the same on the one-thread path: requests left in flight on non-blocking TLS sockets ---------------

QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", SQS_MAX_MESSAGE_BYTES)


def _multiplexed_deliverer(url: str, bundle: Path, attempts: int = 3) -> Deliverer:
    """A Deliverer over an SQS sender on the direct path (its first two requests sent through botocore)."""
    session = botocore.session.get_session()
    session._credentials = Credentials("AKIDEXAMPLE", "secret", "session-token")
    client = session.create_client("sqs", region_name="us-east-1", endpoint_url=url, verify=str(bundle),
                                   config=clients._SEND_CONFIG)
    assert sqs_body.install(client)
    assert direct.install(client, keep=4) is not None
    sender = SqsBatchSender(client)
    for _ in range(2):
        assert sender.send_batch(QUEUE, [_message(-1)]).failures == ()
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=attempts, base_delay_ms=0, max_concurrency=4)
    assert deliverer.multiplexed()
    return deliverer


def _message(i: int, size: int = 100) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", "out", f"{i}:".ljust(size, "x"), (), f"c{i}", size)


def test_a_one_thread_run_over_tls_writes_large_requests_in_pieces_and_delivers_each_once(
        endpoint: TlsSqs, ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: 250 KiB requests through a 4 KiB send buffer, so TLS records wait for room (SSLWantWrite)
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    deliverer = _multiplexed_deliverer(endpoint.url, bundle)
    open_connection, step = direct.Connections._open, direct.Exchange.step
    blocked = {"writes": 0}

    def small_send_buffer(connections: direct.Connections) -> Any:
        connection = open_connection(connections)
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return connection

    def counted(exchange: direct.Exchange, expired: bool = False, *, answer: bool = True) -> direct.Answer | None:
        outcome = step(exchange, expired, answer=answer)
        blocked["writes"] += outcome is None and exchange.wants_write
        return outcome

    monkeypatch.setattr(direct.Connections, "_open", small_send_buffer)
    monkeypatch.setattr(direct.Exchange, "step", counted)
    sent = endpoint.requests

    # when
    receipts = deliverer.deliver([(QUEUE, [_message(i, 25_000) for i in range(40)])])

    # then: every message delivered by one request each, over certificate-checked TLS
    assert blocked["writes"] > 0, "no write waited for room: this test would prove nothing about it"
    assert all(r.delivered and r.attempts == 1 for r in receipts)
    assert endpoint.requests - sent == 4


def test_a_man_in_the_middle_certificate_stops_the_one_thread_run_before_a_byte_is_sent(
        endpoint: TlsSqs, ca: trustme.CA, tmp_path: Path) -> None:
    # given: the direct path adopted over TLS, then someone else answers at that address with a certificate
    # from a CA the client does not trust
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    deliverer = _multiplexed_deliverer(endpoint.url, bundle, attempts=2)
    endpoint.impersonated_by(trustme.CA())
    sent = endpoint.requests

    # when
    receipts = deliverer.deliver([(QUEUE, [_message(i) for i in range(30)])])

    # then: every attempt failed verification (botocore's SSLError, retried, then failed back for parking),
    # and no batch reached the impostor
    assert [r.delivered for r in receipts] == [False] * 30
    assert {r.attempts for r in receipts} == {2}
    assert endpoint.requests == sent
