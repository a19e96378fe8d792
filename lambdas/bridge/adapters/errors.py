"""Translating botocore exceptions into the domain's `SendCallError` (retryable or not), and answers no
parser can read into one of them (`UnreadableAnswer`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    MissingParametersError,
    ParamValidationError,
    UnknownClientMethodError,
    ValidationError,
)
from botocore.parsers import ResponseParserError

from bridge.delivery import SendCallError

# Error codes AWS documents as transient for SQS, SNS and the KMS calls behind encrypted queues/topics.
RETRYABLE_CODES = frozenset({
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ServiceUnavailable",
    "InternalError",
    "InternalFailure",
    "InternalErrorException",
    "RequestTimeout",
    "RequestTimeoutException",
    "KMSThrottling",
    "KMSThrottlingException",
    "KmsThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
})

# botocore errors raised before anything is sent because the request itself is wrong (a caller bug):
# the same request fails the same way every time, so its entries are parked at once, not retried.
# ValidationError covers UnknownParameterError, RangeError, InvalidRegionError and the like.
CALLER_ERRORS = (ParamValidationError, ValidationError, MissingParametersError, UnknownClientMethodError)

# An answer whose bytes are not the operation's answer (gzip, another document, a list where a list of
# entries belongs): retried for the batch, then parked with this code, never counted delivered.
UNREADABLE_ANSWER = "UnreadableAnswer"

# What botocore's parsers raise on bytes they do not expect, besides their own ResponseParserError: a
# body that is not UTF-8 (UnicodeDecodeError, a ValueError), a document without the result element
# (KeyError), a string or number where an object or list belongs (AttributeError, TypeError), nesting
# deeper than the recursion limit (RecursionError).
_PARSE_FAILURES = (ResponseParserError, ValueError, LookupError, AttributeError, TypeError, RecursionError)


class UnreadableAnswer(ResponseParserError):
    """The answer to a call could not be parsed as its output shape (the message names the status, type,
    encoding and size, and the exception's class; never the body's bytes)."""


def describe_answer(response: Mapping[str, Any]) -> str:
    """`HTTP 200, text/xml, Content-Encoding gzip, 73 bytes`: what an answer was, without its bytes
    (`response` is botocore's response dict: status_code, headers, body)."""
    headers = response.get("headers") or {}
    fields = {name.lower(): str(value) for name, value in headers.items()}
    body = response.get("body")
    parts = [f"HTTP {response.get('status_code')}", fields.get("content-type", "no Content-Type")[:60]]
    if "content-encoding" in fields:
        parts.append(f"Content-Encoding {fields['content-encoding'][:30]}")
    parts.append(f"{len(body) if isinstance(body, bytes | bytearray) else 0} bytes")
    return ", ".join(parts)


class _ReadableParser:
    """A botocore response parser whose `parse` raises `UnreadableAnswer` for bytes it cannot read.

    Only the parse step is guarded (the answer's bytes are its only input): the bridge's own code runs
    outside it, so the bridge's bugs still surface as themselves."""

    def __init__(self, stock: Any) -> None:
        self._stock = stock

    def parse(self, response: Mapping[str, Any], shape: Any) -> Any:
        try:
            return self._stock.parse(response, shape)
        except UnreadableAnswer:
            raise
        except _PARSE_FAILURES as exc:
            name = getattr(shape, "name", None) or "answer"
            raise UnreadableAnswer(f"the answer ({describe_answer(response)}) cannot be read as a {name} "
                                   f"({type(exc).__name__} in botocore's parser)") from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stock, name)


class ReadableAnswers:
    """A client endpoint's response parser factory whose parsers raise `UnreadableAnswer` (`guard_answers`);
    the direct call hands what it does not take for success to the same factory (direct._botocore_outcome)."""

    def __init__(self, stock: Any) -> None:
        self._stock = stock

    def create_parser(self, protocol_name: str) -> Any:
        return _ReadableParser(self._stock.create_parser(protocol_name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stock, name)


def guard_answers(client: Any) -> bool:
    """Make the client's answers that its parser cannot read raise `UnreadableAnswer` (a retryable
    SendCallError through `call_error`) rather than a UnicodeDecodeError, KeyError or AttributeError
    that fails the invocation. Only this client: botocore shares the factory among a session's clients.
    True when installed; nothing changes on a botocore that keeps its factory elsewhere."""
    endpoint = getattr(client, "_endpoint", None)
    stock = getattr(endpoint, "_response_parser_factory", None)
    if isinstance(stock, ReadableAnswers):
        return True
    if not hasattr(stock, "create_parser"):
        return False
    endpoint._response_parser_factory = ReadableAnswers(stock)  # type: ignore[union-attr]
    return True


def call_error(exc: Exception) -> SendCallError:
    """A SendCallError for a failed batch call: throttling, 5xx and connection problems are retryable;
    a request botocore refuses to send (invalid parameters) is not."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return SendCallError(code, str(error.get("Message") or ""),
                             retryable=code in RETRYABLE_CODES or status >= 500)
    if isinstance(exc, CALLER_ERRORS):
        return SendCallError(type(exc).__name__, str(exc), retryable=False)
    if isinstance(exc, BotoCoreError):  # connection refused/closed, read timeout, ...
        return SendCallError(type(exc).__name__, str(exc), retryable=True)
    if isinstance(exc, UnreadableAnswer):
        return SendCallError(UNREADABLE_ANSWER, str(exc), retryable=True)
    if isinstance(exc, ResponseParserError):
        # A body no AWS protocol parser accepts (a proxy's HTML error page): transient, like a 5xx.
        # botocore raises it outside its exception hierarchy, so without this the invocation crashed.
        return SendCallError("ResponseParserError", str(exc)[:200], retryable=True)
    raise TypeError(f"not an AWS client error: {exc!r}") from exc
