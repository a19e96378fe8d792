"""Shareable Lambda console test events, deployed from events/*.json.

The Lambda console keeps shareable test events as an OpenAPI 3 schema named `_<function>-schema` in
the `lambda-testevent-schemas` EventBridge schema registry, one `components.examples` entry per event.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from aws_cdk import Annotations, Fn
from aws_cdk import aws_eventschemas as eventschemas
from aws_cdk import aws_lambda as lambda_
from bridge.config import ConfigError
from constructs import Construct

from infra.console_events import ConsoleSelection, schema_content

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


def load_manifest(events_dir: Path) -> dict[str, Any]:
    """events/manifest.json (event file -> description, expected outcome, console flag); empty when absent."""
    path = events_dir / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError([f"{path}: not valid JSON ({exc}). Fix: regenerate it with `bridge events`"],
                          str(events_dir)) from None
    return manifest if isinstance(manifest, dict) else {}


class ConsoleTestEvents(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, function: lambda_.IFunction,
                 selection: ConsoleSelection, create_registry: bool = False) -> None:
        super().__init__(scope, construct_id)
        for name, why in selection.omitted.items():
            Annotations.of(self).add_info(f"console test event {name} not shipped: {why}")
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
            content=schema_content(selection.shipped),
            description="Console test events of the Kafka bridge (events/*.json)",
        )
        if registry is not None:
            self.schema.add_resource_dependency(registry)
