"""A loopback proxy in front of the local AWS that injects the faults AWS produces.

The bridge (handler, poller, redrive) is pointed at the proxy instead of the local AWS; everything
else (the tests' queue drainers) talks to the local AWS directly. Per request, with probability
`FaultPlan.rate`, one fault of `FaultPlan.kinds`:

- `throttle`: 400 with the service's throttling error (ThrottlingException / Throttling / SlowDown);
- `5xx`: 500 InternalError or 503 ServiceUnavailable;
- `reset`: the connection is closed without an answer (RST), half the time *after* the request was
  forwarded, the worst case for duplicates: the request took effect, the caller cannot know;
- `slow`: the answer comes `slow_seconds` late;
- `partial`: a SendMessageBatch / PublishBatch goes through with some entries removed, which come
  back in `Failed` as InternalError (SQS and SNS do this under load); other calls get a 500. In a
  FIFO request, an entry that fails takes every later entry of its message group with it: a FIFO
  queue that stored a group's later message after rejecting an earlier one would break the order it
  promises (an assumption about SQS, which documents no per-entry order rule for batches).

`down` names queues or topics that answer 503 to every send until removed (a destination outage).
`outages` does the same for an `Outage` that begins and ends on the traffic the proxy sees, not on a
clock alone: it begins at the first send to its target (after `after` were let through) and refuses
every send until at least `refused` were refused AND `seconds` have passed since the first refusal; the
first send after both goes through, and the outage is over. A poller slowed down by a loaded machine
meets the same outage as on an idle one: a timer started beside it could run out before it sent anything.
`lose` names queues or topics whose next N send requests are forwarded and then answered with a reset
connection (what a timed-out request looks like from the caller: the effect happened, the answer
was lost): how DLQ sends leave copies of one park.
Everything binds 127.0.0.1; the proxy forwards only to the upstream it was given, on loopback.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import struct
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULT_KINDS = ("throttle", "5xx", "reset", "slow", "partial")
UPSTREAM_TIMEOUT_SECONDS = 60.0
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection"}


@dataclass
class Outage:
    """One destination's outage, driven by its send requests (module docstring); the proxy fills in what
    happened (`began`, `ended` on `time.monotonic()`, `passed`, `refusals`) under its lock."""

    seconds: float = 0.0  # at least this long, from its first refused send
    refused: int = 1  # and at least this many sends refused
    after: int = 0  # sends let through before it begins
    passed: int = 0
    refusals: int = 0
    began: float | None = None
    ended: float | None = None

    def refuses(self, now: float) -> bool:
        """Whether a send to the target arriving `now` is refused; counts it either way."""
        if self.ended is None and self.passed >= self.after:
            if self.began is None:
                self.began = now
            if self.refusals < self.refused or now - self.began < self.seconds:
                self.refusals += 1
                return True
            self.ended = now
        self.passed += 1
        return False

    def describe(self, now: float | None = None) -> dict[str, Any]:
        """What the proxy saw: sends refused, and how long the outage lasted (so far, if it has not ended)."""
        end = self.ended if self.ended is not None else now
        return {"refused": self.refusals, "passed": self.passed, "ended": self.ended is not None,
                "seconds": None if self.began is None or end is None else round(end - self.began, 2)}


@dataclass
class FaultPlan:
    """What the proxy injects; change it while the proxy runs (reads take the lock)."""

    rate: float = 0.0
    kinds: tuple[str, ...] = FAULT_KINDS
    slow_seconds: float = 0.5
    down: set[str] = field(default_factory=set)  # queue or topic names that answer 503
    outages: dict[str, Outage] = field(default_factory=dict)  # name -> an outage driven by its sends
    lose: dict[str, int] = field(default_factory=dict)  # name -> how many more send answers to lose
    only_services: tuple[str, ...] = ()  # e.g. ("sqs", "sns"); empty = every service


@dataclass(frozen=True, slots=True)
class _Call:
    service: str  # sqs | sns | dynamodb | secretsmanager | s3 | other
    operation: str
    protocol: str  # json | query | rest-xml
    target_name: str | None  # queue or topic name of a send


def classify(method: str, path: str, headers: Any, body: bytes) -> _Call:
    """Which AWS call a request is, from what botocore puts on the wire."""
    target = headers.get("X-Amz-Target") or ""
    if target:
        prefix, _, operation = target.partition(".")
        service = {"AmazonSQS": "sqs", "secretsmanager": "secretsmanager"}.get(
            prefix, "dynamodb" if prefix.startswith("DynamoDB") else "other")
        name = None
        if service == "sqs":
            try:
                url = str(json.loads(body or b"{}").get("QueueUrl") or "")
            except ValueError:
                url = ""
            name = url.rstrip("/").rsplit("/", 1)[-1] or None
        return _Call(service, operation, "json", name)
    if method == "POST" and path in ("/", "") and body:
        form = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
        operation = (form.get("Action") or [""])[0]
        arn = (form.get("TopicArn") or [""])[0]
        return _Call("sns", operation, "query", arn.rsplit(":", 1)[-1] or None)
    return _Call("s3", method, "rest-xml", None)


def error_response(call: _Call, status: int, code: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of an AWS error in the call's protocol."""
    if call.protocol == "json":
        return status, "application/x-amz-json-1.0", json.dumps(
            {"__type": f"com.amazonaws#{code}", "message": "injected by the fault proxy"}).encode()
    error = f"<Code>{code}</Code><Message>injected by the fault proxy</Message>"
    if call.protocol == "query":
        body = (f'<ErrorResponse><Error><Type>{"Receiver" if status >= 500 else "Sender"}</Type>{error}</Error>'
                "<RequestId>fault-proxy</RequestId></ErrorResponse>")
    else:
        body = f"<Error>{error}<RequestId>fault-proxy</RequestId></Error>"
    return status, "text/xml", body.encode()


THROTTLE_CODES = {"sqs": "ThrottlingException", "sns": "Throttling", "dynamodb": "ThrottlingException",
                  "secretsmanager": "ThrottlingException", "s3": "SlowDown"}


@dataclass(frozen=True, slots=True)
class Exchange:
    """One forwarded request as the proxy saw it (the journal, for attributing duplicates to causes):
    when it arrived, when the local AWS answered it (it took effect by then), when the answer was
    written back to the caller (a caller killed before that never saw it), on `time.monotonic()`."""

    service: str
    operation: str
    target_name: str | None
    body: bytes
    arrived: float
    answered: float
    replied: float | None  # None: the connection was reset instead
    status: int


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that died mid-request (a SIGKILLed poller) is part of the test, not an error to print."""
        return


class FaultProxy:
    """The proxy server; `start()` it, point the bridge at `url`, `stop()` it."""

    def __init__(self, upstream_port: int, plan: FaultPlan | None = None, seed: int = 11) -> None:
        self.upstream_port = upstream_port
        self.plan = plan or FaultPlan()
        self.injected: Counter[str] = Counter()
        self.requests: Counter[str] = Counter()
        # Forwarded requests, when `journal_on` (sends and checkpoint writes: what a duplicate needs).
        self.journal: list[Exchange] = []
        self.journal_on = False
        self._rng = random.Random(seed)  # noqa: S311 - fault timing, reproducible by seed; not security
        self._lock = threading.Lock()
        # Called with each request's service before it is forwarded, on the request's own thread: a test
        # can hold one request (e.g. the first signing-key read) while it breaks the upstream.
        self.on_call: Callable[[str], None] | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # The answer goes out as two writes (headers, then body): with Nagle's algorithm the body waits
            # for the client's delayed ACK, about 40 ms per response that AWS does not add. It stretched
            # every send's "stored but not yet known" window tenfold (tests/faults/attribution.py).
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                proxy._handle(self)

            do_GET = do_POST
            do_PUT = do_POST
            do_DELETE = do_POST
            do_HEAD = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="fault-proxy")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def configure(self, **changes: Any) -> None:
        """Change the plan (rate, kinds, down, ...) while running."""
        with self._lock:
            for k, v in changes.items():
                setattr(self.plan, k, v)

    # --- one request ------------------------------------------------------------------------------

    def _choose(self, call: _Call) -> str | None:
        with self._lock:
            self.requests[call.service] += 1
            plan = self.plan
            send = call.operation in ("SendMessageBatch", "SendMessage", "PublishBatch", "Publish")
            outage = plan.outages.get(call.target_name or "") if send else None
            if send and call.target_name and (call.target_name in plan.down
                                              or (outage is not None and outage.refuses(time.monotonic()))):
                self.injected["down"] += 1
                return "down"
            if send and call.target_name and plan.lose.get(call.target_name, 0) > 0:
                plan.lose[call.target_name] -= 1
                self.injected["answer lost"] += 1
                return "lost"
            if plan.only_services and call.service not in plan.only_services:
                return None
            if plan.rate <= 0 or self._rng.random() >= plan.rate:
                return None
            kind = self._rng.choice(plan.kinds)
            self.injected[kind] += 1
            return kind

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        arrived = time.monotonic()
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        call = classify(req.command, req.path, req.headers, body)
        if self.on_call is not None:
            self.on_call(call.service)
        kind = self._choose(call)
        if kind == "down":
            return self._reply(req, *error_response(call, 503, "ServiceUnavailable"))
        if kind == "throttle":
            return self._reply(req, *error_response(call, 503 if call.service == "s3" else 400,
                                                    THROTTLE_CODES.get(call.service, "ThrottlingException")))
        if kind == "5xx" or (kind == "partial" and call.operation not in ("SendMessageBatch", "PublishBatch")):
            with self._lock:
                status = self._rng.choice((500, 503))
            return self._reply(req, *error_response(call, status,
                                                    "InternalError" if status == 500 else "ServiceUnavailable"))
        if kind in ("reset", "lost"):
            with self._lock:
                after = kind == "lost" or self._rng.random() < 0.5
            if after:
                status, _, _ = self._forward(req, body)
                self._log(call, body, arrived, status, replied=False)
            return self._reset(req)
        if kind == "slow":
            time.sleep(self.plan.slow_seconds)
        if kind == "partial":
            return self._partial(req, call, body)
        status, headers, answer = self._forward(req, body)
        answered = time.monotonic()
        try:
            self._reply(req, status, headers.get("Content-Type", "application/octet-stream"), answer, headers)
        except OSError:  # the caller died (a SIGKILLed poller) before its answer
            self._log(call, body, arrived, status, answered=answered, replied=False)
            raise
        self._log(call, body, arrived, status, answered=answered)
        return None

    _JOURNALED = frozenset({"SendMessageBatch", "SendMessage", "PublishBatch", "Publish", "BatchWriteItem"})

    def _log(self, call: _Call, body: bytes, arrived: float, status: int, *, answered: float | None = None,
             replied: bool = True) -> None:
        if not self.journal_on or call.operation not in self._JOURNALED:
            return
        now = time.monotonic()
        with self._lock:
            self.journal.append(Exchange(call.service, call.operation, call.target_name, body, arrived,
                                         answered or now, now if replied else None, status))

    def _forward(self, req: BaseHTTPRequestHandler, body: bytes) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=UPSTREAM_TIMEOUT_SECONDS)
        try:
            headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP_HEADERS}
            conn.request(req.command, req.path, body=body, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS}, resp.read()
        except OSError:
            # the local AWS itself is down (restarting): the caller's connection is dropped, unanswered
            with self._lock:
                self.injected["aws unreachable"] += 1
            raise
        finally:
            conn.close()

    @staticmethod
    def _reply(req: BaseHTTPRequestHandler, status: int, content_type: str, body: bytes,
               headers: dict[str, str] | None = None) -> None:
        req.send_response(status)
        for k, v in (headers or {}).items():
            if k.lower() not in ("content-type", "server", "date"):
                req.send_header(k, v)
        req.send_header("Content-Type", content_type)
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        if req.command != "HEAD":
            req.wfile.write(body)

    @staticmethod
    def _reset(req: BaseHTTPRequestHandler) -> None:
        sock: socket.socket = req.connection
        # SO_LINGER 0: close sends RST, as a dropped connection does
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        req.close_connection = True
        sock.close()

    def _partial(self, req: BaseHTTPRequestHandler, call: _Call, body: bytes) -> None:
        """Forward a batch send without some of its entries; report those in `Failed`."""
        if call.protocol == "json":
            doc = json.loads(body)
            entries = doc.get("Entries") or []
            failed = _with_later_in_group(self._pick(len(entries)), [e.get("MessageGroupId") for e in entries])
            doc["Entries"] = [e for i, e in enumerate(entries) if i not in failed]
            failures = [{"Id": entries[i]["Id"], "Code": "InternalError", "SenderFault": False,
                         "Message": "injected by the fault proxy"} for i in sorted(failed)]
            if doc["Entries"]:
                status, headers, answer = self._forward(req, json.dumps(doc).encode())
                if status != 200:
                    return self._reply(req, status, headers.get("Content-Type", "application/json"), answer)
                out = json.loads(answer)
            else:
                out = {"Successful": []}
            out["Failed"] = [*(out.get("Failed") or []), *failures]
            return self._reply(req, 200, "application/x-amz-json-1.0", json.dumps(out).encode())
        form = urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True)
        member = re.compile(r"^PublishBatchRequestEntries\.member\.(\d+)\.(.+)$")
        indexes = sorted({int(m.group(1)) for k, _ in form if (m := member.match(k))})
        groups = {int(m.group(1)): v for k, v in form if (m := member.match(k)) and m.group(2) == "MessageGroupId"}
        failed_idx = {indexes[i] for i in _with_later_in_group(self._pick(len(indexes)),
                                                                [groups.get(n) for n in indexes])}
        ids = {int(m.group(1)): v for k, v in form if (m := member.match(k)) and m.group(2) == "Id"}
        keep = [i for i in indexes if i not in failed_idx]
        renumber = {old: new for new, old in enumerate(keep, start=1)}
        rest = [(k, v) for k, v in form if not member.match(k)]
        moved = [(f"PublishBatchRequestEntries.member.{renumber[int(m.group(1))]}.{m.group(2)}", v)
                 for k, v in form if (m := member.match(k)) and int(m.group(1)) in renumber]
        failed_xml = "".join(f"<member><Id>{ids[i]}</Id><Code>InternalError</Code><SenderFault>false</SenderFault>"
                             "<Message>injected by the fault proxy</Message></member>" for i in sorted(failed_idx))
        if keep:
            status, headers, answer = self._forward(req, urllib.parse.urlencode(rest + moved).encode())
            if status != 200:
                return self._reply(req, status, headers.get("Content-Type", "text/xml"), answer)
            text = re.sub(r"<Failed\s*/>|<Failed>\s*</Failed>", "", answer.decode("utf-8"))
            if "<Failed>" in text:
                text = text.replace("<Failed>", f"<Failed>{failed_xml}", 1)
            else:
                text = text.replace("</PublishBatchResult>", f"<Failed>{failed_xml}</Failed></PublishBatchResult>")
        else:
            text = (f'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
                    f"<Successful/><Failed>{failed_xml}</Failed></PublishBatchResult><ResponseMetadata>"
                    "<RequestId>fault-proxy</RequestId></ResponseMetadata></PublishBatchResponse>")
        return self._reply(req, 200, "text/xml", text.encode("utf-8"))

    def _pick(self, n: int) -> set[int]:
        """A random non-empty subset of n entry positions (about a third)."""
        with self._lock:
            chosen = {i for i in range(n) if self._rng.random() < 1 / 3}
            if not chosen and n:
                chosen = {self._rng.randrange(n)}
        return chosen


def _with_later_in_group(failed: set[int], groups: list[str | None]) -> set[int]:
    """`failed` plus every later position of the same (FIFO) message group; standard entries as given."""
    out = set(failed)
    for i in sorted(failed):
        if groups[i] is not None:
            out.update(j for j in range(i + 1, len(groups)) if groups[j] == groups[i])
    return out
