"""The bridge function, its package, its event-source mappings and the console test events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Capture, Match
from bridge.config import BridgeConfig

from infra.config_document import config_from_document
from infra.constructs.test_events import MANIFEST_FILE, REGISTRY_NAME, load_test_events
from infra.stack import REPO_ROOT
from tests.infra.conftest import SAMPLE_EVENTS, SELF_MANAGED_SOURCE, Synth, synthesize
from tests.infra.helpers import arn_of

pytestmark = pytest.mark.infra


def test_function_runtime_layer_and_environment(dev: Synth) -> None:
    layer = Capture()
    bucket = next(iter(dev.resources("AWS::S3::Bucket")))
    dev.template.has_resource_properties("AWS::Lambda::Function", {
        "Runtime": "python3.12",
        "Architectures": ["arm64"],
        "Handler": "bridge.handler.lambda_handler",
        "MemorySize": dev.config.settings.memory_mb,
        "Timeout": dev.config.settings.timeout_seconds,
        "TracingConfig": {"Mode": "Active"},
        "Layers": [layer],
        "Environment": {"Variables": {
            "BRIDGE_ACCOUNT_ID": {"Ref": "AWS::AccountId"},
            "BRIDGE_PARTITION": {"Ref": "AWS::Partition"},
            "BRIDGE_PARKING_BUCKET": {"Ref": bucket},
            "POWERTOOLS_SERVICE_NAME": "orders-bridge-dev",
            "POWERTOOLS_METRICS_NAMESPACE": "KafkaBridge",
        }},
        "LoggingConfig": Match.object_like({"LogGroup": Match.any_value()}),
    })
    parts = layer.as_object()["Fn::Join"][1]
    assert parts[-1] == ":017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:27"
    dev.template.has_resource_properties("AWS::Logs::LogGroup", {"RetentionInDays": 30})


def test_function_package_holds_the_code_and_the_config(dev: Synth) -> None:
    package = dev.package_dir
    assert (package / "bridge" / "config.py").is_file()
    # no local caches: only the bytecode compiled for the runtime (infra/bytecode.py, tests/infra/test_bytecode.py)
    assert all(p.name.endswith(".cpython-312.pyc") for p in package.rglob("__pycache__/*"))
    document = json.loads((package / "bridge_config.json").read_text(encoding="utf-8"))
    assert BridgeConfig.from_dict(document) == dev.config


def test_one_mapping_per_topic_with_configured_settings(every_variant: Synth) -> None:
    synth = every_variant
    source = synth.config.source
    bucket = next(iter(synth.resources("AWS::S3::Bucket")))
    group_key = "AmazonManagedKafkaEventSourceConfig" if source.kind == "msk" else "SelfManagedKafkaEventSourceConfig"
    for topic in source.topics:
        synth.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
            "Topics": [topic],
            "BatchSize": source.batch_size,
            "MaximumBatchingWindowInSeconds": source.batching_window_seconds,
            "StartingPosition": source.starting_position,
            group_key: {"ConsumerGroupId": source.group_id_for(topic)},
            # S3 keeps the failed records themselves
            "DestinationConfig": {"OnFailure": {"Destination": arn_of(bucket)}},
        })
    assert len(synth.resources("AWS::Lambda::EventSourceMapping")) == len(source.topics)


def test_provisioned_mode_sets_pollers_and_retries(provisioned: Synth) -> None:
    source = provisioned.config.source
    assert source.provisioned_pollers is not None
    assert source.retry is not None
    provisioned.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "EventSourceArn": source.cluster_arn,
        "StartingPosition": "AT_TIMESTAMP",
        "StartingPositionTimestamp": source.starting_position_timestamp,
        "ProvisionedPollerConfig": {"MinimumPollers": source.provisioned_pollers.minimum,
                                    "MaximumPollers": source.provisioned_pollers.maximum},
        "MaximumRetryAttempts": source.retry.max_attempts,
        "MaximumRecordAgeInSeconds": source.retry.max_record_age_seconds,
        "BisectBatchOnFunctionError": True,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
    })


def test_on_demand_mode_sets_no_retry_controls(dev: Synth) -> None:
    for mapping in dev.resources("AWS::Lambda::EventSourceMapping").values():
        assert not {"ProvisionedPollerConfig", "MaximumRetryAttempts", "FunctionResponseTypes"} & set(
            mapping["Properties"])


def test_self_managed_mapping_authenticates_and_joins_the_vpc(self_managed: Synth) -> None:
    net = SELF_MANAGED_SOURCE["network"]
    self_managed.template.has_resource_properties("AWS::Lambda::EventSourceMapping", {
        "SelfManagedEventSource": {"Endpoints": {"KafkaBootstrapServers": SELF_MANAGED_SOURCE["bootstrap_servers"]}},
        "SourceAccessConfigurations": [
            {"Type": "SASL_SCRAM_512_AUTH", "URI": SELF_MANAGED_SOURCE["secret_arn"]},
            *({"Type": "VPC_SUBNET", "URI": f"subnet:{s}"} for s in net["subnet_ids"]),
            *({"Type": "VPC_SECURITY_GROUP", "URI": f"security_group:{g}"} for g in net["security_group_ids"]),
        ],
    })


def test_console_test_events_have_one_example_per_event_file(dev: Synth) -> None:
    function = next(iter(dev.resources("AWS::Lambda::Function")))
    (schema,) = dev.resources("AWS::EventSchemas::Schema").values()
    props = schema["Properties"]
    assert props["RegistryName"] == REGISTRY_NAME
    assert props["Type"] == "OpenApi3"
    assert props["SchemaName"] == {"Fn::Join": ["", ["_", {"Ref": function}, "-schema"]]}
    content = json.loads(props["Content"])
    assert content["openapi"].startswith("3.")
    # each Kafka event points at the stage's own cluster (infra/console_events.py retarget)
    expected = {name: {"value": {**e, "eventSourceArn": dev.config.source.cluster_arn} if "eventSource" in e else e}
                for name, e in SAMPLE_EVENTS.items()}
    assert content["components"]["examples"] == expected
    assert "Event" in content["components"]["schemas"]
    # the registry usually exists already: created only on request
    assert not dev.resources("AWS::EventSchemas::Registry")


def test_registry_is_created_on_request_and_precedes_the_schema(provisioned: Synth) -> None:
    (registry_id,) = provisioned.resources("AWS::EventSchemas::Registry")
    (schema,) = provisioned.resources("AWS::EventSchemas::Schema").values()
    assert registry_id in schema["DependsOn"]


def test_no_events_means_no_schema(self_managed: Synth) -> None:
    assert not self_managed.resources("AWS::EventSchemas::Schema")


def test_event_loader_skips_the_manifest_and_missing_folder(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"x": 1}', encoding="utf-8")
    (tmp_path / MANIFEST_FILE).write_text('{"a.json": {}}', encoding="utf-8")
    (tmp_path / "notes.txt").write_text("ignored", encoding="utf-8")
    assert load_test_events(tmp_path) == {"a": {"x": 1}}
    assert load_test_events(tmp_path / "absent") == {}


def test_repository_events_become_examples_when_present(dev_document: dict[str, object]) -> None:
    """The events/ folder is written by another engineer; whatever it holds must load as JSON."""
    events = load_test_events(REPO_ROOT / "events")
    assert all(isinstance(name, str) for name in events)
    assert config_from_document(dev_document).config.name == "orders-bridge"


def test_console_test_events_can_be_switched_off(dev_document: dict[str, object], tmp_path: Path) -> None:
    synth = synthesize(config_from_document(dev_document), tmp_path, events=SAMPLE_EVENTS, test_events=False)
    assert not synth.resources("AWS::EventSchemas::Schema")
