"""Filter pushdown: the routes of a topic as the event-source mapping's filter criteria.

With `source.filter_pushdown: true` and `unmatched: {action: skip}`, records no route of a topic can
select are dropped by Lambda before an invocation (metric `FilteredOutEventCount`), instead of being
handed to the function and skipped there. The infra stack writes the patterns into each mapping's
`FilterCriteria`; the local poller applies the same patterns with `admits`, so the saving shows
locally too.

Lambda filters Kafka records on `value` only (its JSON fields), with EventBridge pattern semantics.
A pattern must never drop a record a route would deliver, so each route becomes the weakest pattern
that still holds for every record it matches (a superset):
- pushed down: body conditions `equals` on a string or boolean, `prefix`, and `any_of` of those;
- kept in the function only (the pattern leaves the field out): `numeric` and number equality
  (EventBridge compares numbers only within +-5e9 at limited precision, so a larger value could be
  dropped), `exists`, and paths through list indexes (`items.0.sku`: patterns cannot index lists);
- a route with a key or header condition, or none left after that, can select any value: the topic
  gets no filter at all.
The patterns of a topic's routes are ORed (one filter each), at most `MAX_FILTERS` per mapping.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from bridge.config import BridgeConfig, Condition, Route
from bridge.frozen import frozen
from bridge.routing import compile_condition

MAX_FILTERS = 5  # Lambda quota: filters per event-source mapping (default, adjustable)
MAX_PATTERN_CHARS = 4096  # botocore lambda Filter.Pattern max


@frozen
class TopicFilters:
    """The filter criteria of one topic's mapping: `patterns` (empty = no filter) and why."""

    topic: str
    patterns: tuple[dict[str, Any], ...]
    reason: str

    def criteria(self) -> list[str]:
        """The `FilterCriteria.Filters[].Pattern` strings, compact JSON."""
        return [json.dumps(p, separators=(",", ":"), sort_keys=True) for p in self.patterns]


def topic_filters(config: BridgeConfig, topic: str) -> TopicFilters:  # noqa: PLR0911 - one return per reason
    """The filter patterns for `topic`'s mapping, or none with the reason."""
    if not config.source.filter_pushdown:
        return TopicFilters(topic, (), "source.filter_pushdown is off")
    if config.unmatched.action != "skip":
        return TopicFilters(topic, (), f"unmatched.action is {config.unmatched.action}: every record must "
                                        "reach the function")
    routes = [r for r in config.routes
              if r.match.topic is None or compile_condition(r.match.topic, is_text=True)([topic])]
    if not routes:
        return TopicFilters(topic, (), "no route reads this topic")  # all skipped: still counted, left alone
    patterns: list[dict[str, Any]] = []
    for route in routes:
        pattern = _route_pattern(route)
        if pattern is None:
            return TopicFilters(topic, (), f"route {route.name} can select any value (key, header or no "
                                           "pushable body condition)")
        if pattern not in patterns:
            patterns.append(pattern)
    if len(patterns) > MAX_FILTERS:
        return TopicFilters(topic, (), f"{len(patterns)} patterns, a mapping takes {MAX_FILTERS}")
    too_long = [p for p in patterns if len(json.dumps(p, separators=(",", ":"))) > MAX_PATTERN_CHARS]
    if too_long:
        return TopicFilters(topic, (), f"a pattern is longer than {MAX_PATTERN_CHARS} characters")
    return TopicFilters(topic, tuple(patterns), f"{len(patterns)} pattern(s) from routes "
                                                f"{', '.join(r.name for r in routes)}")


def _route_pattern(route: Route) -> dict[str, Any] | None:
    """The value pattern of one route, or None when it can select any value."""
    m = route.match
    if m.key is not None or m.headers:
        return None
    fields: dict[str, Any] = {}
    for path, condition in m.body:
        alternatives = _alternatives(condition)
        parts = path.split(".")
        if alternatives is None or any(p.isdigit() for p in parts):
            continue  # checked in the function only; the pattern stays a superset
        node = fields
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break  # the same path is a leaf in another condition: keep that one only
            node = child
        else:
            if parts[-1] not in node:
                node[parts[-1]] = alternatives
    return {"value": fields} if fields else None


def _alternatives(condition: Condition) -> list[Any] | None:
    """EventBridge pattern alternatives matching exactly what the condition matches, or None."""
    if condition.kind == "equals" and isinstance(condition.value, (str, bool)):
        return [condition.value]
    if condition.kind == "prefix":
        return [{"prefix": str(condition.value)}]
    if condition.kind == "any_of":
        out: list[Any] = []
        for alt in condition.alternatives:
            parts = _alternatives(alt)
            if parts is None:
                return None
            out += [p for p in parts if p not in out]
        return out or None
    return None


# --- the same patterns applied locally (bridge_local's poller) ------------------------------------


def admits(filters: TopicFilters, value: bytes | None) -> bool:
    """Whether Lambda would hand a record with this value to the function under these filters."""
    if not filters.patterns:
        return True
    try:
        document = json.loads(value) if value else None
    except ValueError:
        return False  # field patterns never match a value that is not JSON
    return any(_matches(p["value"], document) for p in filters.patterns)


def _matches(pattern: Mapping[str, Any], node: Any) -> bool:
    if isinstance(node, list):  # EventBridge: a pattern matches a list when it matches an element
        return any(_matches(pattern, n) for n in node)
    if not isinstance(node, dict):
        return False
    for name, expected in pattern.items():
        if name not in node:
            return False
        value = node[name]
        if isinstance(expected, dict):
            if not _matches(expected, value):
                return False
        elif not any(_leaf(alt, v) for alt in expected for v in (value if isinstance(value, list) else [value])):
            return False
    return True


def _leaf(alternative: Any, value: Any) -> bool:
    if isinstance(alternative, dict):
        return isinstance(value, str) and value.startswith(alternative["prefix"])
    if isinstance(alternative, bool) or isinstance(value, bool):
        return type(alternative) is type(value) and alternative == value
    return isinstance(value, str) and alternative == value
