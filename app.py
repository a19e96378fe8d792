#!/usr/bin/env python3
"""CDK app: `npx cdk synth -c env=dev` (config/dev.yaml) or `-c config=PATH`; context `nag`, `test_events`, ...

After synth, every template is checked against botocore's documented limits (infra/limits.py): a value
AWS would refuse fails here, one line per problem, instead of minutes into a deploy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from bridge.config import ConfigError

from infra.config_document import ConfigDocument, load_config_document
from infra.limits import synth_checked
from infra.nag import add_nag_checks
from infra.stack import DEFAULT_POWERTOOLS_LAYER_VERSION, REPO_ROOT, BridgeStack, StackOptions, stack_name

CONFIG_DIR = REPO_ROOT / "config"
DEFAULT_ENVIRONMENT = "dev"


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


def select_config(app: cdk.App) -> ConfigDocument:
    """`-c config=PATH` as given; otherwise `-c env=NAME` (default dev) reads config/NAME.yaml, which must
    declare `environment: NAME`, so a copied file cannot deploy over another stage's stack."""
    explicit = app.node.try_get_context("config")
    if explicit:
        return load_config_document(Path(str(explicit)))
    env = str(app.node.try_get_context("env") or DEFAULT_ENVIRONMENT)
    path = CONFIG_DIR / f"{env}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))) or "none"
        raise ConfigError([f"context env: no config/{env}.yaml. Fix: -c env=<one of: {known}>, or add the file"],
                          "cdk context")
    loaded = load_config_document(path)
    if loaded.config.environment != env:
        raise ConfigError([f"environment: is {loaded.config.environment!r} but -c env={env} selected this file. "
                           f"Fix: set `environment: {env}` in config/{env}.yaml"], f"config/{env}.yaml")
    return loaded


def build_app(app: cdk.App) -> BridgeStack:
    loaded = select_config(app)
    config = loaded.config
    options = StackOptions(
        test_events=_flag(app, "test_events", config.deployment.test_events),
        create_test_event_registry=_flag(app, "create_test_event_registry", False),
        powertools_layer_version=_int(app, "powertools_layer_version") or DEFAULT_POWERTOOLS_LAYER_VERSION,
        reserved_concurrency=_int(app, "reserved_concurrency") or config.deployment.reserved_concurrency,
    )
    stack = BridgeStack(app, stack_name(config.name, config.environment), loaded=loaded, options=options,
                        description=f"Kafka to SQS/SNS bridge {config.name} ({config.environment})")
    if _flag(app, "nag", True):
        add_nag_checks(app)
    return stack


def main(app: cdk.App | None = None) -> int:
    """Synthesize (`app` for tests; by default the context and output directory the CDK CLI passes)."""
    return synth_checked(app or cdk.App(), build_app)


if __name__ == "__main__":
    sys.exit(main())
