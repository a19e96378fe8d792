"""Filter pushdown in the template: the routes of a topic as its mapping's FilterCriteria."""

from __future__ import annotations

import json
from typing import Any

import pytest
from bridge.filter_pushdown import MAX_FILTERS, MAX_PATTERN_CHARS, topic_filters

from infra.config_document import config_from_document
from tests.infra.conftest import Synth, synthesize

pytestmark = pytest.mark.infra


def _pushdown_edit(doc: dict[str, Any]) -> None:
    doc["source"]["filter_pushdown"] = True
    doc["unmatched"] = {"action": "skip"}
    doc["routes"].append({"name": "restocks", "match": {"topic": "inventory",
                                                        "body": {"kind": ["restock", "recount"]}},
                          "to": ["stock-alerts"]})
    # inventory's other route asks numeric/exists only: give it a pushable field too
    low = next(r for r in doc["routes"] if r["name"] == "low-stock")
    low["match"]["body"]["kind"] = "count"


@pytest.fixture(scope="module")
def pushdown(variant_document: Any, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return synthesize(config_from_document(variant_document(_pushdown_edit), "pushdown"),
                      tmp_path_factory.mktemp("pushdown"))


def test_mappings_carry_the_routes_as_filter_criteria(pushdown: Synth) -> None:
    mappings = {m["Properties"]["Topics"][0]: m["Properties"]
                for m in pushdown.resources("AWS::Lambda::EventSourceMapping").values()}
    print()
    for topic, props in mappings.items():
        plan = topic_filters(pushdown.config, topic)
        filters = props.get("FilterCriteria", {}).get("Filters", [])
        print(f"{topic}: {plan.reason}" + "".join(f"\n  {f['Pattern']}" for f in filters))
        assert [f["Pattern"] for f in filters] == plan.criteria()
        assert len(filters) <= MAX_FILTERS
        assert all(len(f["Pattern"]) <= MAX_PATTERN_CHARS for f in filters)
    # inventory: both routes pushable; orders: a header route reads every value; payments: no body
    assert [json.loads(f["Pattern"]) for f in mappings["inventory"]["FilterCriteria"]["Filters"]] == [
        {"value": {"kind": ["count"]}}, {"value": {"kind": ["restock", "recount"]}}]
    assert "FilterCriteria" not in mappings["orders"]
    assert "FilterCriteria" not in mappings["payments"]


def test_no_filter_criteria_without_pushdown(dev: Synth) -> None:
    mappings = dev.resources("AWS::Lambda::EventSourceMapping").values()
    assert not any("FilterCriteria" in m["Properties"] for m in mappings)
