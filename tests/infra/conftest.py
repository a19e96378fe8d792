"""Synthesize the CDK app once per configuration variant per session; tests read the results."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

# Before aws_cdk is imported: keep synth offline and quiet.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("CDK_DISABLE_VERSION_CHECK", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import aws_cdk as cdk
from aws_cdk.assertions import Template
from bridge.config import BridgeConfig

from infra.config_document import ConfigDocument, config_from_document, load_config_document
from infra.limits import check_assembly
from infra.nag import add_nag_checks
from infra.stack import REPO_ROOT, BridgeStack, StackOptions, stack_name

DEV_CONFIG = REPO_ROOT / "config" / "dev.yaml"
PROD_CONFIG = REPO_ROOT / "config" / "prod.yaml"
REPO_EVENTS = REPO_ROOT / "events"
SAMPLE_EVENTS = {
    "route-orders": {"eventSource": "aws:kafka", "records": {"orders-0": [{"topic": "orders", "partition": 0,
                                                                          "offset": 1, "value": "e30="}]}},
    "not-kafka": {"hello": "world"},
}


@dataclass
class Synth:
    """One synthesized variant: the config, the template (dict and assertions API) and the nag report."""

    config: BridgeConfig
    data: dict[str, Any]
    template: Template
    template_path: Path
    nag_report: dict[str, Any]
    package_dir: Path

    def resources(self, cfn_type: str) -> dict[str, dict[str, Any]]:
        return {k: r for k, r in self.data["Resources"].items() if r["Type"] == cfn_type}

    def logical_id(self, cfn_type: str, **props: Any) -> str:
        """The one resource of `cfn_type` whose properties include `props`."""
        found = [k for k, r in self.resources(cfn_type).items()
                 if all(r.get("Properties", {}).get(p) == v for p, v in props.items())]
        assert len(found) == 1, f"{cfn_type} with {props}: {found}"
        return found[0]


# One synth per variant per test session, shared by every tier that imports these fixtures
# (tests/security re-exports them): a fixture imported into another conftest is a second fixture
# definition with its own cache, so the variants are memoized here.
_SYNTHS: dict[str, Synth] = {}


def shared_synth(name: str, build: Callable[[], Synth]) -> Synth:
    """The session's synth of variant `name`, built once."""
    if name not in _SYNTHS:
        _SYNTHS[name] = build()
    return _SYNTHS[name]


def synthesize(loaded: ConfigDocument, tmp: Path, events: Mapping[str, Any] | None = None,
               manifest: Mapping[str, Any] | None = None, **options: Any) -> Synth:
    """Synthesize with cdk-nag AwsSolutions on: an unacknowledged finding raises here."""
    events_dir = tmp / "events"
    events_dir.mkdir(parents=True, exist_ok=True)
    for name, event in (events or {}).items():
        (events_dir / f"{name}.json").write_text(json.dumps(event), encoding="utf-8")
    if manifest is not None:
        (events_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    outdir = tmp / "cdk.out"
    app = cdk.App(outdir=str(outdir))
    stack = BridgeStack(app, stack_name(loaded.config.name, loaded.config.environment), loaded=loaded,
                        options=StackOptions(staging_dir=tmp / "package", events_dir=events_dir, **options))
    add_nag_checks(app)
    check_assembly(app, app.synth())  # every variant within botocore's documented limits
    template_path = outdir / f"{stack.stack_name}.template.json"
    data = json.loads(template_path.read_text(encoding="utf-8"))
    report = json.loads((outdir / "validation-report.json").read_text(encoding="utf-8"))
    return Synth(loaded.config, data, Template.from_json(data), template_path, report,
                 tmp / "package" / loaded.config.prefix)


@pytest.fixture(scope="session")
def dev_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DEV_CONFIG.read_text(encoding="utf-8"))
    return document


@pytest.fixture(scope="session")
def variant_document(dev_document: dict[str, Any]) -> Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]]:
    """Build a variant of config/dev.yaml by editing a deep copy."""

    def build(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        doc = copy.deepcopy(dev_document)
        edit(doc)
        return doc

    return build


@pytest.fixture(scope="session")
def dev(dev_document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Synth:
    return shared_synth("dev", lambda: synthesize(config_from_document(dev_document, str(DEV_CONFIG)),
                                                  tmp_path_factory.mktemp("dev"), events=SAMPLE_EVENTS))


def _repo_events() -> tuple[dict[str, Any], dict[str, Any]]:
    events = {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(REPO_EVENTS.glob("*.json"))
              if p.name != "manifest.json"}
    return events, json.loads((REPO_EVENTS / "manifest.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def dev_with_repo_events(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """config/dev.yaml with the repository's events/ (what `cdk deploy -c env=dev` ships)."""
    events, manifest = _repo_events()
    return synthesize(load_config_document(DEV_CONFIG), tmp_path_factory.mktemp("dev-repo-events"),
                      events=events, manifest=manifest)


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """config/prod.yaml with the repository's events/ (what `cdk deploy -c env=prod` ships)."""
    events, manifest = _repo_events()
    loaded = load_config_document(PROD_CONFIG)
    return synthesize(loaded, tmp_path_factory.mktemp("prod"), events=events, manifest=manifest,
                      reserved_concurrency=loaded.config.deployment.reserved_concurrency)


EXISTING_QUEUE_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1111aaaa-22bb-33cc-44dd-555555eeeeee"
KAFKA_SECRET_KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/6666ffff-77aa-88bb-99cc-000000dddddd"
GLUE_REGISTRY_ARN = "arn:aws:glue:us-east-1:123456789012:registry/orders"
EXISTING_ALARM_TOPIC_ARN = "arn:aws:sns:us-east-1:123456789012:platform-oncall"
ALARM_EMAIL = "kafka-oncall@example.com"
OPERATOR_ROLE_ARN = "arn:aws:iam::123456789012:role/bridge-operators"


def _provisioned_edit(doc: dict[str, Any]) -> None:
    doc.setdefault("settings", {})["checkpoints"] = "on"
    doc["settings"].update(tracing="on", snapstart="on", direct_sends="off", operator_role_arns=[OPERATOR_ROLE_ARN])
    doc["source"].update(
        starting_position="AT_TIMESTAMP", starting_position_timestamp=1767225600,
        provisioned_pollers={"minimum": 2, "maximum": 10},
        retry={"max_attempts": 5, "max_record_age_seconds": 3600, "bisect_on_error": True},
        schema_registry={"kind": "glue", "uri": GLUE_REGISTRY_ARN},
    )
    doc["destinations"] += [
        {"name": "legacy-orders", "type": "sqs", "arn": "arn:aws:sqs:us-east-1:123456789012:legacy-orders",
         "max_message_bytes": 262_144, "kms_key_arn": EXISTING_QUEUE_KEY_ARN},
        {"name": "order-stream", "type": "sns", "fifo": True, "max_message_bytes": 1_048_576,
         "subscriptions": [{"queue": "fulfilment"}], "oversize": "claim-check"},
    ]
    doc["routes"].append({"name": "legacy", "match": {"topic": "orders"}, "to": ["legacy-orders", "order-stream"]})
    # a created queue with a lower limit than the 1 MiB every other queue states
    next(d for d in doc["destinations"] if d["name"] == "fraud-review")["max_message_bytes"] = 524_288
    producers = {p["name"]: p for p in doc["producers"]}
    producers["inventory-service"]["direct_send_to"] = ["stock-alerts"]
    producers["payment-service"]["oidc"]["provider_arn"] = (
        "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com")
    # alarms notify an existing on-call topic, with a tighter lag bound
    doc["alarms"] = {"topic_arn": EXISTING_ALARM_TOPIC_ARN, "offset_lag": 500, "duration_percent_of_timeout": 90}


@pytest.fixture(scope="session")
def provisioned(variant_document: Any, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Provisioned pollers + retries, an existing queue by ARN, a FIFO topic, a direct-send producer, checkpoints
    (with an operators' role, so the redrive ledger grant), the X-Ray Tracer and SnapStart."""
    return shared_synth("provisioned", lambda: synthesize(
        config_from_document(variant_document(_provisioned_edit), "provisioned"),
        tmp_path_factory.mktemp("provisioned"), events=SAMPLE_EVENTS, create_test_event_registry=True))


SELF_MANAGED_SOURCE: dict[str, Any] = {
    "kind": "self-managed", "topics": ["orders", "payments", "inventory"], "consumer_group_id": "orders-bridge",
    "bootstrap_servers": ["b-1.kafka.internal:9096", "b-2.kafka.internal:9096"], "auth": "sasl_scram_512",
    "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-bridge-credentials-AbCdEf",
    "kms_key_arn": KAFKA_SECRET_KEY_ARN,
    "network": {"vpc_id": "vpc-0abc", "subnet_ids": ["subnet-0a1", "subnet-0b2"],
                "security_group_ids": ["sg-0a1", "sg-0b2"]},
}


@pytest.fixture(scope="session")
def self_managed(variant_document: Any, tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Self-managed Kafka with SASL/SCRAM in a VPC; no events, so no console test events; alarms e-mail an
    address, with notifications switched off."""
    doc = variant_document(lambda d: d.update(source=copy.deepcopy(SELF_MANAGED_SOURCE),
                                              alarms={"email": [ALARM_EMAIL], "enabled": False}))
    return shared_synth("self_managed", lambda: synthesize(config_from_document(doc, "self-managed"),
                                                           tmp_path_factory.mktemp("self-managed")))


@pytest.fixture(params=["dev", "provisioned", "self_managed"])
def every_variant(request: pytest.FixtureRequest) -> Synth:
    synth: Synth = request.getfixturevalue(request.param)
    return synth
