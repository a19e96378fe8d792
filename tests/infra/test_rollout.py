"""Safe rollout: mappings invoke the live alias; each change publishes a version; CodeDeploy shifts and rolls back."""

from __future__ import annotations

import json
from typing import Any

import pytest

from infra.config_document import config_from_document
from tests.infra.conftest import SAMPLE_EVENTS, Synth, synthesize
from tests.infra.helpers import as_list, ref

pytestmark = pytest.mark.infra


def _one(synth: Synth, cfn_type: str) -> tuple[str, dict[str, Any]]:
    items = synth.resources(cfn_type).items()
    if cfn_type == "AWS::Lambda::Function":  # the bridge function, not the signing-key rotation function
        items = {k: r for k, r in items if r["Properties"]["Handler"] == "bridge.handler.lambda_handler"}.items()
    (item,) = items
    return item


def _alarm(synth: Synth, name: str) -> dict[str, Any]:
    (props,) = [r["Properties"] for r in synth.resources("AWS::CloudWatch::Alarm").values()
                if r["Properties"].get("AlarmName") == name]
    return dict(props)


def test_every_mapping_invokes_the_live_alias_of_the_current_version(every_variant: Synth) -> None:
    alias_id, alias = _one(every_variant, "AWS::Lambda::Alias")
    version_id, _ = _one(every_variant, "AWS::Lambda::Version")
    function_id, _ = _one(every_variant, "AWS::Lambda::Function")
    assert alias["Properties"]["Name"] == "live"
    assert alias["Properties"]["FunctionName"] == ref(function_id)
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    mappings = every_variant.resources("AWS::Lambda::EventSourceMapping").values()
    assert len(mappings) == len(every_variant.config.source.topics)
    # `<function name>:live`: the alias, never $LATEST
    qualified = {"Fn::Join": ["", [{"Fn::Select": [6, {"Fn::Split": [":", ref(alias_id)]}]}, ":live"]]}
    assert all(m["Properties"]["FunctionName"] == qualified for m in mappings)


def test_a_changed_package_publishes_a_new_version(dev: Synth, variant_document: Any,
                                                   tmp_path_factory: pytest.TempPathFactory) -> None:
    doc = variant_document(lambda d: d["settings"].update(max_delivery_attempts=5))
    changed = synthesize(config_from_document(doc, "changed"), tmp_path_factory.mktemp("changed"),
                         events=SAMPLE_EVENTS)
    assert _one(dev, "AWS::Lambda::Version")[0] != _one(changed, "AWS::Lambda::Version")[0]


def test_codedeploy_moves_the_alias_and_rolls_back_on_its_alarms(dev: Synth) -> None:
    _, alias = _one(dev, "AWS::Lambda::Alias")
    group_id, group = _one(dev, "AWS::CodeDeploy::DeploymentGroup")
    app_id, _ = _one(dev, "AWS::CodeDeploy::Application")
    assert alias["UpdatePolicy"] == {"CodeDeployLambdaAliasUpdate": {"ApplicationName": ref(app_id),
                                                                     "DeploymentGroupName": ref(group_id)}}
    props = group["Properties"]
    assert set(props["AutoRollbackConfiguration"]["Events"]) == {
        "DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"}
    assert props["AutoRollbackConfiguration"]["Enabled"] is True
    alarm_ids = {a["Name"]["Ref"] for a in props["AlarmConfiguration"]["Alarms"]}
    names = {dev.data["Resources"][i]["Properties"]["AlarmName"] for i in alarm_ids}
    assert names == {"orders-bridge-dev-rollout-errors", "orders-bridge-dev-rollout-parked"}


def test_rollback_alarms_watch_the_alias_errors_and_the_bridge_dlq(dev: Synth) -> None:
    errors = _alarm(dev, "orders-bridge-dev-rollout-errors")
    assert (errors["Namespace"], errors["MetricName"], errors["Statistic"], errors["Period"]) == \
        ("AWS/Lambda", "Errors", "Sum", 60)
    assert (errors["Threshold"], errors["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")
    assert {d["Name"] for d in errors["Dimensions"]} == {"FunctionName", "Resource"}
    parked = _alarm(dev, "orders-bridge-dev-rollout-parked")
    assert (parked["Namespace"], parked["MetricName"], parked["Period"]) == ("AWS/SQS", "NumberOfMessagesSent", 60)
    assert (parked["Threshold"], parked["ComparisonOperator"]) == (10, "GreaterThanThreshold")
    dlq = dev.logical_id("AWS::SQS::Queue", QueueName=dev.config.bridge_dlq_name)
    assert parked["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq, "QueueName"]}}]


@pytest.mark.parametrize(("variant", "expected"), [
    ("dev", {"Type": "TimeBasedCanary", "TimeBasedCanary": {"CanaryInterval": 5, "CanaryPercentage": 10}}),
    ("prod", {"Type": "TimeBasedLinear", "TimeBasedLinear": {"LinearInterval": 2, "LinearPercentage": 10}}),
])
def test_the_traffic_shift_is_the_stages(variant: str, expected: dict[str, Any],
                                         request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(variant)
    _, config = _one(synth, "AWS::CodeDeploy::DeploymentConfig")
    assert config["Properties"] == {"ComputePlatform": "Lambda", "TrafficRoutingConfig": expected}
    assert _alarm(synth, f"{synth.config.prefix}-rollout-parked")["Threshold"] == \
        synth.config.deployment.rollout.max_parked_per_minute


def test_codedeploy_role_may_shift_only_this_alias_and_read_only_these_alarms(dev: Synth) -> None:
    group = _one(dev, "AWS::CodeDeploy::DeploymentGroup")[1]["Properties"]
    role_id = group["ServiceRoleArn"]["Fn::GetAtt"][0]
    role = dev.data["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role  # not AWSCodeDeployRoleForLambdaLimited (every function, every alarm)
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "codedeploy.amazonaws.com"}
    function_id, _ = _one(dev, "AWS::Lambda::Function")
    statements = {s["Sid"]: s for p in role["Policies"] for s in as_list(p["PolicyDocument"]["Statement"])}
    assert set(statements) == {"ShiftTheLiveAlias", "ReadTheRollbackAlarms"}
    alias_arn = json.dumps(statements["ShiftTheLiveAlias"]["Resource"])
    assert ":lambda:" in alias_arn
    assert json.dumps(ref(function_id)) in alias_arn
    assert alias_arn.endswith(':live"]]}')
    alarm_arns = [json.dumps(r) for r in as_list(statements["ReadTheRollbackAlarms"]["Resource"])]
    assert len(alarm_arns) == 2
    assert alarm_arns[0].endswith(':alarm:orders-bridge-dev-rollout-errors"]]}')
    assert alarm_arns[1].endswith(':alarm:orders-bridge-dev-rollout-parked"]]}')
