"""Which destinations a record goes to: `Route.match` evaluated against topic, key, headers and body.

Every route whose match holds applies; destinations are de-duplicated per record in route order.
A record no route matches follows `config.unmatched`: park (reason `unroutable`), skip, or route to
`unmatched.to`.

A redriven record (listed with destinations in a redrive invocation's `bridgeRedrive` map) is routed
as usual and then restricted by `restrict_to_redrive` to the destinations it was parked for.

Field semantics:
- topic and key are text (a key that is not UTF-8 never matches, an absent key is "not present");
- a header may repeat: the condition holds when any of its values satisfies it;
- body fields are dotted paths into the record value parsed as JSON, once per record and only when
  a route asks for a body field (digits index into lists: `items.0.sku`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

from bridge.config import BridgeConfig, Condition, Match
from bridge.frozen import frozen
from bridge.records import KafkaRecord, utf8_or_none

UNMATCHED_ROUTE = "unmatched"  # the route name counted for records sent by `unmatched: route`

_MISSING = object()  # a field that is not present, distinct from a JSON null

BodyParser = Callable[[bytes], Any]
"""Parses a record value as JSON (json.loads); raises ValueError when it is not JSON."""


@frozen
class RoutingDecision:
    """What to do with one record: deliver to `destinations`, or park/skip it."""

    action: Literal["deliver", "park", "skip"]
    routes: tuple[str, ...] = ()
    destinations: tuple[str, ...] = ()


class Router:
    """Evaluates the configured routes; build once per cold start.

    Each route's match is compiled once into checks (`compile_match`), and a decision is built once
    per set of matching routes, so routing a record evaluates conditions and nothing else.
    """

    def __init__(self, config: BridgeConfig, parse: BodyParser = json.loads) -> None:
        self._routes = tuple((route.name, route.to, compile_match(route.match)) for route in config.routes)
        self._reads_body = any(route.match.body for route in config.routes)
        self._unmatched = config.unmatched
        self._parse = parse
        self._decisions: dict[tuple[str, ...], RoutingDecision] = {}
        # every route reads the topic only: a topic's records all get the same decision (`topic_decision`)
        self._topic_only = all(r.match.key is None and not r.match.headers and not r.match.body
                               for r in config.routes)
        if config.unmatched.action == "route":
            self._no_match = RoutingDecision("deliver", (UNMATCHED_ROUTE,), config.unmatched.to)
        else:
            self._no_match = RoutingDecision(config.unmatched.action)

    def route(self, record: KafkaRecord) -> RoutingDecision:
        """The routing decision for one decoded record (its value parsed at most once, by `parse`)."""
        body = _LazyBody(record.value, self._parse) if self._reads_body else _NO_BODY
        names = tuple([name for name, _, check in self._routes if check(record, body)])
        if not names:
            return self._no_match
        decision = self._decisions.get(names)
        if decision is None:
            destinations = dict.fromkeys(d for name, to, _ in self._routes if name in names for d in to)
            decision = self._decisions[names] = RoutingDecision("deliver", names, tuple(destinations))
        return decision

    def topic_decision(self, topic: str) -> RoutingDecision | None:
        """The decision for every record of `topic` when the routes read nothing but the topic (the
        planning fast path's premise: bridge.fast_path), else None."""
        if not self._topic_only:
            return None
        return self.route(KafkaRecord(topic, 0, 0, 0, "", None, None, (), {}))


RecordCheck = Callable[[KafkaRecord, "_LazyBody"], bool]
ValuesCheck = Callable[[Sequence[Any]], bool]


def compile_match(match: Match) -> RecordCheck:
    """A route's match as one function: True when every condition holds for the record (an empty match
    holds for all)."""
    checks: list[RecordCheck] = []
    if match.topic is not None:
        topic = compile_condition(match.topic, is_text=True)
        checks.append(lambda r, b: topic([r.topic]))
    if match.key is not None:
        key_check = compile_condition(match.key, is_text=True)

        def key(r: KafkaRecord, b: _LazyBody) -> bool:
            text = utf8_or_none(r.key) if r.key is not None else None
            return key_check([] if text is None else [text])
        checks.append(key)
    for name, condition in match.headers:
        checks.append(_header_check(name, compile_condition(condition, is_text=True)))
    if match.body:
        fields = tuple((path, compile_condition(c, is_text=False)) for path, c in match.body)

        def body(r: KafkaRecord, b: _LazyBody) -> bool:
            document = b.get()
            for path, check in fields:
                found = body_field(document, path)
                if not check([] if found is _MISSING else [found]):
                    return False
            return True
        checks.append(body)
    if not checks:
        return lambda r, b: True
    if len(checks) == 1:
        return checks[0]
    every = tuple(checks)
    return lambda r, b: all(check(r, b) for check in every)


def _header_check(name: str, check: ValuesCheck) -> RecordCheck:
    def header(r: KafkaRecord, b: _LazyBody) -> bool:
        return check([t for v in r.header_values(name) if (t := utf8_or_none(v)) is not None])
    return header


def compile_condition(condition: Condition, *, is_text: bool) -> ValuesCheck:
    """Whether a condition holds for a field with these values (empty = the field is absent).

    `is_text` marks topic, key and header fields: they are strings on the wire, so an equals on a
    number or boolean compares with its JSON text and numeric parses the text as a number.
    """
    kind = condition.kind
    if kind == "exists":
        want = bool(condition.value)
        return lambda values: bool(values) == want
    if kind == "any_of":
        alternatives = tuple(compile_condition(alt, is_text=is_text) for alt in condition.alternatives)
        return lambda values: any(alt(values) for alt in alternatives)
    if kind == "equals" and is_text:
        expected = condition.value if isinstance(condition.value, str) else json.dumps(condition.value)
        return lambda values: expected in values  # text fields are str: `in` is the equality test
    test = _TESTS[kind]
    return lambda values: any(test(condition, v, is_text) for v in values)


def restrict_to_redrive(decision: RoutingDecision,
                        listed: Sequence[str]) -> tuple[RoutingDecision, tuple[str, ...]]:
    """A redriven record's decision, restricted to the destinations it was parked for.

    Returns (the decision to deliver to the listed destinations that the routes, evaluated with the
    current config, still select, in route order; the listed destinations they no longer select, in
    listing order). A destination that already has the record is never in the first part, so a redrive
    sends no duplicates; the caller parks the second part again (as `unroutable`) rather than drop it.
    """
    routed = decision.destinations if decision.action == "deliver" else ()
    keep = tuple(d for d in routed if d in listed)
    gone = tuple(d for d in listed if d not in routed)
    return RoutingDecision("deliver", decision.routes, keep), gone


class _LazyBody:
    """The record value parsed as JSON on first use; a value that is not JSON has no fields."""

    def __init__(self, value: bytes | None, parse: BodyParser = json.loads) -> None:
        self._value = value
        self._parse = parse
        self._parsed: Any = None
        self._done = False

    def get(self) -> Any:
        if not self._done:
            self._done = True
            try:
                self._parsed = self._parse(self._value) if self._value else _MISSING
            except ValueError:  # JSONDecodeError and UnicodeDecodeError both subclass ValueError
                self._parsed = _MISSING
        return self._parsed


_NO_BODY = _LazyBody(None)  # for configs whose routes read no body field: never parsed


def body_field(document: Any, path: str) -> Any:
    """The value at a dotted path in a parsed JSON document, or the `_MISSING` sentinel."""
    node = document
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return _MISSING
    return node


def _equals(condition: Condition, value: Any, is_text: bool) -> bool:
    expected = condition.value
    if is_text:
        return bool(value == (expected if isinstance(expected, str) else json.dumps(expected)))
    # JSON semantics: true is not 1 and "1" is not 1.
    if isinstance(expected, bool) or isinstance(value, bool):
        return type(expected) is type(value) and expected == value
    if isinstance(expected, (int, float)) and isinstance(value, (int, float)):
        return float(expected) == float(value)
    return bool(type(expected) is type(value) and expected == value)


def _prefix(condition: Condition, value: Any, is_text: bool) -> bool:
    return isinstance(value, str) and value.startswith(str(condition.value))


def _numeric(condition: Condition, value: Any, is_text: bool) -> bool:
    number = _as_number(value, is_text)
    if number is None:
        return False
    return all(_COMPARE[op](number, bound) for op, bound in condition.comparisons)


def _as_number(value: Any, is_text: bool) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if is_text and isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


_COMPARE: dict[str, Callable[[float, float], bool]] = {
    "=": lambda a, b: a == b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}

_TESTS: dict[str, Callable[[Condition, Any, bool], bool]] = {
    "equals": _equals,
    "prefix": _prefix,
    "numeric": _numeric,
}
