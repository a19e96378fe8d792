"""Which events/*.json become Lambda console test events, and why the others do not.

The console keeps shareable test events as one EventSchemas schema whose `Content` is capped by the
schemas API (`CreateSchemaRequest.Content`, 100,000 characters in botocore's model). An event ships
only when every promise its name and `events/manifest.json` make holds in the deployed stack:
- `console: false` in the manifest: the generator knows the outcome needs something the deploy makes
  (a record signed with a producer's real key, a random secret created at deploy time);
- production stages (`config.production`) ship only events that deliver nothing, so a click on
  "Test" never puts a message in a queue that real consumers read;
- events are added in name order while the schema stays under the Content limit; the rest are left
  out (`fail-too-large` is 300 KiB by design: it exists to exceed SNS's 256 KiB).
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


def select_console_events(events: Mapping[str, Any], manifest: Mapping[str, Any], *, production: bool,
                          max_content: int = SCHEMA_CONTENT_MAX) -> ConsoleSelection:
    """Split `events` ({name: event}) into the ones the console gets and the others with a reason."""
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
        candidate = {**selection.shipped, name: events[name]}
        size = len(schema_content(candidate))
        if size > max_content:
            alone = len(json.dumps(events[name]))
            selection.omitted[name] = (f"{alone:,} characters: the console schema would reach {size:,} of the "
                                       f"{max_content:,} EventSchemas allows")
            continue
        selection.shipped[name] = events[name]
    return selection
