"""What the one-thread run (`MultiplexedRun`) does with a request it cannot leave in flight without waiting.

Its planning thread must never wait on the network: every request it starts goes out on an idle
non-blocking connection. Two kinds of start block instead: opening a connection (connect, then the TLS
handshake; up to `connect_timeout`, 5 s, each) and a send through botocore (a client whose direct path is
not adopted: its first requests, or a template it refused). Done on the planning thread, one after the
other, they turn an unreachable endpoint into N x attempts x 5 s (past the function's timeout, where the
send threads took attempts x 5 s), and a client on botocore into one request at a time. Each test sends
through a real SQS client to a loopback endpoint and checks where those starts ran and that the requests
overlapped, as they did on the send threads.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from bridge.adapters import clients, direct, query_body, sqs_body
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import MAX_CONCURRENCY, SQS_MAX_MESSAGE_BYTES
from bridge.delivery import Deliverer, MultiplexedRun, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import LoopbackServer, Respond, batch_success

QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", SQS_MAX_MESSAGE_BYTES)
TOPIC = Target("out", "sns", "arn:aws:sns:us-east-1:123456789012:out", SQS_MAX_MESSAGE_BYTES)
TARGETS = {"sqs": QUEUE, "sns": TOPIC}


class Sqs(LoopbackServer):
    """A loopback SQS answering every batch stored after `delay`; `peak`: the most requests it held at once."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay = delay
        self.peak = 0
        self._held = 0
        self._count = threading.Lock()

    def next_answer(self, request: bytes) -> Respond:
        def respond(conn: socket.socket, request: bytes) -> bool:
            with self._count:
                self._held += 1
                self.peak = max(self.peak, self._held)
            time.sleep(self.delay)
            with self._count:
                self._held -= 1
            conn.sendall(batch_success(request))
            return True
        return respond


def batch_sender(service: str, url: str, *, before_sign: Callable[..., None] | None = None,
                 **config: Any) -> SqsBatchSender | SnsBatchSender:
    """An SQS or SNS sender set up as clients.sqs_client / sns_client set it up; `before_sign` is registered
    before the direct call is installed (a header botocore adds that the direct path does not know)."""
    session = botocore.session.get_session()
    session._credentials = Credentials("AKIDEXAMPLE", "secret")
    client = session.create_client(service, region_name="us-east-1", endpoint_url=url,
                                   config=clients._SEND_CONFIG.merge(Config(**config)))
    if before_sign is not None:
        operation = "sqs.SendMessageBatch" if service == "sqs" else "sns.PublishBatch"
        client.meta.events.register(f"before-sign.{operation}", before_sign)
    assert (sqs_body if service == "sqs" else query_body).install(client)
    assert direct.install(client, keep=MAX_CONCURRENCY) is not None
    return SqsBatchSender(client) if service == "sqs" else SnsBatchSender(client)


def message(i: int) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", "out", f"{i}:".ljust(100, "x"), (), f"c{i}", 100)


@contextlib.contextmanager
def blackhole(port: int) -> Iterator[None]:
    """127.0.0.1:`port` answers no new connection: a listener that never accepts, its accept queue filled, so
    a connect waits until its timeout (as an endpoint behind a dropped route or security group does)."""
    hole = socket.socket()
    hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    hole.bind(("127.0.0.1", port))
    hole.listen(0)
    fillers = [socket.socket() for _ in range(3)]
    for filler in fillers:
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
    probe = socket.socket()
    probe.settimeout(0.3)
    try:
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
        yield
    finally:
        for sock in (probe, *fillers, hole):
            sock.close()


@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_an_unreachable_endpoint_is_connected_to_off_the_planning_thread_as_many_at_once_as_send_threads(
        monkeypatch: pytest.MonkeyPatch, service: str) -> None:
    # given: a sender on the direct path whose endpoint then stops taking connections (the connections it
    # kept are closed); connects time out after 0.3 s
    server = Sqs()
    sender = batch_sender(service, server.url, connect_timeout=0.3)
    target = TARGETS[service]
    for i in range(2):
        assert sender.send_batch(target, [message(-1 - i)]).failures == ()
    assert sender.multiplexed
    port = int(server.url.rsplit(":", 1)[1])
    server.close()
    opened: list[int] = []
    connecting = {"now": 0, "most": 0}
    open_connection = direct.Connections._open

    def watched(connections: direct.Connections) -> Any:
        opened.append(threading.get_ident())
        connecting["now"] += 1
        connecting["most"] = max(connecting["most"], connecting["now"])
        try:
            return open_connection(connections)
        finally:
            connecting["now"] -= 1

    monkeypatch.setattr(direct.Connections, "_open", watched)
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=2, base_delay_ms=0, max_concurrency=8)

    # when: a run of ten requests
    with blackhole(port), deliverer.start() as run:
        assert isinstance(run, MultiplexedRun)
        for i in range(100):
            run.add(target, message(i))
        receipts = run.finish()

    # then: each request's two attempts failed with botocore's connect timeout, none delivered, and no connect
    # waited on the planning thread: they waited side by side (on the old code: one at a time, 20 x 0.3 s)
    assert {(r.delivered, r.code, r.attempts) for r in receipts} == {(False, "ConnectTimeoutError", 2)}
    assert len(receipts) == 100
    assert len(opened) == 20
    assert threading.get_ident() not in opened
    assert connecting["most"] > 1
    assert not [t for t in threading.enumerate() if t.name.startswith("bridge-")], "a thread outlived its run"


def test_a_runs_starts_reuse_its_starter_threads_never_more_than_starts_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # given: as above, an endpoint that stopped taking connections: each of ten requests' two attempts opens a
    # connection on a starter thread (20 starts), at most 8 at once
    server = Sqs()
    sender = batch_sender("sqs", server.url, connect_timeout=0.2)
    for i in range(2):
        assert sender.send_batch(QUEUE, [message(-1 - i)]).failures == ()
    port = int(server.url.rsplit(":", 1)[1])
    server.close()
    starters: list[threading.Thread] = []  # the thread of each start (kept, so no two share an id)
    open_connection = direct.Connections._open

    def watched(connections: direct.Connections) -> Any:
        starters.append(threading.current_thread())
        return open_connection(connections)

    monkeypatch.setattr(direct.Connections, "_open", watched)
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=2, base_delay_ms=0, max_concurrency=8)

    # when
    with blackhole(port), deliverer.start() as run:
        for i in range(100):
            run.add(QUEUE, message(i))
        receipts = run.finish()

    # then: every start ran off the planning thread, on no more threads than the starts at once (one thread
    # per start, each holding the planning thread in `Thread.start` until it ran, before), none left
    assert {(r.delivered, r.code, r.attempts) for r in receipts} == {(False, "ConnectTimeoutError", 2)}
    assert len(starters) == 20
    assert threading.main_thread() not in starters
    assert len({id(t) for t in starters}) <= 8
    assert not [t for t in threading.enumerate() if t.name.startswith("bridge-")], "a thread outlived its run"


@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_a_client_whose_direct_path_is_refused_sends_its_first_run_side_by_side(service: str) -> None:
    # given: a client whose botocore adds a header the direct path does not write (a newer botocore's, a
    # handler of the user's): it stays on botocore ("unknown header"); its endpoint answers after 50 ms
    server = Sqs(delay=0.05)

    def corporate_tag(request: Any, **_: Any) -> None:
        request.headers["x-corp-tag"] = "1"

    sender = batch_sender(service, server.url, before_sign=corporate_tag)
    target = TARGETS[service]
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=2, base_delay_ms=0, max_concurrency=8)
    sends: list[int] = []
    send_batch = sender.send_batch

    def watched(target: Target, messages: Any) -> Any:
        sends.append(threading.get_ident())
        return send_batch(target, messages)

    sender.send_batch = watched  # type: ignore[method-assign]

    # when: its first run (a cold container's first invocation), of twenty requests
    try:
        with deliverer.start() as run:
            assert isinstance(run, MultiplexedRun)
            for i in range(200):
                run.add(target, message(i))
            receipts = run.finish()
    finally:
        server.close()

    # then: every message delivered once, the botocore sends made off the planning thread and overlapping (on
    # the old code: all twenty on the planning thread, one at a time, 20 x 50 ms); the template was refused
    assert all(r.delivered and r.attempts == 1 for r in receipts)
    assert len(receipts) == 200
    assert not sender.multiplexed, "the direct path was adopted: this test would prove nothing"
    assert len(sends) == 20
    assert threading.get_ident() not in sends
    assert server.peak > 1


def test_giving_up_a_request_after_its_answer_leaves_its_connection_to_the_next_request() -> None:
    # given: a request whose whole answer was read, so its connection went back to the idle pool (where a
    # start on another thread may take it at once), and which is then given up (the run's `_step` does so
    # when what the answer says raises an error no receipt describes; `__exit__` on Ctrl-C)
    server = Sqs()
    try:
        sender = batch_sender("sqs", server.url)
        for i in range(2):
            assert sender.send_batch(QUEUE, [message(-1 - i)]).failures == ()
        call = direct.batch_call(sender._client, "SendMessageBatch")
        assert isinstance(call, direct.DirectBatchCall)
        exchange = call.start(QueueUrl=QUEUE.address, Entries=[{"Id": "0", "MessageBody": "m"}])
        assert exchange is not None
        answer = None
        deadline = time.monotonic() + 10
        while answer is None and time.monotonic() < deadline:
            answer = exchange.step()
        assert answer is not None
        assert call.outcome(answer)["Successful"]
        pooled = exchange._connection
        assert call._connections is not None
        assert pooled in call._connections._idle
        opened = server.connections

        # when
        exchange.cancel()

        # then: the pooled connection stays open and the next request goes out on it (on the old code it was
        # closed under whoever had taken it)
        assert pooled.sock.fileno() != -1
        assert call(QueueUrl=QUEUE.address, Entries=[{"Id": "0", "MessageBody": "n"}])["Successful"]
        assert server.connections == opened
    finally:
        server.close()
