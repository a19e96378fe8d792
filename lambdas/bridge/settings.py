"""The function's environment, read once at cold start into a typed, frozen object.

Only this module reads `os.environ`; everything else receives a `Settings`. The variables are the
ones in docs/runtime-contract.md. Addresses of queues and topics are derived here too, so the
handler, the local stack and the tests agree on them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from bridge.config import BridgeConfig, Destination, load_config_file
from bridge.frozen import frozen

DEFAULT_SERVICE_NAME = "kafka-bridge"
DEFAULT_METRICS_NAMESPACE = "KafkaBridge"
# The stack ships the validated config as JSON beside the `bridge` package.
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "bridge_config.json"


class SettingsError(RuntimeError):
    """A required environment variable is missing or invalid; the message names it and the fix."""


@frozen
class Settings:
    """The environment of one function instance (see the table in docs/runtime-contract.md)."""

    config_path: Path
    account_id: str
    region: str
    parking_bucket: str
    partition: str = "aws"
    endpoint_url: str | None = None
    service_name: str = DEFAULT_SERVICE_NAME
    metrics_namespace: str = DEFAULT_METRICS_NAMESPACE
    checkpoint_table: str | None = None  # needed when settings.checkpoints is on
    claim_check_bucket: str | None = None  # set when a destination has oversize: claim-check
    # SendMessageBatch / PublishBatch on the wire directly (bridge.adapters.direct); BRIDGE_DIRECT_SENDS=off
    # sends them through botocore instead, a switch for operators should AWS answer what the direct path
    # does not expect (nothing of it has run against AWS yet).
    direct_sends: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and check the environment; raise SettingsError naming every missing variable."""
        env = os.environ if environ is None else environ
        missing = [
            f"{name} ({why})"
            for name, why in (
                ("BRIDGE_ACCOUNT_ID", "the account that owns the bridge's queues and topics, e.g. 123456789012"),
                ("AWS_REGION", "Lambda sets it; locally export AWS_REGION=us-east-1"),
                ("BRIDGE_PARKING_BUCKET", "the S3 bucket for parked records too large for the bridge DLQ"),
            )
            if not env.get(name)
        ]
        if missing:
            raise SettingsError(
                "missing environment variable(s): " + "; ".join(missing)
                + ". Fix: set them on the function (the CDK stack does) or in the local stack's environment"
            )
        account = env["BRIDGE_ACCOUNT_ID"]
        direct_sends = (env.get("BRIDGE_DIRECT_SENDS") or "on").strip().lower()
        if direct_sends not in ("on", "off"):
            raise SettingsError(f"BRIDGE_DIRECT_SENDS={env['BRIDGE_DIRECT_SENDS']!r} is neither on nor off. Fix: "
                                "unset it (on, the default) or set it to off to send batches through botocore")
        if not (account.isdigit() and len(account) == 12):
            raise SettingsError(f"BRIDGE_ACCOUNT_ID={account!r} is not a 12-digit account id. Fix: e.g. 123456789012")
        return cls(
            config_path=Path(env.get("BRIDGE_CONFIG_PATH") or DEFAULT_CONFIG_PATH),
            account_id=account,
            region=env["AWS_REGION"],
            parking_bucket=env["BRIDGE_PARKING_BUCKET"],
            partition=env.get("BRIDGE_PARTITION") or "aws",
            endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
            service_name=env.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
            metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE,
            checkpoint_table=env.get("BRIDGE_CHECKPOINT_TABLE") or None,
            claim_check_bucket=env.get("BRIDGE_CLAIM_CHECK_BUCKET") or None,
            direct_sends=direct_sends == "on",
        )

    def load_config(self) -> BridgeConfig:
        """Read and validate the config document (JSON in the package, YAML allowed locally)."""
        return load_config_file(self.config_path)

    # --- addresses (docs/runtime-contract.md "Names and addresses") -------------------------------

    @property
    def _domain(self) -> str:
        return "amazonaws.com.cn" if self.partition == "aws-cn" else "amazonaws.com"

    def queue_url(self, name: str, region: str | None = None, account: str | None = None) -> str:
        """URL of a queue; SQS (and MiniStack) resolve the queue from its path, whatever the endpoint."""
        return f"https://sqs.{region or self.region}.{self._domain}/{account or self.account_id}/{name}"

    def topic_arn(self, name: str) -> str:
        """ARN of a topic the bridge created."""
        return f"arn:{self.partition}:sns:{self.region}:{self.account_id}:{name}"

    def destination_address(self, destination: Destination, bridge_name: str) -> str:
        """Queue URL (SQS) or topic ARN (SNS) of a destination, created or existing."""
        if destination.type == "sns":
            return destination.arn or self.topic_arn(destination.physical_name(bridge_name))
        if destination.arn:
            _, _, _, region, account, name = destination.arn.split(":", 5)
            return self.queue_url(name, region, account)
        return self.queue_url(destination.physical_name(bridge_name))


def observability_names(environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """Powertools service name and metrics namespace with the contract's defaults.

    Read separately from `Settings.from_env` because the Powertools objects are created at import
    time, before a missing required variable should be reported (on the first invocation).
    """
    env = os.environ if environ is None else environ
    return (
        env.get("POWERTOOLS_SERVICE_NAME") or DEFAULT_SERVICE_NAME,
        env.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_METRICS_NAMESPACE,
    )


def tracing_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the handler runs the Powertools Tracer: not when POWERTOOLS_TRACE_DISABLED is true, which
    the stack sets unless `settings.tracing` is on (read at import, like `observability_names`)."""
    env = os.environ if environ is None else environ
    return env.get("POWERTOOLS_TRACE_DISABLED", "").lower() not in ("true", "1")


def snapstart_enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the function runs under SnapStart (BRIDGE_SNAPSTART, set by the stack with
    `settings.snapstart: on`): then the Bridge is built during init, inside the snapshot."""
    env = os.environ if environ is None else environ
    return env.get("BRIDGE_SNAPSTART", "").lower() == "true"
