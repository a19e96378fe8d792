"""Stages: config/dev.yaml and config/prod.yaml, names that cannot collide, deployment defaults per stage."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from bridge.config import BridgeConfig, ConfigError, load_config_file

from tests.helpers import ROOT

DEV = ROOT / "config" / "dev.yaml"
PROD = ROOT / "config" / "prod.yaml"


def _names(config: BridgeConfig) -> set[str]:
    """Every physical name the stack and the local stack derive from the config."""
    names = {config.bridge_dlq_name, config.audit_topic_name, config.audit_queue_name, config.audit_queue_dlq_name,
             config.audit_subscription_dlq_name}
    for d in config.destinations:
        if d.created:
            names |= {d.physical_name(config.prefix), d.dlq_physical_name(config.prefix)}
        names |= {config.subscription_dlq_name(d, s.queue) for s in d.subscriptions}
    names |= {config.signing_secret_name(p.name) for p in config.producers if p.signing}
    return names


def test_each_stage_config_declares_its_own_environment() -> None:
    assert load_config_file(DEV).environment == "dev"
    prod = load_config_file(PROD)
    assert prod.environment == "prod"
    assert prod.production


def test_a_copied_config_with_a_new_environment_shares_no_name_with_the_original() -> None:
    # given: `cp config/dev.yaml config/staging.yaml` and only the environment changed
    doc = yaml.safe_load(DEV.read_text(encoding="utf-8"))
    dev = BridgeConfig.from_dict(doc)
    staging = BridgeConfig.from_dict({**doc, "environment": "staging"})
    # then
    assert dev.prefix == "orders-bridge-dev"
    assert staging.prefix == "orders-bridge-staging"
    assert _names(dev).isdisjoint(_names(staging))
    assert all(n.startswith(("orders-bridge-staging-", "orders-bridge-staging/")) for n in _names(staging))


def test_dev_and_prod_share_no_resource_name_and_no_consumer_group() -> None:
    dev, prod = load_config_file(DEV), load_config_file(PROD)
    assert _names(dev).isdisjoint(_names(prod))
    # on one cluster, a shared consumer group would split the records between the stages
    groups = {c.source.group_id_for(t) for c in (dev, prod) for t in c.source.topics}
    assert len(groups) == len(dev.source.topics) + len(prod.source.topics)


def test_production_defaults_differ_from_dev() -> None:
    doc: dict[str, Any] = yaml.safe_load(DEV.read_text(encoding="utf-8"))
    doc.pop("deployment")
    dev = BridgeConfig.from_dict(doc).deployment
    prod = BridgeConfig.from_dict({**doc, "environment": "prod"}).deployment
    assert (dev.log_retention_days, prod.log_retention_days) == (30, 365)
    assert (dev.rollout.strategy, prod.rollout.strategy) == ("canary", "linear")


@pytest.mark.parametrize(("deployment", "field"), [
    ({"reserved_concurrency": 0}, "deployment.reserved_concurrency"),
    ({"log_retention_days": 31}, "deployment.log_retention_days"),
    ({"rollout": {"strategy": "blue_green"}}, "deployment.rollout.strategy"),
    ({"rollout": {"percent": 100}}, "deployment.rollout.percent"),
    ({"canary": True}, "deployment.canary"),
])
def test_invalid_deployment_settings_name_the_field(deployment: dict[str, Any], field: str) -> None:
    doc = yaml.safe_load(DEV.read_text(encoding="utf-8"))
    doc["deployment"] = deployment
    with pytest.raises(ConfigError) as info:
        BridgeConfig.from_dict(doc)
    assert [p for p in info.value.problems if p.startswith(f"{field}:")], info.value.problems


def test_consumer_group_leaves_room_for_the_topic_suffix() -> None:
    doc = yaml.safe_load(DEV.read_text(encoding="utf-8"))
    doc["source"]["consumer_group_id"] = "g" * 191  # + "-inventory" = 201
    with pytest.raises(ConfigError) as info:
        BridgeConfig.from_dict(doc)
    assert info.value.problems == ["source.consumer_group_id: with -inventory appended it is 201 characters, over "
                                   "the 200 an event-source mapping takes. Fix: shorten it"]
