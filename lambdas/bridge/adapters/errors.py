"""Translating botocore exceptions into the domain's `SendCallError` (retryable or not)."""

from __future__ import annotations

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
    if isinstance(exc, ResponseParserError):
        # A body no AWS protocol parser accepts (a proxy's HTML error page): transient, like a 5xx.
        # botocore raises it outside its exception hierarchy, so without this the invocation crashed.
        return SendCallError("ResponseParserError", str(exc)[:200], retryable=True)
    raise TypeError(f"not an AWS client error: {exc!r}") from exc
