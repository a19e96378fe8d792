"""SendMessageBatch and PublishBatch sent straight on the wire, with the request botocore would send.

Through botocore, one batch request of ten 1 KiB messages cost this process about 700 µs of CPU over
loopback, of which the bytes on the wire (serialising, SigV4, one write, one read) need about 150:
the rest is a dozen event emissions that do nothing for these calls, endpoint-ruleset resolution and
a user agent rebuilt per request, the AWSRequest -> AWSPreparedRequest -> urllib3 -> http.client
layers, two socket writes, the email-package header parser and a shape walk over the answer.

`DirectBatchCall` sends what botocore sends, taken from botocore itself: the client's second
SendMessageBatch / PublishBatch goes through botocore as usual, and a `before-send` handler reads off
that prepared request a `Template` (URL, header names in order, the constant header values, the
SigV4 scope and signed-header list). It is adopted only if this module's SigV4 reproduces botocore's
Authorization header for that very request, byte for byte, and every header is one it knows
(`_CONSTANT`, `_PER_REQUEST`). From then on each call
- serialises the entries as the client's own serializer does (bridge.adapters.sqs_body /
  .query_body, which fall back to botocore for anything else),
- takes the credentials from the client's signer each time (`get_frozen_credentials`, so role
  credentials refresh as botocore refreshes them), the clock, a fresh invocation id, the Lambda
  trace header (botocore's own `add_recursion_detection_header`), signs with SigV4 (the signing key
  derived once per day and secret),
- writes the request in one `sendall` on a keep-alive connection that the client's own urllib3 pool
  opened (TLS, CA bundle, verification and timeouts as botocore configured them),
- reads the answer, and hands anything but the expected success (an error status, an unexpected
  body) to the client's own parser and `after-call` handlers, raising what botocore would raise.

`DirectBatchCall.start` does the same without waiting: the request goes out on a non-blocking
connection (`Exchange`), written as the socket takes it and its answer read as it arrives, whenever the
caller (bridge.delivery.MultiplexedRun, one thread watching every connection) finds the socket ready;
the answer is parsed by the same `_parse` as its bytes arrive and taken by the same `outcome`.

Everything else stays botocore's: a client that has seen any handler registered or removed since it
was built (a Stubber, a test's `before-send` answer), a patched `_make_api_call` (the X-Ray SDK), a
proxy, a header or signature this module does not reproduce, credentials with or without a session
token unlike the template, entries the fast serialisers do not take. Retries stay bridge.delivery's
(the clients make one attempt: clients.SEND_TOTAL_ATTEMPTS); errors are botocore's classes with
botocore's codes, so bridge.adapters.errors maps them as before. tests/unit/test_direct.py compares
the bytes with botocore's (docs/decisions.md, 2026-12-02).
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import select
import socket
import ssl
import time
import types
import uuid
import weakref
import xml.etree.ElementTree as ET
from collections.abc import Callable, Generator, Mapping
from typing import Any
from urllib.parse import urlsplit

import botocore.client
import urllib3.exceptions as u3  # botocore's HTTP client, imported with it
from botocore import xform_name
from botocore.awsrequest import AWSResponse
from botocore.endpoint import convert_to_response_dict
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    HTTPClientError,
    ReadTimeoutError,
    SSLError,
)
from botocore.handlers import add_recursion_detection_header

from bridge.adapters import query_body, sqs_body
from bridge.config import MAX_BATCH_ENTRIES
from bridge.frozen import lean
from bridge.settings import observability_names

# Headers whose value is the same on every request of a client (taken from botocore's request)...
_CONSTANT = frozenset({"x-amz-target", "content-type", "x-amzn-query-mode", "user-agent", "amz-sdk-request"})
# ...and those written per request. Any other header in botocore's request: botocore sends them all.
_PER_REQUEST = frozenset({"x-amz-date", "x-amz-security-token", "authorization", "amz-sdk-invocation-id",
                          "content-length", "x-amzn-trace-id"})
_ALGORITHM = "AWS4-HMAC-SHA256"
_MAX_LINE = 65536  # longest status or header line read from an answer (http.client's limit)
_MAX_HEADERS = 100  # most header lines in one answer (http.client's limit: botocore refuses more)
# Most interim (1xx) answers before the answer. The bridge never sends `Expect: 100-continue`, so AWS sends
# none; http.client skips any number, and an endless stream of them held a reader forever.
_MAX_INTERIM = 16
# The largest answer read (status line, headers and body, interim answers included); past it the answer is a
# retryable ConnectionClosedError and the connection is closed, so a broken or hostile endpoint (or a proxy)
# sending an endless or huge answer costs at most this much memory and CPU. The largest legal answer is far
# smaller: MAX_BATCH_ENTRIES entries, each at most an Id (80 characters, the batch entry limit), a MessageId
# (a 36-character UUID), three MD5 digests (32 each), a SequenceNumber (128 bits: 39 digits) and, when
# failed, a Code and a Message, which the service models do not bound (AWS's are one sentence: 1,024
# characters each allowed here); every character escaped at worst into 6 bytes (JSON \uXXXX, XML &quot;),
# plus 512 bytes of markup per entry and 16 KiB of status line and headers (AWS sends about 500 bytes):
# _LARGEST_LEGAL_ANSWER, 159,444 bytes. The cap leaves 6.6 times that (an error page from a proxy fits too).
_LARGEST_LEGAL_ANSWER = MAX_BATCH_ENTRIES * (6 * (80 + 36 + 3 * 32 + 39 + 2 * 1024) + 512) + 16384
_MAX_ANSWER = 1 << 20
# An idle connection `Connections.ready` found open this recently is not polled again by `_acquire` (a
# poll is ~2 µs, and the start that asked `ready` takes that connection straight after).
_CHECKED_FOR_S = 0.001
_STOCK_MAKE_API_CALL = botocore.client.BaseClient.__dict__.get("_make_api_call")


@lean(frozen=True)
class Template:
    """What every request of one client and operation shares, read off one request botocore sent."""

    url: str
    path: str
    host: str  # the Host header, as SigV4 signs it (botocore's `_host_from_url`)
    headers: tuple[tuple[str, str], ...]  # (name, constant value or "" if written per request), in order
    signed: tuple[str, ...]  # SignedHeaders, lower-case and sorted as botocore lists them
    region: str
    service: str
    with_token: bool
    with_trace: bool


def _host_from_url(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def authorization(template: Template, values: Mapping[str, str], body: bytes, amz_date: str, access_key: str,
                  key: bytes) -> str:
    """The SigV4 Authorization header botocore's `SigV4Auth` writes for a POST of `body` with header
    `values` (lower-case names; `host` included) to the template's path."""
    canonical_headers = "".join(f"{name}:{' '.join(values[name].split())}\n" for name in template.signed)
    signed = ";".join(template.signed)
    canonical = f"POST\n{template.path}\n\n{canonical_headers}\n{signed}\n{hashlib.sha256(body).hexdigest()}"
    scope = f"{amz_date[:8]}/{template.region}/{template.service}/aws4_request"
    to_sign = f"{_ALGORITHM}\n{amz_date}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{_ALGORITHM} Credential={access_key}/{scope}, SignedHeaders={signed}, Signature={signature}"


def read_template(request: Any, secret_key: str) -> Template | None:
    """The template of botocore's prepared `request`, or None unless every header is known and this
    module's SigV4, given `secret_key`, writes exactly the request's Authorization header."""
    template = template_or_refusal(request, secret_key)
    return template if isinstance(template, Template) else None


Refusal = tuple[str, str]  # why a client stays on botocore: (reason, detail), logged by `log_decision`


def template_or_refusal(request: Any, secret_key: str) -> Template | Refusal:
    """`read_template`, or why there is none: ("request shape" | "unknown header" | "signature mismatch",
    what differs; header names only, never values)."""
    headers = [(str(k), _text(v)) for k, v in request.headers.items()]
    names = [k.lower() for k, _ in headers]
    values = {k.lower(): v for k, v in headers}
    parts = urlsplit(request.url)
    unknown = sorted(set(names) - (_CONSTANT | _PER_REQUEST))
    if unknown:
        return ("unknown header", ", ".join(unknown)[:200])
    if (request.method != "POST" or parts.scheme not in ("http", "https") or parts.query or parts.fragment
            or len(set(names)) != len(names) or any(not values[name] for name in set(names) & _CONSTANT)
            or not {"authorization", "x-amz-date", "content-length"} <= set(names)):
        return ("request shape", "not a POST to an http(s) URL without query, or a header repeated, empty or missing")
    auth = values["authorization"]
    prefix = f"{_ALGORITHM} Credential="
    # not SigV4: an empty credential, refused below with the other scopes it does not sign
    credential, _, rest = auth[len(prefix):].partition(", SignedHeaders=") if auth.startswith(prefix) else ("", "", "")
    signed, _, _signature = rest.partition(", Signature=")
    access_key, date, region, service, terminal = [*credential.split("/"), "", "", "", "", ""][:5]
    host = _host_from_url(request.url)
    template = Template(
        url=request.url, path=parts.path or "/", host=host,
        headers=tuple((k, "" if k.lower() in _PER_REQUEST else v) for k, v in headers),
        signed=tuple(signed.split(";")), region=region, service=service,
        with_token="x-amz-security-token" in values, with_trace="x-amzn-trace-id" in values)
    body = request.body.encode("utf-8") if isinstance(request.body, str) else request.body
    if (terminal != "aws4_request" or template.path != "/" or not isinstance(body, bytes)
            or date != values["x-amz-date"][:8] or list(template.signed) != sorted(set(template.signed))
            or not set(template.signed) <= {"host", *names} - {"authorization", "user-agent", "amz-sdk-invocation-id",
                                                                 "amz-sdk-request", "x-amzn-trace-id"}
            or values["content-length"] != str(len(body))):
        return ("signature mismatch", "not SigV4, or a scope, signed-header list, path or body it does not sign")
    key = _signing_key(secret_key, date, region, service)
    if authorization(template, {**values, "host": host}, body, values["x-amz-date"], access_key, key) != auth:
        return ("signature mismatch", "its SigV4 differs from botocore's Authorization header")
    return template


# One line per client when it starts sending directly or stays on botocore (a child of the handler's
# Powertools logger: JSON, with the batch's correlation id); no payloads, no secrets.
decisions = logging.getLogger(f"{observability_names()[0]}.direct_sends")


def log_decision(client: Any, refusal: Refusal | None) -> None:
    """Log `direct sends on` (refusal None) or `direct sends off` with its reason, for `client`."""
    service = client.meta.service_model.service_name
    extra = {"client": service, "endpoint_host": urlsplit(client.meta.endpoint_url).hostname or ""}
    if refusal is None:
        decisions.info("direct sends on", extra=extra)
    else:
        decisions.info("direct sends off", extra={**extra, "reason": refusal[0], "detail": refusal[1]})


# --- the wire ----------------------------------------------------------------------------------------

class _Closed(Exception):
    """The connection ended before a whole answer was read."""


@lean
class Answer:
    """The status, headers and body of one answer to a direct call."""

    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes
    reusable: bool


class _Reader:
    """A connection's bytes received and not read yet, as `_parse` reads them (`line`, `take`, `rest`):
    buffered here rather than in a `makefile` so that bytes past the end of an answer are seen (`left`), as
    a connection holding any is not reused (they would be read as the next request's answer, and select()
    cannot see a BufferedReader's buffer). A read that needs bytes not received yet returns None (the
    reader `fill`s, blocking; the one-thread reader `feed`s what arrives), and the next one goes on from
    where the last stopped: a line is searched only in bytes not searched yet, so an answer in 1-byte pieces
    costs time linear in its size. Counts the bytes of the answer being read (`taken`) against
    `_MAX_ANSWER`."""

    __slots__ = ("_data", "_pos", "_scanned", "_sock", "ended", "taken")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._data, self._pos, self._scanned = bytearray(), 0, 0  # `_scanned`: where a line's LF is looked for
        self.ended = False  # the other end closed the connection
        self.taken = 0

    def left(self) -> int:
        """Bytes received and not read yet."""
        return len(self._data) - self._pos

    def fill(self) -> None:
        """What the socket has, waiting for it (the blocking reader)."""
        self.feed(self._sock.recv(65536))

    def feed(self, chunk: bytes) -> None:
        """Bytes received (none: the other end closed the connection)."""
        if not chunk:
            self.ended = True
            return
        data, pos = self._data, self._pos
        if pos and 2 * pos >= len(data):  # drop what was read, at most as many bytes moved as were read
            del data[:pos]
            self._scanned -= pos
            self._pos = 0
        data += chunk

    def _took(self, stop: int) -> bytes:
        taken = self.taken + stop - self._pos
        if taken > _MAX_ANSWER:
            raise _Closed(f"answer larger than {_MAX_ANSWER} bytes")
        piece = bytes(self._data[self._pos:stop])
        self._pos = self._scanned = stop
        self.taken = taken
        return piece

    def _short(self) -> None:
        """None to return: more is needed, unless what was received already exceeds the cap."""
        if self.taken + self.left() > _MAX_ANSWER:
            raise _Closed(f"answer larger than {_MAX_ANSWER} bytes")

    def line(self, limit: int) -> bytes | None:
        """Up to and including the next LF, at most `limit` bytes; fewer, without LF, at the end."""
        data, pos = self._data, self._pos
        end = data.find(b"\n", max(pos, self._scanned), pos + limit)
        if end >= 0:
            return self._took(end + 1)
        if len(data) - pos >= limit or self.ended:
            return self._took(min(len(data), pos + limit))
        self._scanned = len(data)
        self._short()
        return None

    def take(self, size: int) -> bytes | None:
        """`size` bytes (fewer at the end); refused at once when they would exceed the cap."""
        if self.taken + size > _MAX_ANSWER:
            raise _Closed(f"answer larger than {_MAX_ANSWER} bytes")
        if self.left() >= size or self.ended:
            return self._took(min(len(self._data), self._pos + size))
        self._short()
        return None

    def rest(self) -> bytes | None:
        """Everything up to the end of the connection."""
        if self.ended:
            return self._took(len(self._data))
        self._short()
        return None

    def close(self) -> None:
        self._data, self._pos, self._scanned = bytearray(), 0, 0


# What `_parse` yields while it waits for more bytes.
_Parsing = Generator[None, None, "Answer"]


def read_answer(stream: _Reader) -> Answer:
    """One HTTP/1.1 answer from a connection, waiting for its bytes (`_parse`)."""
    parsing = _parse(stream)
    while True:
        try:
            next(parsing)
        except StopIteration as done:
            answer: Answer = done.value
            return answer
        stream.fill()


def _parse(stream: _Reader) -> _Parsing:
    """One HTTP/1.1 answer from `stream`, yielding whenever it needs bytes not received yet (the caller
    receives more and resumes it, so nothing is parsed twice): interim (1xx) answers skipped, the body by
    Content-Length, chunked, or up to the end of the connection (then not reusable); none for 204 and 304.
    Header lines and their number are limited as http.client limits them (botocore's answer to more is
    ConnectionClosedError), the whole answer by `_MAX_ANSWER`."""
    stream.taken = 0
    for _ in range(_MAX_INTERIM + 1):
        while (line := stream.line(_MAX_LINE + 1)) is None:
            yield
        if not line:
            raise _Closed("no answer")
        version, _, rest = line.decode("latin-1").partition(" ")
        code = rest.strip().partition(" ")[0]
        if not version.startswith("HTTP/") or len(line) > _MAX_LINE or len(code) != 3 or not code.isdigit():
            raise _Closed(f"not an HTTP status line: {line[:40]!r}")
        status = int(code)
        headers: dict[str, str] = {}
        for _ in range(_MAX_HEADERS + 1):
            while (field := stream.line(_MAX_LINE + 1)) is None:
                yield
            if not field:
                raise _Closed("headers cut short")
            if field in (b"\r\n", b"\n"):
                break
            if len(field) > _MAX_LINE:
                raise _Closed("header line too long")
            name, _, value = field.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        else:
            raise _Closed(f"more than {_MAX_HEADERS} headers")
        if not 100 <= status < 200:
            break
    else:
        raise _Closed(f"more than {_MAX_INTERIM} interim answers")
    reusable = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()  # as http.client
    body: bytes | None
    if status in (204, 304):  # no body, whatever the headers say (RFC 9112, 6.3)
        body = b""
    elif "chunked" in headers.get("transfer-encoding", "").lower():
        body = yield from _chunked(stream)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        if length < 0:
            raise _Closed("negative Content-Length")
        while (body := stream.take(length)) is None:
            yield
        if len(body) != length:
            raise _Closed("body cut short")
    else:
        while (body := stream.rest()) is None:
            yield
        reusable = False
    return Answer(status, headers, body, reusable)


def _chunked(stream: _Reader) -> Generator[None, None, bytes]:
    chunks: list[bytes] = []
    while True:
        while (line := stream.line(_MAX_LINE + 1)) is None:
            yield
        size = int(line.split(b";", 1)[0].strip() or b"x", 16)
        if size < 0:
            raise _Closed("negative chunk size")
        if size == 0:
            while True:  # trailers
                while (line := stream.line(_MAX_LINE + 1)) is None:
                    yield
                if line in (b"\r\n", b"\n", b""):
                    return b"".join(chunks)
        while (chunk := stream.take(size)) is None:
            yield
        while (line := stream.line(_MAX_LINE + 1)) is None:
            yield
        if len(chunk) != size or line not in (b"\r\n", b"\n"):
            raise _Closed("chunk cut short")
        chunks.append(chunk)


class _Connection:
    def __init__(self, owner: Any, sock: Any) -> None:
        self.owner, self.sock = owner, sock  # owner: urllib3's connection object, closed with the socket
        self.stream = _Reader(sock)

    def dropped(self) -> bool:
        """Whether the idle connection was closed by the other end (readable while idle: EOF or
        stray bytes; or in error), as urllib3 checks before it reuses a pooled connection. poll, not
        select.select, which refuses a file descriptor past 1023."""
        try:
            poller = select.poll()
            poller.register(self.sock, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        for closing in (self.stream.close, self.owner.close):
            try:
                closing()
            except Exception:  # noqa: S112 - closing a broken connection: nothing left to do
                continue


def _close_all(idle: list[_Connection]) -> None:
    while idle:
        idle.pop().close()


class Connections:
    """Keep-alive connections to one endpoint, opened by the client's own urllib3 pool (`_new_conn`:
    TLS context, CA bundle, verification, socket options and timeouts as botocore set them up) and
    then used directly. Idle connections are shared by the sending threads, at most `keep` of them."""

    def __init__(self, pool: Any, url: str, keep: int) -> None:
        self._pool, self._url, self._keep = pool, url, keep
        self._read_timeout = pool.timeout.read_timeout
        self._idle: list[_Connection] = []
        self._checked: tuple[_Connection | None, float] = (None, 0.0)  # what `ready` last found open, and when
        weakref.finalize(self, _close_all, self._idle)

    def exchange(self, request: bytes) -> Answer:
        """Send `request` (a whole HTTP/1.1 request) and read its answer, as botocore's exceptions."""
        connection = self._acquire()
        if connection.sock.gettimeout() != self._read_timeout:  # it was last used by an `Exchange`
            connection.sock.settimeout(self._read_timeout)
        try:
            connection.sock.sendall(request)
            answer = read_answer(connection.stream)
        except TimeoutError as exc:
            connection.close()
            raise ReadTimeoutError(endpoint_url=self._url, error=exc) from exc
        except (OSError, _Closed, ValueError) as exc:
            connection.close()
            raise ConnectionClosedError(endpoint_url=self._url, error=exc) from exc
        self._release(connection, answer, bool(connection.stream.left()))
        return answer

    def ready(self) -> bool:
        """Whether `start` has an idle connection the other end has not closed, so it need not open one
        (connect and TLS handshake: a wait of up to the connect timeout that a one-thread run does off its
        planning thread). Closed ones are dropped here, as `_acquire` drops them."""
        idle = self._idle
        while True:
            try:
                connection = idle[-1]
            except IndexError:
                return False
            if not connection.dropped():
                self._checked = (connection, time.monotonic())
                return True
            try:
                idle.remove(connection)
            except ValueError:  # another thread took it
                continue
            connection.close()

    def start(self, request: bytes) -> Exchange:
        """`request` under way on a non-blocking connection (`Exchange`); raises botocore's exceptions
        when no connection could be opened."""
        connection = self._acquire()
        connection.sock.setblocking(False)
        exchange = Exchange(self, connection, request)
        exchange.step(answer=False)  # written now as far as the socket takes it, not at the caller's next look
        return exchange

    def _acquire(self) -> _Connection:
        """An idle connection the other end has not closed, or a new one."""
        checked, when = self._checked
        while self._idle:
            try:
                connection = self._idle.pop()
            except IndexError:  # another thread took the last one
                break
            if (connection is checked and time.monotonic() - when < _CHECKED_FOR_S) or not connection.dropped():
                return connection
            connection.close()
        return self._open()

    def _release(self, connection: _Connection, answer: Answer, leftover: bool) -> None:
        """Back to the idle connections, unless the answer or the bytes after it (`leftover`) say it
        must not be reused."""
        if (answer.reusable and not leftover and len(self._idle) < self._keep
                and not (isinstance(connection.sock, ssl.SSLSocket) and connection.sock.pending())):
            self._idle.append(connection)
        else:
            connection.close()

    def _open(self) -> _Connection:
        try:
            owner = self._pool._new_conn()
            owner.connect()
            owner.sock.settimeout(self._read_timeout)
            return _Connection(owner, owner.sock)
        # In botocore's order: urllib3's NewConnectionError is also a ConnectTimeoutError.
        except (u3.SSLError, ssl.SSLError, ssl.CertificateError) as exc:
            raise SSLError(endpoint_url=self._url, error=exc) from exc
        except (u3.NewConnectionError, socket.gaierror) as exc:
            raise EndpointConnectionError(endpoint_url=self._url, error=exc) from exc
        except (u3.ConnectTimeoutError, TimeoutError) as exc:
            raise ConnectTimeoutError(endpoint_url=self._url, error=exc) from exc
        except OSError as exc:
            raise EndpointConnectionError(endpoint_url=self._url, error=exc) from exc
        except Exception as exc:
            raise HTTPClientError(error=exc) from exc


class Exchange:
    """One request on a non-blocking connection, moved on by `step` whenever the socket is ready (the
    caller watches `fileno()` for writing while `wants_write`, else for reading): the request written as
    the socket takes it, then the answer read as it arrives and parsed by `_parse`, as `exchange`
    parses it. TLS sockets too: a TLS record may need the other direction first (SSLWantRead while
    writing, SSLWantWrite while reading). The connection goes back to the idle pool on `exchange`'s terms
    only, and never after an error or `cancel`."""

    __slots__ = ("_answered", "_connection", "_connections", "_parsing", "_request", "_sent", "deadline",
                 "wants_write")

    def __init__(self, connections: Connections, connection: _Connection, request: bytes) -> None:
        self._connections, self._connection = connections, connection
        self._request = memoryview(request)
        self._sent = 0
        self._parsing = _parse(connection.stream)  # the answer, parsed as its bytes arrive
        self._answered = False  # the whole answer read: the connection is the idle pool's (or closed) now
        self.wants_write = True
        self.deadline = 0.0
        self._progressed()

    def _progressed(self) -> None:
        """As a blocking socket's timeout counts: the read timeout runs again from each byte moved."""
        timeout = self._connections._read_timeout
        self.deadline = time.monotonic() + (timeout if timeout is not None else float("inf"))

    def fileno(self) -> int:
        return int(self._connection.sock.fileno())

    def step(self, expired: bool = False, *, answer: bool = True) -> Answer | None:
        """Write or read what the socket takes now (without `answer`: only write); the answer once it is
        whole, else None. Raises botocore's ReadTimeoutError when `expired` (the deadline passed),
        ConnectionClosedError when the connection failed or the answer is not HTTP."""
        url = self._connections._url
        try:
            if expired:
                raise TimeoutError("no progress within the read timeout")
            return self._read() if self._written() and answer else None
        except TimeoutError as exc:
            self.cancel()
            raise ReadTimeoutError(endpoint_url=url, error=exc) from exc
        except (OSError, _Closed, ValueError) as exc:
            self.cancel()
            raise ConnectionClosedError(endpoint_url=url, error=exc) from exc

    def _written(self) -> bool:
        """Whether the whole request is written (as much of it as the socket takes is written now)."""
        sock, request = self._connection.sock, self._request
        if self._sent < len(request):
            try:
                while self._sent < len(request):
                    self._sent += sock.send(request[self._sent:])
                    self._progressed()
            except (BlockingIOError, ssl.SSLWantWriteError):
                self.wants_write = True
                return False
            except ssl.SSLWantReadError:
                self.wants_write = False
                return False
        self.wants_write = False
        return True

    def _read(self) -> Answer | None:
        sock, stream = self._connection.sock, self._connection.stream
        while True:
            try:
                chunk = sock.recv(65536)
            except (BlockingIOError, ssl.SSLWantReadError):
                return None
            except ssl.SSLWantWriteError:
                self.wants_write = True
                return None
            if chunk:
                self._progressed()
            stream.feed(chunk)
            try:  # parsed on from where the last chunk left it, and at most _MAX_ANSWER bytes of it
                next(self._parsing)
            except StopIteration as done:
                answer: Answer = done.value
                break
        self._answered = True
        self._connections._release(self._connection, answer, bool(stream.left()) or stream.ended)
        return answer

    def cancel(self) -> None:
        """Give the request up: the connection is closed, not reused; once its answer was read, the
        connection is no longer this request's (back in the idle pool, maybe taken by another start)."""
        if not self._answered:
            self._connection.close()


# --- the call --------------------------------------------------------------------------------------

def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _invocation_id() -> str:
    return str(uuid.uuid4())


class RawBody:
    """A response body as botocore's `AWSResponse` reads it (`stream()`, `read()`): the direct call hands
    an answer it does not take for success to botocore's parser in one; tests and benchmarks answer a real
    botocore client in-process with it (`AWSResponse(url, status, headers, RawBody(data))`)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data

    def read(self, *_: Any) -> bytes:
        return self.data


def _sqs_body(parameters: dict[str, Any], _version: str) -> bytes | None:
    if not sqs_body.plain_send_message_batch(parameters):
        return None
    return json.dumps(parameters).encode("utf-8")


def _sns_body(parameters: dict[str, Any], version: str) -> bytes | None:
    try:
        form = query_body.publish_batch_form(parameters, version)
    except UnicodeEncodeError:  # a lone surrogate: botocore raises it on its own path
        return None
    return None if form is None else form.encode("utf-8")


def _sqs_answer(body: bytes) -> dict[str, Any] | None:
    """SendMessageBatch's JSON answer, when it is the expected object of two lists."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):  # not JSON, not UTF-8, nested past the limit: botocore's parser says
        return None
    if not (isinstance(doc, dict) and isinstance(doc.get("Successful", []), list)
            and isinstance(doc.get("Failed", []), list)):
        return None
    return {"Successful": doc.get("Successful", []), "Failed": doc.get("Failed", [])}


_SNS_NS = "{http://sns.amazonaws.com/doc/2010-03-31/}"
_SNS_BOOLEANS = frozenset({"SenderFault"})


def _sns_answer(body: bytes) -> dict[str, Any] | None:
    """PublishBatch's XML answer as botocore's parser gives it (namespace dropped, SenderFault a bool),
    when it has the expected PublishBatchResult."""
    try:
        root = ET.fromstring(body)  # noqa: S314 - the service's answer over TLS; botocore parses it so too
    except ET.ParseError:
        return None
    result = root.find(f"{_SNS_NS}PublishBatchResult")
    if root.tag != f"{_SNS_NS}PublishBatchResponse" or result is None:
        return None
    out: dict[str, Any] = {"Successful": [], "Failed": []}
    for list_name, members in out.items():
        for member in result.iterfind(f"{_SNS_NS}{list_name}/{_SNS_NS}member"):
            entry: dict[str, Any] = {}
            for field in member:
                name, text = field.tag.rpartition("}")[2], field.text or ""
                entry[name] = text == "true" if name in _SNS_BOOLEANS else text
            members.append(entry)
    return out


_OPERATIONS: dict[str, tuple[str, Callable[[dict[str, Any], str], bytes | None],
                             Callable[[bytes], dict[str, Any] | None]]] = {
    "sqs": ("SendMessageBatch", _sqs_body, _sqs_answer),
    "sns": ("PublishBatch", _sns_body, _sns_answer),
}


class DirectBatchCall:
    """`client.send_message_batch` / `client.publish_batch` (keyword arguments, the parsed answer),
    sent directly once a template is adopted, through botocore otherwise (module docstring)."""

    def __init__(self, client: Any, *, keep: int, clock: Callable[[], datetime.datetime] = _now,
                 invocation_id: Callable[[], str] = _invocation_id) -> None:
        service = client.meta.service_model.service_name
        self._operation, self._encode, self._decode = _OPERATIONS[service]
        self._client = client
        self._stock = getattr(client, xform_name(self._operation))
        self._model = client.meta.service_model.operation_model(self._operation)
        self._version = client.meta.service_model.metadata["apiVersion"]
        self._service_id = client.meta.service_model.service_id.hyphenize()
        self._keep, self._clock, self._new_id = keep, clock, invocation_id
        self._signer = client._request_signer
        # What the error path needs from botocore, checked now rather than when an error arrives.
        model = client.meta.service_model
        self._protocol = getattr(model, "resolved_protocol", None) or model.protocol  # older botocore: .protocol
        self._parsers = client._endpoint._response_parser_factory
        self._parsers.create_parser(self._protocol)
        self._add_error_fields = client._endpoint._add_modeled_error_fields
        self._errors = client.exceptions.from_code
        self._http = client._endpoint.http_session
        self._template: Template | None = None
        self._connections: Connections | None = None
        self._key: tuple[str, str, bytes] = ("", "", b"")
        self._stock_sends = 0
        self._decision: Refusal | None = ("", "")  # as logged; nothing yet
        events = client.meta.events
        events.register(f"before-send.{self._service_id}.{self._operation}", self._observe,
                        unique_id=f"bridge-direct-{self._service_id}")
        # Registering or removing any handler on the client replaces this dict: from then on botocore.
        self._emitter = getattr(events, "_emitter", events)
        self._handlers_seen = self._emitter._lookup_cache
        if not isinstance(self._handlers_seen, dict):
            raise TypeError("an event emitter this module does not know")

    @property
    def direct(self) -> bool:
        """Whether calls now go on the wire directly."""
        return self._template is not None and self._untouched()

    def _untouched(self) -> bool:
        return (self._emitter._lookup_cache is self._handlers_seen
                and type(botocore.client.BaseClient.__dict__.get("_make_api_call")) is types.FunctionType
                and botocore.client.BaseClient.__dict__.get("_make_api_call") is _STOCK_MAKE_API_CALL)

    def _observe(self, request: Any, **_: Any) -> None:
        """`before-send` handler: the second request botocore sends becomes the template (the first one
        also resolved the credentials, and its user agent says so). The decision is logged once
        (`log_decision`), and again only if it changes (a hooked client unhooked)."""
        self._stock_sends += 1
        if self._template is not None or self._stock_sends < 2:
            return
        if not self._untouched():
            self._decided(("hooked client", "a handler registered or removed, or _make_api_call patched"))
            return
        try:
            credentials = self._signer._credentials.get_frozen_credentials()
            template = template_or_refusal(request, credentials.secret_key)
            if not isinstance(template, Template):
                self._decided(template)
                return
            if self._http._proxy_config.proxy_url_for(template.url):
                self._decided(("proxy", "botocore sends through the configured proxy"))
                return
            manager = self._http._get_connection_manager(template.url, None)
            pool = manager.connection_from_url(template.url)
            self._http._setup_ssl_cert(pool, template.url, self._http._verify)
            self._connections = Connections(pool, template.url, self._keep)
        except Exception as exc:
            self._decided(("botocore internals", type(exc).__name__))
            return
        self._template = template
        self._decided(None)

    def _decided(self, refusal: Refusal | None) -> None:
        if refusal != self._decision:
            self._decision = refusal
            log_decision(self._client, refusal)

    @property
    def multiplexable(self) -> bool:
        """Whether `start` may leave requests in flight: the template is adopted, or not yet tried (the
        client's first two requests go through botocore), and the client is untouched."""
        return (self._template is not None or self._stock_sends < 2) and self._untouched()

    @property
    def ready(self) -> bool:
        """Whether `start` would leave a request in flight without waiting on the network: the template is
        adopted, the client untouched and an idle connection open (else it sends through botocore, or opens
        a connection, which a one-thread run does off its planning thread)."""
        connections = self._connections
        return (self._template is not None and connections is not None and self._untouched()
                and connections.ready())

    def __call__(self, **parameters: Any) -> dict[str, Any]:
        prepared = self._prepared(parameters)
        if prepared is None:
            return dict(self._stock(**parameters))
        connections, request = prepared
        return self.outcome(connections.exchange(request))

    def start(self, **parameters: Any) -> Exchange | None:
        """The call under way on a non-blocking connection (`Exchange`; its answer goes to `outcome`), or
        None when this call must go through botocore (`__call__` sends it so). Raises botocore's
        exceptions when no connection could be opened."""
        prepared = self._prepared(parameters)
        if prepared is None:
            return None
        connections, request = prepared
        return connections.start(request)

    def _prepared(self, parameters: dict[str, Any]) -> tuple[Connections, bytes] | None:
        """The request's bytes and where to send them, or None for botocore (module docstring)."""
        template, connections = self._template, self._connections
        if template is None or connections is None or not self._untouched():
            return None
        body = self._encode(parameters, self._version)
        credentials = self._signer._credentials.get_frozen_credentials() if self._signer._credentials else None
        trace: dict[str, Any] = {}
        add_recursion_detection_header(params={"headers": trace})
        if (body is None or credentials is None or bool(credentials.token) != template.with_token
                or bool(trace) != template.with_trace):
            return None
        return connections, self.request_bytes(template, body, credentials, trace.get("X-Amzn-Trace-Id", ""))

    def outcome(self, answer: Answer) -> dict[str, Any]:
        """The parsed answer; an error answer raised as botocore's client raises it."""
        if 200 <= answer.status < 300:
            parsed = self._decode(answer.body)
            if parsed is not None:
                return parsed
        return self._botocore_outcome(self._template.url if self._template is not None else "", answer)

    def request_bytes(self, template: Template, body: bytes, credentials: Any, trace: str) -> bytes:
        """The whole HTTP request: the line, Host and Accept-Encoding as http.client writes them, then
        botocore's headers in botocore's order, then the body."""
        amz_date = self._clock().strftime("%Y%m%dT%H%M%SZ")
        secret, date = credentials.secret_key, amz_date[:8]
        cached_secret, cached_date, key = self._key
        if cached_secret != secret or cached_date != date:
            key = _signing_key(secret, date, template.region, template.service)
            self._key = (secret, date, key)
        values = {"host": template.host, "x-amz-date": amz_date, "content-length": str(len(body)),
                  "x-amz-security-token": credentials.token or "", "amz-sdk-invocation-id": self._new_id(),
                  "x-amzn-trace-id": trace}
        for name, value in template.headers:
            if value:
                values[name.lower()] = value
        values["authorization"] = authorization(template, values, body, amz_date, credentials.access_key, key)
        head = [f"POST {template.path} HTTP/1.1\r\nHost: {template.host}\r\nAccept-Encoding: identity\r\n"]
        head += [f"{name}: {values[name.lower()]}\r\n" for name, _ in template.headers]
        head.append("\r\n")
        return "".join(head).encode("latin-1") + body

    def _botocore_outcome(self, url: str, answer: Answer) -> dict[str, Any]:
        """What botocore makes of this answer: its parser, its `after-call` handlers (SQS's error-code
        override), and for an error status the exception its client raises."""
        headers: Any = answer.headers  # AWSResponse keeps any mapping (a case-insensitive HeadersDict of it)
        response = AWSResponse(url, answer.status, headers, RawBody(answer.body))
        response_dict = convert_to_response_dict(response, self._model)
        # the client's factory: clients.sqs_client / sns_client guard it (errors.guard_answers), so an answer
        # its parser cannot read is a retryable UnreadableAnswer here as on botocore's path
        parser = self._parsers.create_parser(self._protocol)
        parsed = parser.parse(response_dict, self._model.output_shape)
        if answer.status >= 300:
            self._add_error_fields(response_dict, parsed, self._model, parser)
        context: dict[str, Any] = {}
        self._client.meta.events.emit(f"after-call.{self._service_id}.{self._operation}", http_response=response,
                                      parsed=parsed, model=self._model, context=context)
        if answer.status >= 300:
            # The class as botocore's client picks it: SQS's query-compatible code names the modeled
            # error (an after-call handler says so in newer botocores, the client itself in older ones).
            error = parsed.get("Error", {})
            code = context.get("error_code_override") or error.get("QueryErrorCode") or error.get("Code")
            raise self._errors(code)(parsed, self._operation)
        return dict(parsed)


def install(client: Any, keep: int) -> DirectBatchCall | None:
    """A `DirectBatchCall` for the client's batch operation, kept on the client for `batch_call`; None
    (and nothing changed) when this botocore's client lacks what it reads."""
    try:
        call = DirectBatchCall(client, keep=keep)
    except Exception:
        return None
    client._bridge_direct_call = call
    return call


def batch_call(client: Any, operation: str) -> Callable[..., Any]:
    """The callable that sends `operation` for `client`: its `DirectBatchCall` if `install` put one
    there, else the client's own method."""
    call = getattr(client, "_bridge_direct_call", None)
    if isinstance(call, DirectBatchCall) and call._operation == operation:
        return call
    return getattr(client, xform_name(operation))  # type: ignore[no-any-return]
