"""`bridge acls`: the Kafka ACLs a self-managed cluster needs for the config's trust model.

With MSK, the stack's IAM roles decide who writes which topic. A self-managed cluster has no IAM:
topic ownership rests on Kafka ACLs, which the stack cannot create. These are the ones the config
implies, as `kafka-acls` commands: each producer may write (and describe) exactly its topics, the
bridge's principal may read the topics and its consumer groups, and nobody else gets anything once
the brokers run with `allow.everyone.if.no.acl.found=false`.

Principals: the config does not know the SASL/SCRAM user names (or certificate DNs) the producers and
the bridge authenticate as, so the commands use `User:<producer name>` and `User:<bridge name>`; pass
`--principal NAME=User:...` to use the real ones.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from bridge.config import BridgeConfig

ADMIN_CONFIG_PLACEHOLDER = "admin.properties"


def acl_commands(config: BridgeConfig, principals: Mapping[str, str] | None = None,
                 bootstrap: str | None = None, command_config: str = ADMIN_CONFIG_PLACEHOLDER) -> list[str]:
    """`kafka-acls` command lines (and `#` comments) for the config; empty for an MSK source."""
    if config.source.kind != "self-managed":
        return []
    principals = principals or {}
    servers = bootstrap or ",".join(config.source.bootstrap_servers)
    base = ["kafka-acls", "--bootstrap-server", servers, "--command-config", command_config, "--add"]

    def who(name: str) -> str:
        return principals.get(name, f"User:{name}")

    def line(*args: str) -> str:
        return shlex.join([*base, *args])

    out = ["# Brokers: allow.everyone.if.no.acl.found=false, so a principal without an ACL gets nothing.",
           f"# The bridge ({config.name}) reads every source topic with one consumer group per topic."]
    for topic in config.source.topics:
        out.append(line("--allow-principal", who(config.name), "--operation", "Read", "--operation", "Describe",
                        "--topic", topic))
        out.append(line("--allow-principal", who(config.name), "--operation", "Read", "--operation", "Describe",
                        "--group", config.source.group_id_for(topic)))
    for p in config.producers:
        out.append(f"# Producer {p.name} writes {', '.join(p.topics)} and nothing else.")
        for topic in p.topics:
            out.append(line("--allow-principal", who(p.name), "--operation", "Write", "--operation", "Describe",
                            "--topic", topic))
    return out
