#!/usr/bin/env python3
"""CDK app: `npx cdk synth -c config=config/dev.yaml` (context `nag`, `test_events`, ... see below)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from bridge.config import ConfigError

from infra.config_document import load_config_document
from infra.nag import add_nag_checks
from infra.stack import DEFAULT_POWERTOOLS_LAYER_VERSION, BridgeStack, StackOptions, stack_name

DEFAULT_CONFIG = "config/dev.yaml"


def _flag(app: cdk.App, key: str, default: bool) -> bool:
    """Context arrives as a string from `-c key=value` and as JSON from cdk.json."""
    value: Any = app.node.try_get_context(key)
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _int(app: cdk.App, key: str) -> int | None:
    value: Any = app.node.try_get_context(key)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError([f"context {key}: {value!r} is not a whole number. Fix: -c {key}=<number>"],
                          "cdk context") from None


def build_app(app: cdk.App) -> BridgeStack:
    config_path = Path(str(app.node.try_get_context("config") or DEFAULT_CONFIG))
    loaded = load_config_document(config_path)
    options = StackOptions(
        test_events=_flag(app, "test_events", True),
        create_test_event_registry=_flag(app, "create_test_event_registry", False),
        powertools_layer_version=_int(app, "powertools_layer_version") or DEFAULT_POWERTOOLS_LAYER_VERSION,
        reserved_concurrency=_int(app, "reserved_concurrency"),
    )
    stack = BridgeStack(app, stack_name(loaded.config.name), loaded=loaded, options=options,
                        description=f"Kafka to SQS/SNS bridge {loaded.config.name}")
    if _flag(app, "nag", True):
        add_nag_checks(app)
    return stack


def main() -> int:
    app = cdk.App()
    try:
        build_app(app)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    app.synth()
    return 0


if __name__ == "__main__":
    sys.exit(main())
