"""`-c env=NAME` selects config/NAME.yaml; stages are separate stacks with separate names."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from bridge.config import ConfigError

import app
from infra.console_events import SCHEMA_CONTENT_MAX
from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra

NAMED = {"AWS::SQS::Queue": "QueueName", "AWS::SNS::Topic": "TopicName", "AWS::SecretsManager::Secret": "Name"}


def _physical_names(synth: Synth) -> set[str]:
    return {r["Properties"][prop] for t, prop in NAMED.items() for r in synth.resources(t).values()}


def test_env_context_selects_the_stage_config_and_names_the_stack() -> None:
    assert app.select_config(cdk.App(context={"env": "prod"})).config.environment == "prod"
    assert app.select_config(cdk.App(context={"env": "dev"})).config.environment == "dev"


def test_a_copied_config_that_keeps_another_environment_is_refused(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # given: `cp config/dev.yaml config/staging.yaml`, environment not changed
    (tmp_path / "staging.yaml").write_text((app.CONFIG_DIR / "dev.yaml").read_text(encoding="utf-8"),
                                           encoding="utf-8")
    monkeypatch.setattr(app, "CONFIG_DIR", tmp_path)
    with pytest.raises(ConfigError) as info:
        app.select_config(cdk.App(context={"env": "staging"}))
    assert info.value.problems == ["environment: is 'dev' but -c env=staging selected this file. "
                                   "Fix: set `environment: staging` in config/staging.yaml"]


def test_an_unknown_env_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match=r"no config/qa\.yaml\. Fix: -c env=<one of: dev, prod>"):
        app.select_config(cdk.App(context={"env": "qa"}))


def test_dev_and_prod_are_separate_stacks_with_no_shared_physical_name(dev_with_repo_events: Synth,
                                                                       prod: Synth) -> None:
    assert dev_with_repo_events.template_path.name == "KafkaBridge-orders-bridge-dev.template.json"
    assert prod.template_path.name == "KafkaBridge-orders-bridge-prod.template.json"
    dev_names, prod_names = _physical_names(dev_with_repo_events), _physical_names(prod)
    assert dev_names
    assert prod_names
    assert dev_names.isdisjoint(prod_names)


def _examples(synth: Synth) -> dict[str, object]:
    (schema,) = synth.resources("AWS::EventSchemas::Schema").values()
    content = schema["Properties"]["Content"]
    assert len(content) <= SCHEMA_CONTENT_MAX
    examples: dict[str, object] = json.loads(content)["components"]["examples"]
    return examples


def test_console_events_dev_and_prod(dev_with_repo_events: Synth, prod: Synth) -> None:
    dev = set(_examples(dev_with_repo_events))
    assert "fail-too-large" not in dev  # 300 KiB: over the schema's Content limit on its own
    assert "route-payments" not in dev  # needs payment-service's deployed key
    # ships: accept_from is checked before the signature, so it parks untrusted_producer whatever its key
    assert "fail-untrusted-producer" in dev
    assert "route-order-lifecycle" in dev
    # nothing that delivers
    assert set(_examples(prod)) == {"fail-invalid-signature", "fail-producer-not-allowed", "fail-undecodable",
                                    "fail-unroutable", "fail-unsigned", "fail-untrusted-producer"}


def test_prod_differs_where_production_should(dev_with_repo_events: Synth, prod: Synth) -> None:
    def function(s: Synth) -> dict[str, object]:
        (f,) = [r for r in s.resources("AWS::Lambda::Function").values()
            if r["Properties"]["Handler"] == "bridge.handler.lambda_handler"]  # not the key rotation function
        return dict(f["Properties"])

    def retention(s: Synth) -> set[int]:
        return {r["Properties"]["RetentionInDays"] for r in s.resources("AWS::Logs::LogGroup").values()}

    assert "ReservedConcurrentExecutions" not in function(dev_with_repo_events)
    assert function(prod)["ReservedConcurrentExecutions"] == 20
    assert retention(dev_with_repo_events) == {30}
    assert retention(prod) == {365}
