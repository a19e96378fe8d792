"""Load the bridge configuration for the CDK app: the validated model plus the document it came from.

The stack needs both: the typed `BridgeConfig` to build resources, and the parsed document to ship
inside the function package (`bridge_config.json`), where the handler validates it again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from bridge.config import BridgeConfig, load_config_file


@dataclass(frozen=True)
class ConfigDocument:
    config: BridgeConfig
    document: Mapping[str, Any]
    path: Path


def load_config_document(path: str | Path) -> ConfigDocument:
    """Validate `path` with `bridge.config.load_config_file` (raises ConfigError) and keep its document."""
    p = Path(path)
    config = load_config_file(p)  # validates first, so the parse below cannot fail
    text = p.read_text(encoding="utf-8")
    document = yaml.safe_load(text) if p.suffix in (".yaml", ".yml") else json.loads(text)
    return ConfigDocument(config, document, p)


def config_from_document(document: Mapping[str, Any], source: str = "config") -> ConfigDocument:
    """Validate an in-memory document (tests build variants of config/dev.yaml this way)."""
    return ConfigDocument(BridgeConfig.from_dict(document, source), document, Path(source))
