"""The dashboard: alarms, records in/delivered/parked, lag and mapping events per topic, DLQ depths."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from bridge.parking import PARK_REASONS

from infra.constructs.dashboard import (
    ALARMS_PER_STATUS_WIDGET,
    MAPPING_EVENT_METRICS,
    WIDGETS_MAX,
    dead_letter_queue_names,
)
from tests.infra.conftest import Synth

pytestmark = pytest.mark.infra


def dashboard_body(synth: Synth) -> tuple[str, dict[str, Any]]:
    """The dashboard's name and body, with every reference rendered as <LogicalId>."""
    (dashboard,) = synth.resources("AWS::CloudWatch::Dashboard").values()
    parts = dashboard["Properties"]["DashboardBody"]["Fn::Join"][1]
    text = "".join(p if isinstance(p, str) else f"<{p.get('Ref') or p['Fn::GetAtt'][0]}>" for p in parts)
    return dashboard["Properties"]["DashboardName"], json.loads(text)


def widget(body: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [w for w in body["widgets"] if w["properties"].get("title") == title]
    return found


def test_dashboard_shows_every_alarm_and_the_flow_of_records(every_variant: Synth) -> None:
    synth = every_variant
    config = synth.config
    name, body = dashboard_body(synth)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,255}", name)
    assert len(body["widgets"]) <= WIDGETS_MAX
    # every alarm of the stack, HIGH ones first
    status = [w for w in body["widgets"] if w["type"] == "alarm"]
    shown = [a for w in status for a in w["properties"]["alarms"]]
    assert all(len(w["properties"]["alarms"]) <= ALARMS_PER_STATUS_WIDGET for w in status)
    alarms = synth.resources("AWS::CloudWatch::Alarm")
    assert sorted(shown) == sorted(f"<{k}>" for k in alarms)
    severities = [alarms[a.strip("<>")]["Properties"]["AlarmDescription"].split(":")[0] for a in shown]
    assert severities == sorted(severities, key=lambda s: s != "HIGH")
    # delivered per routed destination, parked per reason
    delivered = widget(body, "Delivered per destination")["properties"]["metrics"]
    assert [m[3] for m in delivered] == [d.name for d in config.routed_destinations()]
    parked = widget(body, "Parked per reason")["properties"]["metrics"]
    assert [m[3] for m in parked] == list(PARK_REASONS)
    assert all(m[:2] == ["KafkaBridge", "RecordsParked"] and m[4:6] == ["service", config.prefix] for m in parked)
    # lag and the mapping's own events, per topic, by the mapping's UUID
    mappings = {m["Properties"]["Topics"][0]: k for k, m in synth.resources("AWS::Lambda::EventSourceMapping").items()}
    lag = widget(body, "Offset lag per topic (records)")["properties"]["metrics"]
    assert [m[0]["expression"] for m in lag] == [
        f"SELECT MAX(OffsetLag) FROM \"AWS/Lambda\" WHERE EventSourceMappingUUID = '<{mappings[t]}>'"
        for t in config.source.topics]
    for topic in config.source.topics:
        events = widget(body, f"Mapping events: {topic}")["properties"]["metrics"]
        assert [m[0]["expression"].split("(")[1].split(")")[0] for m in events] == list(MAPPING_EVENT_METRICS)
        assert all(f"'<{mappings[topic]}>'" in m[0]["expression"] for m in events)
    # duration against the timeout line, and every dead-letter queue's depth
    duration = widget(body, "Duration (ms) against the timeout")["properties"]
    assert duration["annotations"]["horizontal"][0]["value"] == config.settings.timeout_seconds * 1000
    depths = widget(body, "Dead-letter queue depths (messages)")["properties"]["metrics"]
    assert [m[3] for m in depths] == dead_letter_queue_names(config)
    print(f"\n{config.name}: dashboard {name!r}, {len(body['widgets'])} widgets, {len(shown)} alarms, "
          f"{len(json.dumps(body))} bytes of body")
