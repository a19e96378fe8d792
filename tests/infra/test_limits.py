"""Every property the templates set is checked against botocore's documented limits at synth."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import botocore.session
import pytest
import yaml

import app
from infra.limits import DOCUMENTED_LIMITS, NO_API_LIMIT, template_problems, unchecked_properties
from tests.infra.conftest import DEV_CONFIG, Synth

pytestmark = pytest.mark.infra


def _run_app(tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = app.main(cdk.App(context={"config": str(config)}, outdir=str(tmp_path / "cdk.out")))
    return code, capsys.readouterr().err


# app.py stages the function in the repository's build/ as `bridge up --deploy` does: one at a time under
# pytest-xdist (tests/conftest.py GROUPS)
def test_a_value_over_an_api_limit_fails_synth_with_one_line(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # given: a Kafka topic name Kafka and the config model accept, but Lambda's API pattern does not
    # (CreateEventSourceMapping Topics: [^.]([a-zA-Z0-9\-_.]+), no leading dot, at least two characters)
    doc = yaml.safe_load(DEV_CONFIG.read_text(encoding="utf-8"))
    doc["source"]["topics"].append(".audit")
    config = tmp_path / "dot-topic.yaml"
    config.write_text(yaml.safe_dump(doc), encoding="utf-8")

    # when
    code, err = _run_app(tmp_path, config, capsys)

    # then: one line naming the resource, the property and the limit (CDK's own schema check only warns)
    assert code == 1
    errors = [line for line in err.splitlines(keepends=True) if line.startswith("error:")]
    assert len(errors) == 1, err
    assert re.fullmatch(
        r"error: KafkaBridge-orders-bridge-dev/Rollout/Live/KafkaEventSource:[^/]+\.audit/Resource "
        r"\(AWS::Lambda::EventSourceMapping\) Topics\[0\]: '\.audit' does not match the pattern "
        r"\[\^\.\]\(\[a-zA-Z0-9\\-_\.\]\+\) \(botocore lambda CreateEventSourceMappingRequest\.Topics\)\n",
        errors[0]), err


def test_the_console_schema_of_every_event_would_have_failed_the_first_deploy() -> None:
    # the schema as it was: every events/*.json, 419,098 characters
    template = {"Resources": {"Schema": {"Type": "AWS::EventSchemas::Schema", "Properties": {
        "Content": "x" * 419_098, "RegistryName": "lambda-testevent-schemas", "Type": "OpenApi3"}}}}
    assert template_problems(template, {"Schema": "KafkaBridge-orders-bridge-dev/ConsoleTestEvents/Schema"}) == [
        "KafkaBridge-orders-bridge-dev/ConsoleTestEvents/Schema (AWS::EventSchemas::Schema) Content: 419,098 "
        "characters, limit 100,000 (botocore schemas CreateSchemaRequest.Content)"]


@pytest.mark.parametrize(("rtype", "props", "expected"), [
    ("AWS::Lambda::Function", {"MemorySize": 40_960}, "MemorySize: 40,960, limit 32,768"),
    ("AWS::Lambda::Function", {"Runtime": "python9"}, "Runtime: 'python9' is not one of"),
    ("AWS::SQS::Queue", {"MessageRetentionPeriod": 30}, "MessageRetentionPeriod: 30, minimum 60"),
    ("AWS::SQS::Queue", {"QueueName": "q" * 81}, "QueueName: 81 characters, limit 80"),
    ("AWS::SNS::Topic", {"TopicName": "bad name"}, "TopicName: 'bad name' is not allowed"),
    ("AWS::Logs::LogGroup", {"RetentionInDays": 0}, None),  # the model has no range: the config model checks
    ("AWS::IAM::Role", {"Description": "d" * 1001}, "Description: 1,001 characters, limit 1,000"),
    ("AWS::Lambda::EventSourceMapping", {"BatchSize": 10_001}, "BatchSize: 10,001, limit 10,000"),
    ("AWS::KMS::Key", {"KeyPolicy": {"Statement": [{"Sid": "s" * 140_000, "Resource": {"Ref": "K"}}]}},
     "KeyPolicy: at least 140,"),
    # the checkpoint table's policy with 400, then 500 operators' roles (settings.operator_role_arns)
    ("AWS::DynamoDB::Table", {"ResourcePolicy": {"PolicyDocument": {"Statement": [{"Principal": {"AWS": [
        f"arn:aws:iam::123456789012:role/operators-{i:04}" for i in range(400)]}, "Resource": {"Ref": "T"}}]}}},
     None),
    ("AWS::DynamoDB::Table", {"ResourcePolicy": {"PolicyDocument": {"Statement": [{"Principal": {"AWS": [
        f"arn:aws:iam::123456789012:role/operators-{i:04}" for i in range(500)]}, "Resource": {"Ref": "T"}}]}}},
     "ResourcePolicy: at least 24,053 characters, limit 20,000"),
])
def test_limits_of_the_models_and_their_documentation(rtype: str, props: dict[str, Any], expected: str | None) -> None:
    problems = template_problems({"Resources": {"R": {"Type": rtype, "Properties": props}}})
    if expected is None:
        assert problems == []
    else:
        (line,) = problems
        assert line.startswith(f"R ({rtype}) {expected}"), line


def test_documented_limits_are_quoted_from_botocore() -> None:
    session = botocore.session.get_session()
    for (rtype, prop), limit in DOCUMENTED_LIMITS.items():
        shape = session.get_service_model(limit.service).shape_for(limit.shape)
        text = re.sub(r"<[^>]+>", "", shape.members[limit.member].documentation)
        assert limit.phrase in text, f"{rtype}.{prop}: botocore no longer says {limit.phrase!r}"


def test_every_property_is_checked_or_has_a_reason(every_variant: Synth) -> None:
    unchecked = unchecked_properties(every_variant.data)
    reasons = {f"{t}.{p}" for t, p in NO_API_LIMIT}
    assert unchecked <= reasons, sorted(unchecked - reasons)
    props = {(r["Type"], p) for r in every_variant.data["Resources"].values() for p in r.get("Properties", {})}
    checked = len(props) - len({(t, p) for t, p in props if f"{t}.{p}" in unchecked})
    print(f"\nlimits {every_variant.config.name}: {checked} of {len(props)} resource-type properties checked "
          f"against botocore, {len(props) - checked} with a reason in NO_API_LIMIT")
