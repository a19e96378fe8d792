"""Commands against a deployed stack say in one line what to set: region, credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, NoCredentialsError

from bridge_local.aws import AwsSetupError, aws_session, describe_aws_error, region_from_queue_url
from bridge_local.cli import main
from tests.helpers import DEV_CONFIG

QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders-bridge-dev-bridge-dlq"


@pytest.fixture
def no_aws_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A machine with no AWS configuration at all (no env keys, no profile files, no instance metadata)."""
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_REGION",
                "AWS_DEFAULT_REGION", "AWS_DEFAULT_PROFILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.mark.parametrize(("url", "region"), [
    (QUEUE_URL, "eu-west-1"),
    ("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q", "cn-north-1"),
    ("https://us-east-2.queue.amazonaws.com/123456789012/q", "us-east-2"),
    ("https://vpce-0abc.sqs.us-east-1.vpce.amazonaws.com/123456789012/q", None),
    ("http://127.0.0.1:4566/000000000000/q", None),
])
def test_region_is_read_from_the_queue_url(url: str, region: str | None) -> None:
    assert region_from_queue_url(url) == region


def test_session_takes_the_region_from_the_queue_url(no_aws_setup: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    assert aws_session(None, QUEUE_URL).region_name == "eu-west-1"
    assert aws_session("us-west-2", QUEUE_URL).region_name == "us-west-2"  # --region wins


def test_no_region_anywhere_says_what_to_set(no_aws_setup: None) -> None:
    with pytest.raises(AwsSetupError, match=r"^no AWS region: .* Fix: pass --region or set AWS_REGION$"):
        aws_session(None, "http://127.0.0.1:4566/000000000000/q")


def _redrive(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, str]:
    code = main(["--config", str(DEV_CONFIG), "redrive", "--queue-url", url, "--function", "orders-bridge-dev"])
    return code, capsys.readouterr().err


def test_redrive_without_region_is_one_line(no_aws_setup: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _redrive(capsys, "https://vpce-0abc.sqs.us-east-1.vpce.amazonaws.com/123456789012/q")
    assert code == 1
    assert err == ("bridge: error: no AWS region: the command cannot tell where the stack is. "
                   "Fix: pass --region or set AWS_REGION\n")


def test_redrive_without_credentials_is_one_line(no_aws_setup: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _redrive(capsys, QUEUE_URL)
    assert code == 1
    assert err == ("bridge: error: no AWS credentials found. Fix: set AWS_PROFILE (after `aws sso login` or "
                   "`aws configure`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY\n")


@pytest.mark.parametrize(("exc", "line"), [
    (NoCredentialsError(), "no AWS credentials found. Fix:"),
    (ClientError({"Error": {"Code": "ExpiredToken", "Message": "expired"}}, "ReceiveMessage"),
     "ReceiveMessage: the AWS credentials have expired. Fix:"),
    (ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "ReceiveMessage"),
     "ReceiveMessage: access denied (no). Fix: use a role allowed to ReceiveMessage"),
])
def test_aws_errors_become_one_line(exc: Exception, line: str) -> None:
    described = describe_aws_error(exc)
    assert described is not None
    assert described.startswith(line)
    assert "\n" not in described


def test_other_errors_are_not_described() -> None:
    assert describe_aws_error(KeyError("x")) is None
