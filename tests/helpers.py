"""Test helpers: canonical events, event factories, and in-memory fakes of the bridge's ports.

The fakes enforce the same limits the real APIs do (10 entries, the batch byte limit), so a bug in
packing fails here exactly as it would against SQS/SNS.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import datetime as datetime_module
import json
import socket
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.auth
import pytest
from bridge.adapters.direct import RawBody  # noqa: F401 - re-exported: tests answer clients in-process with it
from bridge.checkpoints import CheckpointUnavailable, ProgressEntry
from bridge.config import MAX_BATCH_ENTRIES, BridgeConfig, load_config_file
from bridge.delivery import BatchOutcome, EntryFailure, SendCallError, Target
from bridge.envelope import OutgoingMessage
from bridge.settings import Settings
from bridge.signatures import sign_record
from bridge.trust import SigningKeyUnavailable

from bridge_local.redrive import LedgerUnavailable

ROOT = Path(__file__).resolve().parent.parent
EVENTS = Path(__file__).resolve().parent / "events"
DEV_CONFIG = ROOT / "config" / "dev.yaml"
MSK_ARN = "arn:aws:kafka:us-east-1:123456789012:cluster/orders/0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0-1"


def load_event(name: str) -> dict[str, Any]:
    """A canonical Lambda Kafka event from tests/events/<name>.json (a fresh copy each call)."""
    return json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))


def dev_config() -> BridgeConfig:
    """The example config the docs and the local stack use."""
    return load_config_file(DEV_CONFIG)


def make_settings(**overrides: Any) -> Settings:
    """Settings as the stack would set them."""
    values: dict[str, Any] = {
        "config_path": DEV_CONFIG, "account_id": "123456789012", "region": "us-east-1",
        "parking_bucket": "orders-bridge-parking",
    }
    values.update(overrides)
    return Settings(**values)


def make_config(**overrides: Any) -> BridgeConfig:
    """A small valid config; pass top-level fields (destinations, routes, unmatched, ...) to replace."""
    doc: dict[str, Any] = {
        "name": "test-bridge",
        "source": {"kind": "msk", "cluster_arn": MSK_ARN, "topics": ["orders", "payments", "inventory"],
                   "consumer_group_id": "test-bridge"},
        "producers": [],
        "destinations": [{"name": "out", "type": "sqs"}],
        "routes": [{"name": "all", "match": {}, "to": ["out"]}],
    }
    doc.update(overrides)
    return BridgeConfig.from_dict(doc)


def header(name: str, value: str | bytes) -> dict[str, list[int]]:
    """A header entry as Lambda sends it: signed Java byte values."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return {name: [b - 256 if b > 127 else b for b in raw]}


def kafka_record(topic: str = "orders", partition: int = 0, offset: int = 0, *, key: str | bytes | None = "k",
                 value: str | bytes | None = '{"total": 1}',
                 headers: Iterable[tuple[str, str | bytes]] = ()) -> dict[str, Any]:
    """One record dict exactly as Lambda delivers it (key absent when null)."""
    def b64(v: str | bytes) -> str:
        return base64.b64encode(v.encode("utf-8") if isinstance(v, str) else v).decode("ascii")

    rec: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset, "timestamp": 1767225600000,
                           "timestampType": "CREATE_TIME"}
    if key is not None:
        rec["key"] = b64(key)
    rec["value"] = None if value is None else b64(value)
    rec["headers"] = [header(n, v) for n, v in headers]
    return rec


def kafka_event(records: Sequence[dict[str, Any]], source: str = "aws:kafka") -> dict[str, Any]:
    """An event wrapping record dicts in Lambda's `topic-partition` map."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(copy.deepcopy(r))
    event: dict[str, Any] = {"eventSource": source, "bootstrapServers": "b-1:9098", "records": grouped}
    if source == "aws:kafka":
        event["eventSourceArn"] = MSK_ARN
    return event


Reject = Callable[[Target, OutgoingMessage], "tuple[str, bool] | None"]

# The clock and invocation id the direct-send tests fix for botocore and the direct calls alike.
FROZEN_NOW = datetime_module.datetime(2026, 12, 2, 1, 2, 3)
FROZEN_INVOCATION = uuid.UUID("12345678-1234-5678-1234-567812345678")


class _FrozenDatetimeModule:
    """`datetime` as older botocore's auth module uses it, its clock stopped at FROZEN_NOW."""

    class datetime(datetime_module.datetime):
        @classmethod
        def utcnow(cls) -> datetime_module.datetime:
            return FROZEN_NOW

    def __getattr__(self, name: str) -> Any:
        return getattr(datetime_module, name)


def freeze_botocore_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore's signing clock at FROZEN_NOW and uuid4 at FROZEN_INVOCATION (the direct calls are given
    the same), so a direct request's bytes can be compared with botocore's."""
    if hasattr(botocore.auth, "get_current_datetime"):
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: FROZEN_NOW)
    else:  # the Lambda runtime's older botocore reads datetime.datetime.utcnow()
        monkeypatch.setattr(botocore.auth, "datetime", _FrozenDatetimeModule())
    monkeypatch.setattr(uuid, "uuid4", lambda: FROZEN_INVOCATION)


Respond = Callable[[socket.socket, bytes], bool]  # writes a request's answer; False: the connection ends


class LoopbackServer:
    """A raw HTTP/1.1 test server on 127.0.0.1 (keep-alive), for answers no real server would give:
    records each whole request's bytes and answers it with what `next_answer` picks, under one lock so
    requests and answers stay paired across connections; `drop_idle` closes every connection as a
    server closes idle ones."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[bytes] = []
        self.connections = 0
        self.open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def next_answer(self, request: bytes) -> Respond:
        raise NotImplementedError

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                self.open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            for request in http_requests(conn):
                with self._lock:
                    self.requests.append(request)
                    respond = self.next_answer(request)
                if not respond(conn, request):
                    return

    def drop_idle(self) -> None:
        """Close every connection (the client sees the FIN when it next looks at the connection)."""
        while self.open:
            conn = self.open.pop()
            with contextlib.suppress(OSError):  # already closed by its thread
                conn.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone does not
        self.listener.close()
        self.drop_idle()


def batch_answer(body: bytes, content_type: str, extra: str = "") -> bytes:
    """A whole HTTP/1.1 200 answer with `body` (keep-alive); `extra`: more header lines, each ending CRLF."""
    return (f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nx-amzn-RequestId: r-1\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def batch_success_body(request: bytes) -> tuple[bytes, str]:
    """The body and Content-Type accepting every entry of a SendMessageBatch (JSON) or PublishBatch (query)
    request."""
    head, _, body = request.partition(b"\r\n\r\n")
    if b"X-Amz-Target" in head:
        ids = [e["Id"] for e in json.loads(body)["Entries"]]
        doc = {"Successful": [{"Id": i, "MessageId": f"m-{i}", "MD5OfMessageBody": "0" * 32} for i in ids],
               "Failed": []}
        return json.dumps(doc).encode(), "application/x-amz-json-1.0"
    members = "".join(f"<member><Id>{i}</Id><MessageId>m-{i}</MessageId></member>"
                      for i in range(body.count(b".Id=")))
    return (f'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
            f"<Successful>{members}</Successful><Failed/></PublishBatchResult><ResponseMetadata><RequestId>r-1"
            f"</RequestId></ResponseMetadata></PublishBatchResponse>").encode(), "text/xml"


def batch_success(request: bytes) -> bytes:
    """The whole answer accepting every entry of a SendMessageBatch or PublishBatch request."""
    return batch_answer(*batch_success_body(request))


class BatchEndpoint(LoopbackServer):
    """Answers each SQS or SNS batch request with the next of `answers` (a function of the request's bytes),
    or `batch_success` when none is queued; connections stay open."""

    def __init__(self) -> None:
        self.answers: list[Callable[[bytes], bytes]] = []
        super().__init__()

    def next_answer(self, request: bytes) -> Respond:
        make = self.answers.pop(0) if self.answers else batch_success

        def respond(conn: socket.socket, request: bytes) -> bool:
            conn.sendall(make(request))
            return True
        return respond


def answer_send_message_batch(handler: Any, ids: Iterable[str]) -> None:
    """Write SQS's JSON success answer for SendMessageBatch entries `ids` from an
    `http.server.BaseHTTPRequestHandler` (HTTP/1.1, keep-alive)."""
    body = json.dumps({"Successful": [{"Id": i, "MessageId": "m", "MD5OfMessageBody": "x"} for i in ids],
                       "Failed": []}).encode()
    handler.send_response(200)
    handler.send_header("Content-Type", "application/x-amz-json-1.0")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def http_requests(conn: socket.socket) -> Iterator[bytes]:
    """Each whole request (head and Content-Length body) a loopback test server's connection receives,
    until the peer closes it; OSError from the socket reaches the caller."""
    data = b""
    while True:
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(rest) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return
            rest += chunk
        yield head + b"\r\n\r\n" + rest[:length]
        data = rest[length:]


class MemoryOnFailureObjects:
    """The mapping's S3 on-failure objects in memory, for `bridge_local.replay.replay_on_failure`."""

    where = "memory://on-failure/"

    def __init__(self, docs: dict[str, Any]) -> None:
        self.docs = {k: json.dumps(v).encode() for k, v in docs.items()}

    def list_keys(self) -> list[str]:
        return sorted(self.docs)

    def read(self, key: str) -> bytes:
        return self.docs[key]

    def delete(self, key: str) -> None:
        del self.docs[key]


class FakeSender:
    """In-memory `BatchSender`: records calls, enforces API limits, rejects entries on request.

    `reject(target, message)` returns (code, sender_fault) to fail that entry, or None.
    `call_errors` are raised by the next calls, one each, before anything is sent.
    """

    def __init__(self, reject: Reject | None = None, call_errors: Iterable[SendCallError] = ()) -> None:
        self.reject = reject
        self.call_errors = list(call_errors)
        self.calls: list[tuple[Target, list[OutgoingMessage]]] = []
        self.sent: dict[str, list[OutgoingMessage]] = defaultdict(list)

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        self.calls.append((target, list(messages)))
        if len(messages) > MAX_BATCH_ENTRIES:
            raise SendCallError("TooManyEntriesInBatchRequest", retryable=False)
        if sum(m.size for m in messages) > target.max_bytes:
            raise SendCallError("BatchRequestTooLong", retryable=False)
        if self.call_errors:
            raise self.call_errors.pop(0)
        failures = []
        for i, m in enumerate(messages):
            verdict = self.reject(target, m) if self.reject else None
            if verdict is None:
                self.sent[target.name].append(m)
            else:
                failures.append(EntryFailure(i, verdict[0], "rejected by the fake", verdict[1]))
        return BatchOutcome(tuple(failures))

    def calls_to(self, name: str) -> list[list[OutgoingMessage]]:
        """The batches sent to one target."""
        return [msgs for t, msgs in self.calls if t.name == name]


class Multiplexed:
    """A fake sender whose requests `MultiplexedRun` leaves in flight (a `MultiplexedSender`): each `start`
    hands the request to a thread that plays the service (the wrapped fake's `send_batch`, its latency and
    bookkeeping included) and signals the answer on a socket pair, which the run's selector watches; the
    run takes the outcome when it next looks. `started` counts the requests so started. With `at_once`, the
    service answers within `start` (no thread), so the run's batch cuts do not depend on when a thread
    answers."""

    multiplexed = True

    def __init__(self, sender: Any, *, at_once: bool = False) -> None:
        self.sender = sender
        self.at_once = at_once
        self.started = 0

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        return self.sender.send_batch(target, messages)  # type: ignore[no-any-return]

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> _FakeInFlight:
        self.started += 1
        return _FakeInFlight(self.sender, target, list(messages), at_once=self.at_once)

    def __getattr__(self, name: str) -> Any:  # the wrapped fake's records (sent, calls, requests, ...)
        return getattr(self.sender, name)


class _FakeInFlight:
    wants_write = False
    deadline = float("inf")

    def __init__(self, sender: Any, target: Target, messages: list[OutgoingMessage], *, at_once: bool) -> None:
        self._ours, self._theirs = socket.socketpair()
        self._answer: BatchOutcome | BaseException | None = None
        if at_once:
            self._serve(sender, target, messages)
        else:
            threading.Thread(target=self._serve, args=(sender, target, messages), daemon=True).start()

    def _serve(self, sender: Any, target: Target, messages: list[OutgoingMessage]) -> None:
        try:
            self._answer = sender.send_batch(target, messages)
        except BaseException as exc:  # handed to the run, as the request's outcome
            self._answer = exc
        with contextlib.suppress(OSError):  # the run gave the request up (`cancel`): nobody reads the answer
            self._theirs.send(b"!")

    def fileno(self) -> int:
        return self._ours.fileno()

    def step(self, expired: bool = False) -> BatchOutcome | None:
        if expired:
            self.cancel()
            raise SendCallError("ReadTimeout", "no answer within the read timeout")
        if not self._ours.recv(1):
            return None
        self.cancel()
        if isinstance(self._answer, BaseException):
            raise self._answer
        return self._answer

    def cancel(self) -> None:
        self._ours.close()
        self._theirs.close()


class FakeStore:
    """In-memory `ObjectStore`."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, body: bytes) -> str:
        self.objects[key] = body
        return f"s3://fake-bucket/{key}"


class FakeKeys:
    """In-memory `SigningKeys` that remembers which producers' keys were read.

    `keys` are the current keys, `previous` the keys before a rotation; `fail` makes every read
    raise SigningKeyUnavailable (a Secrets Manager outage).
    """

    def __init__(self, keys: dict[str, bytes] | None = None, previous: dict[str, bytes] | None = None) -> None:
        self.keys = keys or {}
        self.previous = previous or {}
        self.fail = False
        self.fetched: list[str] = []

    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        self.fetched.append(producer)
        if self.fail or producer not in self.keys:
            raise SigningKeyUnavailable(f"no key for {producer}")
        previous = self.previous.get(producer)
        return (self.keys[producer],) if previous is None else (self.keys[producer], previous)


SIGNATURE_HEADER = "x-bridge-signature"
PRODUCER_HEADER = "x-bridge-producer"
MESSAGE_ID_HEADER = "x-bridge-message-id"
RECORD_TIMESTAMP = 1767225600000  # what `kafka_record` sets


def signed_record(secret: bytes, producer: str, topic: str = "orders", partition: int = 0, offset: int = 0, *,
                  key: str | bytes | None = "k", value: str | bytes | None = '{"total": 1}',
                  headers: Iterable[tuple[str, str | bytes]] = (), timestamp: int = RECORD_TIMESTAMP,
                  message_id: str | None = "") -> dict[str, Any]:
    """`kafka_record` with the producer header and its signature over the whole record (appended last),
    as a producer following bridge.signatures sends it. A message id header is added unless the headers
    carry one or `message_id` is None (`""`: one made from topic, partition and offset)."""
    def raw(v: str | bytes | None) -> bytes | None:
        return v.encode("utf-8") if isinstance(v, str) else v

    headers = list(headers)
    if message_id is not None and all(n != MESSAGE_ID_HEADER for n, _ in headers):
        headers.append((MESSAGE_ID_HEADER, message_id or f"msg-{topic}-{partition}-{offset}"))
    named = [*headers, (PRODUCER_HEADER, producer)]
    sig = sign_record(secret, producer=producer, topic=topic, timestamp=timestamp, key=raw(key),
                      value=raw(value), headers=[(n, raw(v)) for n, v in named], signature_header=SIGNATURE_HEADER)
    rec = kafka_record(topic, partition, offset, key=key, value=value, headers=[*named, (SIGNATURE_HEADER, sig)])
    rec["timestamp"] = timestamp
    return rec


def fixed_clock() -> datetime:
    """A clock that always says 2026-01-01T00:00:00Z."""
    return datetime(2026, 1, 1, tzinfo=UTC)


def no_sleep(_seconds: float) -> None:
    """Tests never sleep."""


def parked_docs(sender: FakeSender, dlq_name: str) -> list[dict[str, Any]]:
    """The JSON documents sent to the bridge DLQ."""
    return [json.loads(m.body) for m in sender.sent.get(dlq_name, [])]


def audit_events(sender: FakeSender, topic_name: str) -> list[dict[str, Any]]:
    """The audit events published."""
    return [json.loads(m.body) for m in sender.sent.get(topic_name, [])]


class FakeCheckpoints:
    """In-memory `CheckpointStore`; `fail` makes every read and write raise CheckpointUnavailable."""

    def __init__(self) -> None:
        self.entries: list[ProgressEntry] = []
        self.reads = 0
        self.writes = 0
        self.fail = False

    def read(self, shards: Sequence[str]) -> list[ProgressEntry]:
        self.reads += 1
        if self.fail:
            raise CheckpointUnavailable("fake outage")
        wanted = set(shards)
        return [e for e in self.entries if e.shard in wanted]

    def write(self, entries: Sequence[ProgressEntry]) -> None:
        self.writes += 1
        if self.fail:
            raise CheckpointUnavailable("fake outage")
        self.entries.extend(entries)


class MemoryLedger:
    """In-memory `bridge_local.redrive.RedriveLedger`; `fail` makes every call raise LedgerUnavailable."""

    where = "table memory"

    def __init__(self) -> None:
        self.digests: set[str] = set()
        self.records: dict[str, str] = {}
        self.fail = False

    def _check(self, call: str) -> None:
        if self.fail:
            raise LedgerUnavailable(f"memory: {call} refused (ProvisionedThroughputExceededException)")

    def replayed(self, digests: Sequence[str]) -> set[str]:
        self._check("replayed")
        return self.digests & set(digests)

    def record(self, digests: Sequence[str]) -> None:
        self._check("record")
        self.digests.update(digests)

    def replayed_records(self, keys: Sequence[str]) -> dict[str, str]:
        self._check("replayed_records")
        return {k: self.records[k] for k in keys if k in self.records}

    def record_records(self, digests: Mapping[str, str]) -> None:
        self._check("record_records")
        self.records.update(digests)
