"""Delivery's send threads, up to `settings.max_concurrency`, each keep one connection of the send client.

botocore's pool keeps `max_pool_connections` connections (10 unless set); a thread beyond them opens a
connection per request and throws it away afterwards, so the client's pool must be as large as the
largest concurrency the config allows.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from bridge.adapters import clients
from bridge.config import MAX_CONCURRENCY
from bridge.settings import Settings

from tests.helpers import answer_send_message_batch


def test_send_threads_up_to_max_concurrency_reuse_their_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a loopback SQS that answers a request only once every thread's request has arrived, so all
    # MAX_CONCURRENCY requests are in flight at once (botocore's default pool keeps 10 connections)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    threads, rounds = MAX_CONCURRENCY, 3
    together = threading.Barrier(threads, timeout=10)
    peers: set[tuple[str, int]] = set()
    lock = threading.Lock()

    class Sqs(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as SQS

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with lock:
                peers.add(self.client_address)
            together.wait()
            answer_send_message_batch(self, ["0"])

        def log_message(self, *_: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = threads  # every thread's connect accepted at once (the default backlog is 5)

    server = Server(("127.0.0.1", 0), Sqs)
    server.daemon_threads = True
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}"
        client = clients.sqs_client(Settings(config_path=Path("unused.json"), account_id="123456789012",
                                             region="us-east-1", parking_bucket="unused", endpoint_url=endpoint))

        def send(_: int) -> None:
            client.send_message_batch(QueueUrl=f"{endpoint}/123456789012/q",
                                      Entries=[{"Id": "0", "MessageBody": "b"}])

        # when: every thread sends `rounds` times, all threads' requests in flight together each time
        with ThreadPoolExecutor(threads) as pool:
            for _ in range(rounds):
                list(pool.map(send, range(threads)))
    finally:
        server.shutdown()
        server.server_close()

    # then: one connection per thread, kept for its next requests, not one per request beyond the 10th
    assert len(peers) == threads
