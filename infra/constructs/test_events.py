"""Shareable Lambda console test events, deployed from events/*.json.

The Lambda console keeps shareable test events as an OpenAPI 3 schema named `_<function>-schema` in
the `lambda-testevent-schemas` EventBridge schema registry, one `components.examples` entry per event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aws_cdk import Fn
from aws_cdk import aws_eventschemas as eventschemas
from aws_cdk import aws_lambda as lambda_
from bridge.config import ConfigError
from constructs import Construct

REGISTRY_NAME = "lambda-testevent-schemas"
# events/manifest.json describes the expected outcome of each event for the test suites; it is not an event.
MANIFEST_FILE = "manifest.json"


def load_test_events(events_dir: Path) -> dict[str, Any]:
    """`{file stem: event}` for every events/*.json but the manifest, in name order; empty when absent."""
    if not events_dir.is_dir():
        return {}
    events: dict[str, Any] = {}
    for path in sorted(events_dir.glob("*.json")):
        if path.name == MANIFEST_FILE:
            continue
        try:
            events[path.stem] = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError([f"{path}: not valid JSON ({exc}). Fix: correct the event or remove the file"],
                              str(events_dir)) from None
    return events


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


class ConsoleTestEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, function: lambda_.IFunction,
                 events: Mapping[str, Any], create_registry: bool = False) -> None:
        super().__init__(scope, construct_id)
        registry = None
        if create_registry:
            # The console creates this registry the first time anyone saves a shareable event, so most
            # accounts already have it; creating it again would fail the deployment.
            registry = eventschemas.CfnRegistry(self, "Registry", registry_name=REGISTRY_NAME,
                                                description="Shareable Lambda console test events")
        self.schema = eventschemas.CfnSchema(
            self, "Schema",
            registry_name=REGISTRY_NAME,
            schema_name=Fn.join("", ["_", function.function_name, "-schema"]),
            type="OpenApi3",
            content=json.dumps(test_event_schema(events), sort_keys=True),
            description="Console test events of the Kafka bridge (events/*.json)",
        )
        if registry is not None:
            self.schema.add_resource_dependency(registry)
