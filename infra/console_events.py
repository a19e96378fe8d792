"""Which events/*.json become Lambda console test events, and why the others do not.

The console keeps shareable test events as one EventSchemas schema whose `Content` is capped by the
schemas API (`CreateSchemaRequest.Content`, 100,000 characters in botocore's model). An event ships
only when every promise its name and `events/manifest.json` make holds in the deployed stack:
- `console: false` in the manifest: the generator knows the outcome needs something the deploy makes
  (a record signed with a producer's real key, a random secret created at deploy time);
- production stages (`config.production`) ship only events that deliver nothing, so a click on
  "Test" never puts a message in a queue that real consumers read;
- events are added in name order while the schema stays under the Content limit; the rest are left
  out (`fail-too-large` is 300 KiB by design: it exists to exceed SNS's 256 KiB);
- the bridge refuses events from another cluster than its own (bridge.service `_check_source`), and
  events/ is generated from config/dev.yaml: each event is retargeted to the stage's source (its
  `eventSourceArn`, or `bootstrapServers` for self-managed Kafka); one of the other kind is left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from infra.limits import api_limit

# The console's shareable test events live in this registry, one schema per function.
SCHEMA_CONTENT_MAX = int(api_limit("schemas", "CreateSchemaRequest", "Content").max or 0)


@dataclass(frozen=True)
class ConsoleSelection:
    shipped: dict[str, Any] = field(default_factory=dict)
    omitted: dict[str, str] = field(default_factory=dict)  # event name -> why it is not a console event


def test_event_schema(events: Mapping[str, Any]) -> dict[str, Any]:
    """The OpenAPI 3 document the console reads: a loose schema and one example per event."""
    return {
        "openapi": "3.0.0",
        "info": {"version": "1.0.0", "title": "Event"},
        "paths": {},
        "components": {
            # Events include deliberately invalid ones, so the schema describes the Kafka shape loosely.
            "schemas": {"Event": {"type": "object", "properties": {
                "eventSource": {"type": "string"}, "eventSourceArn": {"type": "string"},
                "bootstrapServers": {"type": "string"}, "records": {"type": "object"}}}},
            "examples": {name: {"value": event} for name, event in events.items()},
        },
    }


def schema_content(events: Mapping[str, Any]) -> str:
    """The schema's `Content` exactly as the stack writes it."""
    return json.dumps(test_event_schema(events), sort_keys=True)


@dataclass(frozen=True)
class StageSource:
    """The source the stage's bridge accepts events from (config.source)."""

    kind: str  # msk | self-managed
    cluster_arn: str | None = None
    bootstrap_servers: tuple[str, ...] = ()


def retarget(event: Any, source: StageSource) -> tuple[Any, str | None]:
    """The event as the stage's own mapping would send it, or (None, why) when it cannot be."""
    if not isinstance(event, Mapping) or event.get("eventSource") not in ("aws:kafka", "SelfManagedKafka",
                                                                         "aws:SelfManagedKafka"):
        return event, None  # not a Kafka event (a deliberately invalid one): the bridge refuses it either way
    if source.kind == "msk":
        if event.get("eventSource") != "aws:kafka":
            return None, f"a {event.get('eventSource')} event; this stage's bridge reads the MSK cluster only"
        return {**event, "eventSourceArn": source.cluster_arn}, None
    if event.get("eventSource") == "aws:kafka":
        return None, "an MSK event; this stage's bridge reads self-managed Kafka only"
    return {**event, "bootstrapServers": ",".join(source.bootstrap_servers)}, None


def select_console_events(events: Mapping[str, Any], manifest: Mapping[str, Any], *, production: bool,
                          max_content: int = SCHEMA_CONTENT_MAX, source: StageSource | None = None,
                          ) -> ConsoleSelection:
    """Split `events` ({name: event}) into the ones the console gets (retargeted to `source`) and the others
    with a reason."""
    selection = ConsoleSelection()
    for name in sorted(events):
        entry = manifest.get(f"{name}.json")
        if isinstance(entry, Mapping) and entry.get("console") is False:
            selection.omitted[name] = str(entry.get("console_note") or "the manifest marks it local-only")
            continue
        if production:
            if not isinstance(entry, Mapping):
                selection.omitted[name] = ("production stage: no manifest entry shows that it delivers nothing")
                continue
            if entry.get("delivered"):
                selection.omitted[name] = ("production stage: it delivers to "
                                           + ", ".join(sorted(entry["delivered"])))
                continue
        event = events[name]
        if source is not None:
            event, why = retarget(event, source)
            if why:
                selection.omitted[name] = why
                continue
        candidate = {**selection.shipped, name: event}
        size = len(schema_content(candidate))
        if size > max_content:
            alone = len(json.dumps(events[name]))
            selection.omitted[name] = (f"{alone:,} characters: the console schema would reach {size:,} of the "
                                       f"{max_content:,} EventSchemas allows")
            continue
        selection.shipped[name] = event
    return selection
