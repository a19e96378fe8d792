"""Self-managed Kafka: topic ownership rests on Kafka ACLs; `bridge acls` prints the ones the config implies."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import BridgeConfig

from bridge_local.acls import acl_commands
from tests.infra.conftest import SELF_MANAGED_SOURCE

Edit = Callable[[dict[str, Any]], None]


def self_managed(variant_document: Callable[[Edit], dict[str, Any]]) -> BridgeConfig:
    return BridgeConfig.from_dict(variant_document(lambda d: d.update(source=copy.deepcopy(SELF_MANAGED_SOURCE))))


def grants(lines: list[str]) -> set[tuple[str, str, str, str]]:
    """(principal, operation, resource type, resource) of every kafka-acls command."""
    out = set()
    for line in lines:
        if line.startswith("#"):
            continue
        args = shlex.split(line)
        principal = args[args.index("--allow-principal") + 1]
        kind = "topic" if "--topic" in args else "group"
        resource = args[args.index(f"--{kind}") + 1]
        ops = [args[i + 1] for i, a in enumerate(args) if a == "--operation"]
        out |= {(principal, op, kind, resource) for op in ops}
    return out


@pytest.mark.attack("self-managed cluster: a producer writes a topic it does not own",
                    outcome="denied by policy: Kafka ACLs, once applied",
                    how="bridge acls: the Kafka ACLs the config implies (applied by the cluster's owners)")
def test_each_producer_may_write_exactly_its_topics(variant_document: Callable[[Edit], dict[str, Any]]) -> None:
    cfg = self_managed(variant_document)

    acl = grants(acl_commands(cfg))

    for p in cfg.producers:
        written = {r for who, op, kind, r in acl if who == f"User:{p.name}" and op == "Write"}
        assert written == set(p.topics), p.name
    assert {r for who, op, kind, r in acl if who == f"User:{cfg.name}" and op == "Write"} == set()
    assert {(kind, r) for who, op, kind, r in acl if who == f"User:{cfg.name}" and op == "Read"} == \
        {("topic", t) for t in cfg.source.topics} | {("group", cfg.source.group_id_for(t)) for t in cfg.source.topics}


def test_real_principal_names_replace_the_placeholders(variant_document: Callable[[Edit], dict[str, Any]]) -> None:
    cfg = self_managed(variant_document)

    lines = acl_commands(cfg, {"order-service": "User:CN=orders,O=example"})

    assert ("User:CN=orders,O=example", "Write", "topic", "orders") in grants(lines)
    assert all("b-1.kafka.internal:9096,b-2.kafka.internal:9096" in x for x in lines if not x.startswith("#"))


def test_msk_needs_no_acls(variant_document: Callable[[Edit], dict[str, Any]]) -> None:
    assert acl_commands(BridgeConfig.from_dict(variant_document(lambda d: None))) == []
