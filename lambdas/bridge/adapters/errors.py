"""Translating botocore exceptions into the domain's `SendCallError` (retryable or not)."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

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


def call_error(exc: Exception) -> SendCallError:
    """A SendCallError for a failed batch call: throttling, 5xx and connection problems are retryable."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "ClientError")
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return SendCallError(code, str(error.get("Message") or ""),
                             retryable=code in RETRYABLE_CODES or status >= 500)
    if isinstance(exc, BotoCoreError):  # connection refused/closed, read timeout, ...
        return SendCallError(type(exc).__name__, str(exc), retryable=True)
    raise TypeError(f"not an AWS client error: {exc!r}") from exc
