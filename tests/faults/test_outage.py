"""The fault proxy's destination outage (bridge_local.faults.Outage) begins and ends on the sends it sees:
it begins at the first send to its target, and ends at the first send once enough were refused AND its
seconds have passed; a clock alone neither begins nor ends it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any

import pytest

from bridge_local.faults import FaultProxy, Outage

pytestmark = [pytest.mark.faults]


def test_an_outage_waits_for_its_first_send_and_ends_only_after_enough_refusals_and_its_seconds() -> None:
    outage = Outage(seconds=3.0, refused=4)
    # however long nobody sends, it has not begun
    assert outage.began is None
    # the first send begins it, at that send's moment
    assert outage.refuses(100.0)
    assert outage.began == 100.0
    # the seconds pass with too few refused: still down
    assert [outage.refuses(t) for t in (200.0, 300.0, 400.0)] == [True, True, True]
    # four refused, and more than its seconds since the first: the next send goes through, and so do later ones
    assert not outage.refuses(400.1)
    assert not outage.refuses(400.2)
    assert outage.describe() == {"refused": 4, "passed": 2, "ended": True, "seconds": 300.1}


def test_an_outage_lasts_its_seconds_however_many_sends_it_refused() -> None:
    outage = Outage(seconds=3.0, refused=2)
    assert all(outage.refuses(10.0 + i * 0.1) for i in range(29))  # 2.8 s, 29 refused
    assert not outage.refuses(13.0)
    assert outage.describe()["seconds"] == 3.0


def test_an_outage_after_n_sends_lets_them_through_first() -> None:
    outage = Outage(seconds=0.0, refused=1, after=2)
    assert [outage.refuses(t) for t in (1.0, 2.0, 3.0, 4.0)] == [False, False, True, False]
    assert outage.describe() == {"refused": 1, "passed": 3, "ended": True, "seconds": 1.0}


def test_an_outage_not_ended_is_described_up_to_the_moment_given() -> None:
    outage = Outage(seconds=60.0, refused=1)
    assert outage.describe(5.0) == {"refused": 0, "passed": 0, "ended": False, "seconds": None}
    outage.refuses(5.0)
    assert outage.describe(7.5) == {"refused": 1, "passed": 0, "ended": False, "seconds": 2.5}


class _Upstream(BaseHTTPRequestHandler):
    """Answers every request 200 with an empty JSON document: the proxy's upstream, on loopback."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
    Thread(target=upstream.serve_forever, daemon=True).start()
    proxy = FaultProxy(int(upstream.server_address[1])).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        upstream.shutdown()
        upstream.server_close()


def _send(proxy: FaultProxy, queue: str, operation: str = "SendMessageBatch") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=10)
    try:
        conn.request("POST", "/", body=json.dumps({"QueueUrl": f"http://127.0.0.1/000000000000/{queue}",
                                                   "Entries": []}),
                     headers={"X-Amz-Target": f"AmazonSQS.{operation}", "Content-Type": "application/x-amz-json-1.0"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_proxy_refuses_only_the_outage_targets_sends_and_counts_them_as_down(proxy: FaultProxy) -> None:
    outage = Outage(seconds=0.0, refused=3)
    proxy.configure(outages={"stock-alerts": outage})
    # other queues, and calls that are not sends, go through and do not begin it
    assert _send(proxy, "order-events") == 200
    assert _send(proxy, "stock-alerts", "GetQueueAttributes") == 200
    assert outage.began is None
    # its target's sends are refused (503) until three were, then go through
    assert [_send(proxy, "stock-alerts") for _ in range(5)] == [503, 503, 503, 200, 200]
    assert proxy.injected["down"] == 3
    assert outage.describe()["ended"]
