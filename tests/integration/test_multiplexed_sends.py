"""One thread, many requests in flight: `MultiplexedRun` over the direct path's non-blocking connections.

Each test sends through a real SQS client whose batches go on the wire directly (bridge.adapters.direct)
to a loopback server that misbehaves on purpose: slow, out-of-order, cut-off, silent and slow-reading
answers. Each checks what the send threads guaranteed before: every message delivered or failed once,
retries per the rules, a broken connection never reused, botocore's read timeout per request, and no
send thread started.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.credentials import Credentials
from bridge.adapters import clients, direct, sqs_body
from bridge.adapters.checkpoint_writer import CheckpointWriter
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import MAX_CONCURRENCY, SQS_MAX_MESSAGE_BYTES
from bridge.delivery import Deliverer, DeliveryReceipt, MultiplexedRun, Target
from bridge.envelope import OutgoingMessage

from tests.helpers import LoopbackServer, Respond, http_requests

QUEUE = Target("out", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/out", SQS_MAX_MESSAGE_BYTES)


def entries_of(request: bytes) -> list[dict[str, Any]]:
    return json.loads(request.partition(b"\r\n\r\n")[2])["Entries"]  # type: ignore[no-any-return]


def sqs_answer(request: bytes, *, failed: tuple[str, bool] | None = None) -> bytes:
    """SendMessageBatch's answer to `request`: every entry stored, or every entry failed with `failed`."""
    ids = [e["Id"] for e in entries_of(request)]
    if failed is None:
        doc: dict[str, Any] = {"Successful": [{"Id": i, "MessageId": "m", "MD5OfMessageBody": "x"} for i in ids],
                               "Failed": []}
    else:
        doc = {"Successful": [], "Failed": [{"Id": i, "Code": failed[0], "Message": "", "SenderFault": failed[1]}
                                            for i in ids]}
    body = json.dumps(doc).encode()
    return (b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)


class Sqs(LoopbackServer):
    """A loopback SQS: `answer(n, request)` picks how request number n (from 0) is answered (default: at
    once, all stored); `bodies` are the message bodies it stored, `peak` the most requests it held at once."""

    def __init__(self, answer: Callable[[int, bytes], Respond] | None = None) -> None:
        super().__init__()
        self.answer = answer or (lambda n, request: stored())
        self.bodies: list[str] = []
        self.peak = 0
        self._held = 0
        self._count = threading.Lock()

    def next_answer(self, request: bytes) -> Respond:
        respond = self.answer(len(self.requests) - 1, request)

        def tracked(conn: socket.socket, request: bytes) -> bool:
            with self._count:
                self._held += 1
                self.peak = max(self.peak, self._held)
            try:
                return respond(conn, request)
            finally:
                with self._count:
                    self._held -= 1
        return tracked

    def store(self, request: bytes) -> None:
        with self._count:
            self.bodies += [e["MessageBody"] for e in entries_of(request)]


def stored(server: Sqs | None = None, delay: float = 0.0) -> Respond:
    def respond(conn: socket.socket, request: bytes) -> bool:
        time.sleep(delay)
        if server is not None:
            server.store(request)
        conn.sendall(sqs_answer(request))
        return True
    return respond


@pytest.fixture
def make_sender() -> Iterator[Callable[..., SqsBatchSender]]:
    servers: list[LoopbackServer] = []

    def build(server: LoopbackServer, read_timeout: float = 20) -> SqsBatchSender:
        servers.append(server)
        session = botocore.session.get_session()
        session._credentials = Credentials("AKIDEXAMPLE", "secret")
        client = session.create_client("sqs", region_name="us-east-1", endpoint_url=server.url,
                                       config=clients._SEND_CONFIG.merge(Config(read_timeout=read_timeout)))
        assert sqs_body.install(client)
        assert direct.install(client, keep=MAX_CONCURRENCY) is not None
        sender = SqsBatchSender(client)
        answer = getattr(server, "answer", None)
        if isinstance(server, Sqs):  # botocore sends the first two (the second one is the template)
            server.answer = lambda n, request: stored()
        for i in range(2):
            assert sender.send_batch(QUEUE, [message(-1 - i)]).failures == ()
        if isinstance(server, Sqs) and answer is not None:
            server.requests.clear()  # request numbers count from the first one a test sends
            server.answer = answer
        assert sender.multiplexed
        return sender

    yield build
    for server in servers:
        server.close()


def message(i: int, size: int = 100) -> OutgoingMessage:
    return OutgoingMessage(f"orders-0-{i}", "out", f"{i}:".ljust(size, "x"), (), f"c{i}", size)


def deliver(sender: SqsBatchSender, messages: list[OutgoingMessage], *, concurrency: int = 8, attempts: int = 3,
            base_delay_ms: int = 0) -> list[DeliveryReceipt]:
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=attempts, base_delay_ms=base_delay_ms,
                          max_concurrency=concurrency)
    before = set(threading.enumerate())
    with deliverer.start() as run:
        assert isinstance(run, MultiplexedRun)
        for m in messages:
            run.add(QUEUE, m)
        receipts = run.finish()
    assert set(threading.enumerate()) <= before | {t for t in threading.enumerate() if t.daemon
                                                   and not t.name.startswith("bridge-send")}
    assert not [t for t in threading.enumerate() if t.name.startswith("bridge-send")], "a send thread ran"
    return receipts


def test_one_thread_keeps_requests_in_flight_and_takes_answers_in_any_order(
        make_sender: Callable[..., SqsBatchSender]) -> None:
    # given: an SQS whose answers take 0-40 ms each, in whatever order they come
    rng = random.Random(5)
    server = Sqs()
    server.answer = lambda n, request: stored(server, rng.random() / 25)
    sender = make_sender(server)
    messages = [message(i) for i in range(400)]

    # when: one run with up to 8 requests in flight, on the planning thread alone
    receipts = deliver(sender, messages)

    # then: the requests overlapped, and each message was stored once and is delivered
    assert server.peak > 2, "the requests were not in flight together: this test would prove nothing"
    assert sorted(server.bodies) == sorted(m.body for m in messages)
    assert [r.message for r in receipts if r.delivered] == [r.message for r in receipts]
    assert len(receipts) == len(messages)


def closed(before_answer: bytes) -> Respond:
    """Close the connection after writing `before_answer` (nothing, a status line, half an answer)."""
    def respond(conn: socket.socket, request: bytes) -> bool:
        if before_answer == b"half":
            conn.sendall(sqs_answer(request)[:-20])
        else:
            conn.sendall(before_answer)
        conn.shutdown(socket.SHUT_RDWR)
        return False
    return respond


@pytest.mark.parametrize("before_answer", [b"", b"HTTP/1.1 200 OK\r\n", b"half"],
                         ids=["no-answer", "status-line-only", "half-an-answer"])
def test_a_connection_closed_mid_flight_is_retried_on_a_new_connection(
        make_sender: Callable[..., SqsBatchSender], before_answer: bytes) -> None:
    # given: the third request's connection is closed before its answer is whole; the others answer late
    server = Sqs()
    server.answer = lambda n, request: closed(before_answer) if n == 2 else stored(server, 0.01)
    sender = make_sender(server)
    messages = [message(i) for i in range(100)]

    # when
    receipts = deliver(sender, messages)

    # then: that batch was sent once more (ConnectionClosedError is retried), and only once: the closed
    # connection was not used again (a request on it would have failed too)
    assert len(server.requests) == 11
    assert entries_of(server.requests[2]) in [entries_of(r) for r in server.requests[3:]]
    assert sorted(server.bodies) == sorted(m.body for m in messages)
    assert all(r.delivered for r in receipts)
    assert {r.attempts for r in receipts} == {1, 2}


def test_a_large_batch_is_written_as_a_slow_reader_takes_it(
        make_sender: Callable[..., SqsBatchSender], monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a server that reads 4 KiB at a time, slowly, through a small receive buffer; 250 KiB requests
    # (ten 25 KiB messages) from a small send buffer
    class SlowReader(Sqs):
        def _serve(self, conn: socket.socket) -> None:
            class Slow:
                def recv(self, size: int) -> bytes:
                    time.sleep(0.001)
                    return conn.recv(min(size, 4096))

            with conn, contextlib.suppress(OSError):
                for request in http_requests(Slow()):  # type: ignore[arg-type]
                    with self._lock:
                        self.requests.append(request)
                        respond = self.next_answer(request)
                    if not respond(conn, request):
                        return

    server = SlowReader()
    server.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # inherited by what it accepts
    server.answer = lambda n, request: stored(server)
    sender = make_sender(server)
    blocked = {"writes": 0}
    step = direct.Exchange.step

    def counted(exchange: direct.Exchange, expired: bool = False, *, answer: bool = True) -> direct.Answer | None:
        outcome = step(exchange, expired, answer=answer)
        blocked["writes"] += outcome is None and exchange.wants_write
        return outcome

    monkeypatch.setattr(direct.Exchange, "step", counted)
    open_connection = direct.Connections._open

    def small_send_buffer(connections: direct.Connections) -> Any:
        connection = open_connection(connections)
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        return connection

    monkeypatch.setattr(direct.Connections, "_open", small_send_buffer)
    messages = [message(i, 25_000) for i in range(30)]

    # when
    receipts = deliver(sender, messages, concurrency=2)

    # then: the requests went out in pieces (the socket took part of one and said when it took more),
    # and arrived whole
    assert blocked["writes"] > 0
    assert sorted(server.bodies) == sorted(m.body for m in messages)
    assert all(r.delivered for r in receipts)


def test_botocores_read_timeout_ends_a_silent_request_which_is_retried(
        make_sender: Callable[..., SqsBatchSender]) -> None:
    # given: a 0.5 s read timeout; the first request is never answered (its connection stays open)
    server = Sqs()
    silent = threading.Event()

    def never(conn: socket.socket, request: bytes) -> bool:
        silent.wait(10)
        return False

    server.answer = lambda n, request: never if n == 0 else stored(server)
    sender = make_sender(server, read_timeout=0.5)
    messages = [message(i) for i in range(50)]

    # when
    started = time.monotonic()
    receipts = deliver(sender, messages)
    took = time.monotonic() - started
    silent.set()

    # then: that batch timed out once and was delivered by its second attempt; the others went on meanwhile
    assert sorted(server.bodies) == sorted(m.body for m in messages)
    assert sorted(r.attempts for r in receipts) == [1] * 40 + [2] * 10
    assert 0.5 <= took < 5, "given up at the read timeout, not when the server closed after 10 s"


def test_a_backoff_does_not_hold_up_the_answers_of_other_requests(make_sender: Callable[..., SqsBatchSender]) -> None:
    # given: the first request is throttled and waits out a 1 s backoff (rand: the ceiling); the others
    # are answered after 20 ms each, two in flight besides it
    server = Sqs()
    server.answer = lambda n, request: (
        (lambda conn, req: conn.sendall(sqs_answer(req, failed=("ThrottlingException", False))) or True)
        if n == 0 else stored(server, 0.02))
    sender = make_sender(server)
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=3, base_delay_ms=1000, max_concurrency=3,
                          rand=lambda lo, hi: hi)

    # when
    with deliverer.start() as run:
        for i in range(100):
            run.add(QUEUE, message(i))
        receipts = run.finish()

    # then: every other batch was sent (and answered) before the throttled one went again
    retried = [n for n, r in enumerate(server.requests) if entries_of(r) == entries_of(server.requests[0])]
    assert retried == [0, len(server.requests) - 1]
    assert all(r.delivered for r in receipts)


def test_an_interrupt_in_planning_leaves_no_half_used_connection_to_the_next_run(
        make_sender: Callable[..., SqsBatchSender], monkeypatch: pytest.MonkeyPatch) -> None:
    # given: requests in flight whose answers (every entry failed) come only after planning was interrupted
    server = Sqs()
    late = threading.Event()

    def late_failure(conn: socket.socket, request: bytes) -> bool:
        late.wait(10)
        conn.sendall(sqs_answer(request, failed=("StaleAnswer", True)))
        return True

    first_run = {f"{i}:" for i in range(40)}
    server.answer = lambda n, request: (late_failure if entries_of(request)[0]["MessageBody"][:3] in first_run
                                        else stored(server))
    sender = make_sender(server)
    # four connections open and idle, so the run below starts its requests on the planning thread (a start
    # that opens a connection runs on a thread of its own, and might not have begun at the interrupt)
    assert all(r.delivered for r in deliver(sender, [message(i) for i in range(100, 140)], concurrency=4))
    exchanges: list[direct.Exchange] = []
    start = direct.Connections.start

    def watched(connections: direct.Connections, request: bytes) -> direct.Exchange:
        exchanges.append(start(connections, request))
        return exchanges[-1]

    monkeypatch.setattr(direct.Connections, "start", watched)
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=1, base_delay_ms=0, max_concurrency=4)

    def plan_until_interrupted() -> None:
        with deliverer.start() as run:
            for i in range(40):
                run.add(QUEUE, message(i))
            assert exchanges, "nothing was in flight: this test would prove nothing"
            raise KeyboardInterrupt

    # when: Ctrl-C while those requests are in flight; then their answers arrive; then the next run
    with pytest.raises(KeyboardInterrupt):
        plan_until_interrupted()
    late.set()

    # then: every connection the interrupted run used is closed, none is back among the idle ones, and the
    # next run reads none of the late answers
    assert [e._connection.sock.fileno() for e in exchanges] == [-1] * len(exchanges)
    receipts = deliver(sender, [message(i) for i in range(40, 100)], concurrency=4)
    assert all(r.delivered for r in receipts), {r.code for r in receipts}


def test_an_idle_connection_past_file_descriptor_1023_is_reused_and_a_closed_one_is_not() -> None:
    # given: an idle connection whose file descriptor is past 1023, where select.select() raises (a process
    # with many files open); its peer first idle, then closed
    ours, theirs = socket.socketpair()
    high = os.dup2(ours.fileno(), 1500)
    ours.close()
    sock = socket.socket(fileno=high)
    connection = direct._Connection(sock, sock)  # owner: what is closed with it
    try:
        # when / then: still open reads as not dropped (select.select's ValueError read as dropped, and
        # every idle connection was thrown away); closed by the peer reads as dropped
        assert not connection.dropped()
        theirs.close()
        assert connection.dropped()
    finally:
        connection.close()


def test_a_checkpointed_standard_request_whose_answer_was_lost_keeps_its_slot_through_its_backoff(
        make_sender: Callable[..., SqsBatchSender]) -> None:
    # given: checkpoints on (one standard request unrecorded at a time, 4 messages a request, the CheckpointWriter);
    # queue "lost" stores each request's first attempt and closes the connection without an answer (a timed-out
    # or reset request: it took effect, the caller cannot know), and answers its retry; queue "up" stores at once
    lost = Target("lost", "sqs", QUEUE.address.replace("/out", "/lost"), SQS_MAX_MESSAGE_BYTES)
    up = Target("up", "sqs", QUEUE.address.replace("/out", "/up"), SQS_MAX_MESSAGE_BYTES)
    server = Sqs()
    written: list[str] = []
    at_arrival: list[tuple[set[str], set[str]]] = []  # (stored, unrecorded; the arriving request's bodies)
    seen: set[frozenset[str]] = set()
    lock = threading.Lock()

    def answer(n: int, request: bytes) -> Respond:
        bodies = frozenset(e["MessageBody"] for e in entries_of(request))
        with lock:
            at_arrival.append((set(server.bodies) - set(written), set(bodies)))
        if json.loads(request.partition(b"\r\n\r\n")[2])["QueueUrl"].endswith("/lost") and bodies not in seen:
            seen.add(bodies)
            server.store(request)
            return closed(b"")
        return stored(server)

    def on_delivered(messages: Any) -> None:
        with lock:
            written.extend(m.body for m in messages)

    server.answer = answer
    sender = make_sender(server)
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=3, base_delay_ms=200, max_concurrency=8,
                          rand=lambda lo, hi: hi, hand_off=CheckpointWriter)

    # when: 3 requests' worth to "lost" planned first, then 3 to "up"
    with deliverer.start(on_delivered, standard_in_flight=1, standard_entries=4) as run:
        assert isinstance(run, MultiplexedRun)
        for i in range(12):
            run.add(lost, message(i))
        for i in range(100, 112):
            run.add(up, message(i))
        receipts = run.finish()

    # then: the checkpoint window held: no request arrived while another's stored messages were unrecorded,
    # though each "lost" request waited out a backoff with its first attempt stored and unanswered (a crash then
    # would re-send them: giving its slot up would have let a second request's messages be at risk as well)
    assert all(unrecorded <= own for unrecorded, own in at_arrival), at_arrival
    assert all(r.delivered for r in receipts), {r.code for r in receipts}
    assert len(server.requests) == 9  # 3 lost and retried, 3 up
