"""AWS sessions for the commands that talk to a deployed stack (`bridge redrive`, `bridge smoke`).

Both must fail in one line that says what to set, never in a botocore traceback: no region, no
credentials, expired or denied credentials.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlparse

# https://sqs.<region>.amazonaws.com[.cn]/<account>/<name> and the legacy https://<region>.queue.amazonaws.com/...
_SQS_HOST = re.compile(r"^sqs\.(?P<a>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$"
                       r"|^(?P<b>[a-z0-9-]+)\.queue\.amazonaws\.com(\.cn)?$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")

NO_CREDENTIALS = ("no AWS credentials found. Fix: set AWS_PROFILE (after `aws sso login` or `aws configure`), "
                  "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")


class AwsSetupError(RuntimeError):
    """The AWS side of a command is not set up (region, credentials, access); one line saying what to set."""


def region_from_queue_url(url: str) -> str | None:
    """The region an SQS queue URL names, or None (e.g. a VPC endpoint or local URL)."""
    host = urlparse(url).hostname or ""
    match = _SQS_HOST.match(host)
    if match is None:
        return None
    region = match.group("a") or match.group("b")
    return region if region and _REGION.match(region) else None


def aws_session(region: str | None = None, queue_url: str | None = None, *, what: str = "--region") -> Any:
    """A boto3 session with a region and credentials, or AwsSetupError saying which is missing.

    Region: `region`, else the one in `queue_url`, else the AWS configuration (AWS_REGION, profile)."""
    import boto3  # noqa: PLC0415 - AWS mode only

    chosen = region or (region_from_queue_url(queue_url) if queue_url else None)
    session = boto3.session.Session(region_name=chosen) if chosen else boto3.session.Session()
    if not session.region_name:
        raise AwsSetupError(f"no AWS region: the command cannot tell where the stack is. Fix: pass {what} "
                            "or set AWS_REGION")
    if session.get_credentials() is None:
        raise AwsSetupError(NO_CREDENTIALS)
    return session


def describe_aws_error(exc: BaseException) -> str | None:  # noqa: PLR0911 - one answer per error kind
    """One line for an AWS error a user fixes by setting something; None when it is not such an error."""
    from botocore.exceptions import (  # noqa: PLC0415
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        TokenRetrievalError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return NO_CREDENTIALS
    if isinstance(exc, TokenRetrievalError):
        return "the AWS SSO token has expired. Fix: run `aws sso login` (with your AWS_PROFILE)"
    if isinstance(exc, NoRegionError):
        return "no AWS region. Fix: pass --region or set AWS_REGION"
    if isinstance(exc, EndpointConnectionError):
        return f"cannot reach AWS ({exc}). Fix: check the region and your network"
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        op = exc.operation_name
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return f"{op}: the AWS credentials have expired. Fix: refresh them (e.g. `aws sso login`)"
        if code in ("InvalidClientTokenId", "UnrecognizedClientException", "SignatureDoesNotMatch",
                    "InvalidSignatureException"):
            return f"{op}: AWS does not accept these credentials ({code}). Fix: check AWS_PROFILE or the keys"
        if "AccessDenied" in code or code in ("AuthorizationError", "AccessDeniedException"):
            return f"{op}: access denied ({error.get('Message', code)}). Fix: use a role allowed to {op}"
        return f"{op}: {code}: {error.get('Message', '')}"
    return None
