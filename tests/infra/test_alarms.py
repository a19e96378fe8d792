"""Alarms from the config: every alarm per variant, with its metric, threshold and target.

`pytest tests/infra/test_alarms.py -s` prints the table for each variant.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from bridge.parking import PARK_REASONS, TRUST_PARK_REASONS

from infra.constructs.alarms import ALARM_DESCRIPTION_MAX, ALARM_NAME_MAX, OFFSET_LAG_PERIODS
from infra.constructs.log_queries import QUERIES, QUERY_NAME_MAX, QUERY_STRING_MAX
from infra.stack import REPO_ROOT
from tests.infra.conftest import ALARM_EMAIL, EXISTING_ALARM_TOPIC_ARN, Synth

pytestmark = pytest.mark.infra


def _text(value: Any) -> str:
    """A template value as text: joins flattened, references as <LogicalId>."""
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, dict) and "Ref" in value:
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and "Fn::Join" in value:
        sep, parts = value["Fn::Join"]
        return sep.join(_text(p) for p in parts)
    return str(value)


def _metric_text(props: dict[str, Any]) -> str:
    if "MetricName" in props:
        dims = ",".join(f"{d['Name']}={_text(d['Value'])}" for d in props.get("Dimensions", []))
        return f"{props['Namespace']} {props['MetricName']}{{{dims}}} {props['Statistic']}/{props['Period']}s"
    shown = [m for m in props["Metrics"] if m.get("ReturnData", True)]
    (expression,) = shown
    inputs = [m for m in props["Metrics"] if "MetricStat" in m]
    text = _text(expression["Expression"])
    for m in inputs:
        stat = m["MetricStat"]
        dims = ",".join(f"{d['Name']}={d['Value']}" for d in stat["Metric"]["Dimensions"])
        text += f"; {m['Id']}={stat['Metric']['MetricName']}{{{dims}}} {stat['Stat']}/{stat['Period']}s"
    return f"{text} /{expression['Period']}s" if "Period" in expression else text


def alarms(synth: Synth) -> dict[str, dict[str, Any]]:
    """Alarm name -> properties, for the alarms that notify people (not the rollout's: they gate CodeDeploy
    only, infra/constructs/rollout.py and tests/infra/test_rollout.py)."""
    rollout = (f"{synth.config.prefix}-rollout-errors", f"{synth.config.prefix}-rollout-parked")
    return {r["Properties"]["AlarmName"]: r["Properties"] for r in synth.resources("AWS::CloudWatch::Alarm").values()
            if r["Properties"]["AlarmName"] not in rollout}


def alarm_id(synth: Synth, name: str) -> str:
    return name.removeprefix(f"{synth.config.prefix}-")


def runbook_section(alarm: str) -> str:
    """The docs/runbook.md heading an alarm links to: families of alarms share one."""
    for family in ("destination-dlq", "subscription-dlq", "offset-lag"):
        if alarm.startswith(f"{family}-"):
            return family
    return alarm


def expected_ids(synth: Synth) -> set[str]:
    """What docs/runbook.md promises, derived from the config alone."""
    config = synth.config
    ids = {"bridge-dlq-not-empty", "bridge-dlq-oldest-message", "parked-untrusted", "parking-failed",
           "audit-monitor-dlq", "audit-subscription-dlq", "audit-monitor-oldest-message", "audit-not-published",
           "function-errors", "function-throttles", "function-duration-near-timeout", "fifo-order-break",
           "outage-retries"}
    ids |= {f"parked-{r.replace('_', '-')}" for r in PARK_REASONS if r not in TRUST_PARK_REASONS}
    ids |= {f"destination-dlq-{d.name}" for d in config.destinations if d.type == "sqs" and d.created}
    ids |= {f"subscription-dlq-{d.name}-to-{s.queue}" for d in config.destinations for s in d.subscriptions}
    ids |= {f"offset-lag-{t}" for t in config.source.topics}
    if config.settings.checkpoints:
        ids.add("checkpoint-errors")
    return ids


def test_every_alarm_is_listed_with_metric_threshold_and_target(every_variant: Synth) -> None:
    synth = every_variant
    found = alarms(synth)
    topic = synth.config.alarms.topic_arn
    target = topic or _text({"Ref": synth.logical_id("AWS::SNS::Topic", TopicName=f"{synth.config.prefix}-alarms")})
    print(f"\n{synth.config.name} ({'existing topic' if topic else 'stack topic'}): {len(found)} alarms")
    print(f"{'alarm':<52} {'sev':<4} {'threshold':>9} {'x':>2}  metric -> target")
    for name, props in sorted(found.items()):
        severity = props["AlarmDescription"].split(":", 1)[0]
        print(f"{alarm_id(synth, name):<52} {severity:<4} {props['Threshold']:>9g} {props['EvaluationPeriods']:>2}  "
              f"{_metric_text(props)} -> {target}")
        # then: each alarm notifies the one target when it fires and when it clears
        assert [_text(a) for a in props["AlarmActions"]] == [target]
        assert [_text(a) for a in props["OKActions"]] == [target]
        assert severity in ("HIGH", "WARN")
        assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert props["TreatMissingData"] == "notBreaching"
        assert props["ActionsEnabled"] is synth.config.alarms.enabled
        assert len(name) <= ALARM_NAME_MAX
        assert len(props["AlarmDescription"]) <= ALARM_DESCRIPTION_MAX
        assert props["AlarmDescription"].endswith(f"Runbook: docs/runbook.md#{runbook_section(alarm_id(synth, name))}")
    assert {alarm_id(synth, n) for n in found} == expected_ids(synth)


def test_trust_reasons_share_one_high_severity_alarm(dev: Synth) -> None:
    found = alarms(dev)
    trust = found["orders-bridge-dev-parked-untrusted"]
    assert trust["AlarmDescription"].startswith("HIGH:")
    inputs = [m["MetricStat"]["Metric"] for m in trust["Metrics"] if "MetricStat" in m]
    assert sorted(next(d["Value"] for d in m["Dimensions"] if d["Name"] == "reason") for m in inputs) == sorted(
        TRUST_PARK_REASONS)
    for m in inputs:
        assert m["Namespace"] == "KafkaBridge"
        assert m["MetricName"] == "RecordsParked"
        assert {"Name": "service", "Value": "orders-bridge-dev"} in m["Dimensions"]
    (expression,) = [m for m in trust["Metrics"] if m.get("ReturnData", True)]
    assert expression["Expression"] == " + ".join(f"FILL(m{i}, 0)" for i in range(len(TRUST_PARK_REASONS)))
    # no trust reason has an alarm of its own that a WARN rule could route away from the pager
    assert not any(f"parked-{r.replace('_', '-')}" in n for n in found for r in TRUST_PARK_REASONS)


def test_operational_reasons_alarm_one_by_one_on_the_handlers_metric(dev: Synth) -> None:
    found = alarms(dev)
    for reason in (r for r in PARK_REASONS if r not in TRUST_PARK_REASONS):
        props = found[f"orders-bridge-dev-parked-{reason.replace('_', '-')}"]
        assert props["MetricName"] == "RecordsParked"
        assert sorted(props["Dimensions"], key=lambda d: d["Name"]) == [
            {"Name": "reason", "Value": reason}, {"Name": "service", "Value": "orders-bridge-dev"}]
        assert props["Threshold"] == dev.config.alarms.parked_records


def test_thresholds_and_lag_queries_come_from_the_config(provisioned: Synth) -> None:
    found = alarms(provisioned)
    settings = provisioned.config.alarms
    duration = found["orders-bridge-dev-function-duration-near-timeout"]
    assert duration["Threshold"] == provisioned.config.settings.timeout_seconds * 1000 * 90 // 100
    assert duration["Statistic"] == "Maximum"
    mappings = provisioned.resources("AWS::Lambda::EventSourceMapping")
    for topic in provisioned.config.source.topics:
        lag = found[f"orders-bridge-dev-offset-lag-{topic}"]
        assert lag["Threshold"] == settings.offset_lag == 500
        assert lag["EvaluationPeriods"] == OFFSET_LAG_PERIODS
        (query,) = lag["Metrics"]
        mapping = next(k for k, m in mappings.items() if m["Properties"]["Topics"] == [topic])
        assert _text(query["Expression"]) == (
            f"SELECT MAX(OffsetLag) FROM \"AWS/Lambda\" WHERE EventSourceMappingUUID = '<{mapping}>'")
    dlq_age = found["orders-bridge-dev-bridge-dlq-oldest-message"]
    assert (dlq_age["Threshold"], dlq_age["Dimensions"]) == (
        settings.bridge_dlq_max_age_seconds, [{"Name": "QueueName", "Value": "orders-bridge-dev-bridge-dlq"}])
    # an existing topic: the stack creates none
    assert not [t for t in provisioned.resources("AWS::SNS::Topic").values()
                if t["Properties"].get("TopicName") == "orders-bridge-dev-alarms"]
    assert found["orders-bridge-dev-function-errors"]["AlarmActions"] == [EXISTING_ALARM_TOPIC_ARN]


def test_alarm_topic_is_encrypted_https_only_and_mails_the_on_call(self_managed: Synth) -> None:
    topic_id = self_managed.logical_id("AWS::SNS::Topic", TopicName="orders-bridge-dev-alarms")
    topic = self_managed.data["Resources"][topic_id]["Properties"]
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key = self_managed.data["Resources"][key_id]["Properties"]
    assert key["EnableKeyRotation"] is True
    assert {"Service": "cloudwatch.amazonaws.com"} in [s["Principal"] for s in key["KeyPolicy"]["Statement"]]
    (policy,) = [p["Properties"]["PolicyDocument"]["Statement"] for p in
                 self_managed.resources("AWS::SNS::TopicPolicy").values()
                 if p["Properties"]["Topics"] == [{"Ref": topic_id}]]
    denies = [s for s in policy if s["Effect"] == "Deny"]
    assert {"Bool": {"aws:SecureTransport": "false"}} in [d["Condition"] for d in denies]
    (allow,) = [s for s in policy if s["Effect"] == "Allow"]
    assert allow["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert _text(allow["Condition"]["ArnLike"]["aws:SourceArn"]).endswith(":alarm:orders-bridge-dev-*")
    # every other publisher (no alarm of this bridge as source) is denied
    (others,) = [d for d in denies if "ArnNotLike" in d["Condition"]]
    assert (others["Principal"], others["Action"]) == ({"AWS": "*"}, "sns:Publish")
    assert _text(others["Condition"]["ArnNotLike"]["aws:SourceArn"]).endswith(":alarm:orders-bridge-dev-*")
    self_managed.template.has_resource_properties("AWS::SNS::Subscription", {
        "Protocol": "email", "Endpoint": ALARM_EMAIL, "TopicArn": {"Ref": topic_id}})


def test_every_mapping_publishes_its_own_metrics(every_variant: Synth) -> None:
    for mapping in every_variant.resources("AWS::Lambda::EventSourceMapping").values():
        assert mapping["Properties"]["MetricsConfig"] == {"Metrics": ["EventCount", "ErrorCount", "KafkaMetrics"]}


RUNBOOK = REPO_ROOT / "docs" / "runbook.md"


def test_runbook_has_a_section_and_a_table_row_for_every_alarm(every_variant: Synth) -> None:
    text = RUNBOOK.read_text(encoding="utf-8")
    headings = {line.removeprefix("## ").strip() for line in text.splitlines() if line.startswith("## ")}
    rows = {line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| [`")}
    for name in alarms(every_variant):
        section = runbook_section(alarm_id(every_variant, name))
        assert section in headings, f"docs/runbook.md has no section {section!r}"
        assert any(f"(#{section})" in row for row in rows), f"docs/runbook.md table has no row for {section!r}"


def test_saved_queries_are_scoped_to_the_log_group_within_limits(dev: Synth) -> None:
    definitions = dev.resources("AWS::Logs::QueryDefinition")
    # the function's log group (the signing-key rotation function has its own)
    (log_group,) = [k for k, r in dev.resources("AWS::Logs::LogGroup").items()
                    if r["Properties"]["LogGroupName"].endswith("/function")]
    names = {}
    for definition in definitions.values():
        props = definition["Properties"]
        assert props["LogGroupNames"] == [{"Ref": log_group}]
        assert len(props["Name"]) <= QUERY_NAME_MAX
        assert len(props["QueryString"]) <= QUERY_STRING_MAX
        names[props["Name"]] = props["QueryString"]
    assert set(names) == {f"orders-bridge-dev/{q.id}" for q in QUERIES}
    # the runbook names only queries the stack saves
    text = RUNBOOK.read_text(encoding="utf-8")
    used = set(re.findall(r"query `([a-z-]+)`", text))
    used |= {q for line in text.splitlines() if line.startswith("| [`")
             for q in re.findall(r"`([a-z-]+)`", line.split("|")[4])}
    assert used
    assert used <= {q.id for q in QUERIES}
    # the trust query filters on exactly the trust reasons
    assert all(f'"{r}"' in names["orders-bridge-dev/untrusted-records"] for r in TRUST_PARK_REASONS)
