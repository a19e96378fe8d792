"""The config model: the example loads, and every invalid field is named with a fix."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from bridge.config import (
    MAX_HEADER_ATTRIBUTES,
    MAX_MESSAGE_ATTRIBUTES,
    RESERVED_ATTRIBUTES,
    SNS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_MAX_MESSAGE_BYTES,
    BridgeConfig,
    ConfigError,
    Destination,
    load_config_file,
)

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "config" / "dev.yaml"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


@pytest.fixture
def doc() -> dict[str, Any]:
    return yaml.safe_load(DEV.read_text())


def problems_of(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        BridgeConfig.from_dict(doc)
    return info.value.problems


def test_example_config_loads_with_names_shared_by_stack_and_handler() -> None:
    # given / when
    cfg = load_config_file(DEV)

    # then
    assert cfg.name == "orders-bridge"
    assert cfg.destination("fulfilment").physical_name(cfg.prefix) == "orders-bridge-dev-fulfilment.fifo"
    assert cfg.destination("fulfilment").dlq_physical_name(cfg.prefix) == "orders-bridge-dev-fulfilment-dlq.fifo"
    assert cfg.destination("analytics").physical_name(cfg.prefix) == "orders-bridge-dev-analytics"
    assert cfg.bridge_dlq_name == "orders-bridge-dev-bridge-dlq"
    assert cfg.source.group_id_for("orders") == "orders-bridge-orders"
    assert cfg.source.cluster_parts["cluster"] == "orders"
    # analytics and billing are only fed by the SNS topic, so the bridge never sends to them
    assert [d.name for d in cfg.routed_destinations()] == [
        "fulfilment", "payments-ledger", "order-events", "fraud-review", "stock-alerts",
    ]


def test_the_attribute_budget_is_the_service_limit() -> None:
    assert MAX_HEADER_ATTRIBUTES + len(RESERVED_ATTRIBUTES) == MAX_MESSAGE_ATTRIBUTES == 10


def test_all_problems_are_reported_at_once(doc: dict[str, Any]) -> None:
    # given two unrelated mistakes
    doc["name"] = "Orders_Bridge"
    doc["source"]["batch_size"] = 20_000

    # when
    problems = problems_of(doc)

    # then both are named, each with a fix
    assert any(p.startswith("name:") and "Fix:" in p for p in problems)
    assert any(p.startswith("source.batch_size:") and "1 to 10000" in p for p in problems)


@pytest.mark.parametrize(
    ("mutate", "field", "hint"),
    [
        (lambda d: d["source"].update(cluster_arn="arn:aws:kafka:us-east-1:1:cluster/x"), "source.cluster_arn",
         "arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid>"),
        (lambda d: d["source"].update(topics=[]), "source.topics", "at least one topic"),
        (lambda d: d["source"].update(starting_position="EARLIEST"), "source.starting_position", "TRIM_HORIZON"),
        (lambda d: d["source"].update(starting_position="AT_TIMESTAMP"), "source.starting_position_timestamp",
         "Unix seconds"),
        (lambda d: d["source"].update(retry={"max_attempts": 2}), "source.retry", "provisioned_pollers"),
        (lambda d: d["source"].update(colour="blue"), "source.colour", "unknown field"),
        (lambda d: d["producers"][0].pop("aws_principal"), "producers[0]", "exactly one identity"),
        (lambda d: d["producers"][0].update(aws_principal="arn:aws:iam::123456789012:role/*"),
         "producers[0].aws_principal", "wildcards are not allowed"),
        (lambda d: d["producers"][1]["oidc"].update(subject="*"), "producers[1].oidc.subject", "exact subject"),
        (lambda d: d["producers"][0].update(topics=["audit"]), "producers[order-service].topics",
         "not in source.topics"),
        (lambda d: d["destinations"][0].update(type="sqs-fifo"), "destinations[0].type", "one of sqs, sns"),
        (lambda d: d["destinations"][3].update(group_id="key"), "destinations[3].group_id", "fifo: true"),
        (lambda d: d["destinations"][0].update(group_id="hash"), "destinations[0].group_id", "header:<name>"),
        (lambda d: d["destinations"][0].update(header_attributes=[f"h{i}" for i in range(7)]),
         "destinations[0].header_attributes", f"at most {MAX_HEADER_ATTRIBUTES}"),
        (lambda d: d["destinations"][0].update(header_attributes=["correlation-id"]),
         "destinations[0].header_attributes", "reserved"),
        (lambda d: d["destinations"][3].update(max_message_bytes=SQS_MAX_MESSAGE_BYTES + 1),
         "destinations[3].max_message_bytes", "1024 to 1048576"),
        (lambda d: d["destinations"][3].update(max_message_bytes=2048), "destinations[order-events].subscriptions",
         "'analytics' takes at most 2048 bytes"),
        (lambda d: d["destinations"][0].update(kms_key_arn=KEY_ARN), "destinations[0].kms_key_arn",
         "existing destinations (arn) only"),
        (lambda d: d["destinations"][3].update(arn="arn:aws:sqs:us-east-1:123456789012:theirs",
                                               kms_key_arn="arn:aws:kms:us-east-1:123456789012:alias/theirs"),
         "destinations[3].kms_key_arn", "not an alias"),
        (lambda d: d["source"].update(kms_key_arn=KEY_ARN), "source.kms_key_arn", "self-managed only"),
        (lambda d: d["source"].update(network={"subnet_ids": ["subnet-0a1"], "security_group_ids": ["sg-0a1"]}),
         "source.network", "MSK mappings use the cluster's own subnets"),
        (lambda d: d["producers"][2].update(direct_send_to=["payments-ledger"]),
         "producers[inventory-service].direct_send_to",
         "'payments-ledger' accepts signed records only (accept_from). Fix: remove it"),
        (lambda d: d["destinations"][0].update(arn="arn:aws:sqs:us-east-1:123456789012:existing"),
         "destinations[0].fifo", "ends in .fifo"),
        (lambda d: d["destinations"][1].update(accept_from=["inventory-service"]),
         "destinations[payments-ledger].accept_from", "signing: true"),
        (lambda d: d["destinations"][1].update(accept_from=["nobody"]), "destinations[payments-ledger].accept_from",
         "unknown producer"),
        (lambda d: d["destinations"][2]["subscriptions"].append({"queue": "fulfilment"}),
         "destinations[order-events].subscriptions", "standard queue"),
        (lambda d: d["routes"][0].update(to=["nowhere"]), "routes[order-lifecycle].to", "unknown destination"),
        (lambda d: d["routes"][0]["match"].update(topic="order"), "routes[order-lifecycle].match.topic",
         "not consumed"),
        (lambda d: d["routes"][1]["match"]["body"].update(total={"numeric": ["~", 5]}),
         "routes[1].match.body.total", "numeric"),
        (lambda d: d["routes"][1]["match"]["body"].update(total={"regex": ".*"}),
         "routes[1].match.body.total", "not a valid condition"),
        (lambda d: d.update(unmatched={"action": "route"}), "unmatched.to", "required with action: route"),
        (lambda d: d["settings"].update(signature_header="correlation-id"), "settings", "must differ"),
    ],
)
def test_invalid_field_is_named_with_a_fix(doc: dict[str, Any], mutate: Any, field: str, hint: str) -> None:
    # given
    bad = copy.deepcopy(doc)
    mutate(bad)

    # when
    problems = problems_of(bad)

    # then
    assert any(p.startswith(f"{field}:") and hint in p for p in problems), problems


def test_self_managed_source_needs_servers_auth_secret_and_network(doc: dict[str, Any]) -> None:
    doc["source"] = {"kind": "self-managed", "topics": ["orders", "payments", "inventory"],
                     "consumer_group_id": "g"}
    fields = {p.split(":")[0] for p in problems_of(doc)}
    assert {"source.bootstrap_servers", "source.auth", "source.secret_arn", "source.network"} <= fields


def test_self_managed_source_validates_when_complete(doc: dict[str, Any]) -> None:
    doc["source"] = {
        "kind": "self-managed", "topics": ["orders", "payments", "inventory"], "consumer_group_id": "g",
        "bootstrap_servers": ["b-1.kafka.internal:9096"], "auth": "sasl_scram_512",
        "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-creds-AbCdEf",
        "network": {"vpc_id": "vpc-0abc", "subnet_ids": ["subnet-0abc"], "security_group_ids": ["sg-0abc"]},
    }
    cfg = BridgeConfig.from_dict(doc)
    assert cfg.source.kind == "self-managed"
    assert cfg.source.network.subnet_ids == ("subnet-0abc",)


def test_missing_file_and_bad_yaml_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config_file(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(bad)


def test_conditions_parse_into_their_kinds(doc: dict[str, Any]) -> None:
    doc["routes"][0]["match"] = {
        "topic": ["orders"],
        "key": {"prefix": "EU-"},
        "headers": {"tenant": {"exists": True}, "event-type": "OrderPlaced"},
        "body": {"total": {"numeric": [">", 0, "<=", 5]}},
    }
    match = BridgeConfig.from_dict(doc).routes[0].match
    assert match.topic is not None
    assert match.topic.kind == "any_of"
    assert match.key is not None
    assert (match.key.kind, match.key.value) == ("prefix", "EU-")
    assert dict(match.headers)["tenant"].kind == "exists"
    assert dict(match.headers)["event-type"].value == "OrderPlaced"
    assert dict(match.body)["total"].comparisons == ((">", 0.0), ("<=", 5.0))


@pytest.mark.parametrize("name", [".x", "x.", "a..b", "a b", "a/b", "x" * 257])
def test_header_attribute_names_sqs_rejects_are_invalid(doc: dict[str, Any], name: str) -> None:
    # given a header attribute name SQS would refuse as a message attribute name
    doc["destinations"][0]["header_attributes"] = [name]

    # when / then
    assert any(p.startswith("destinations[0].header_attributes[0]:") and "never two in a row" in p
               for p in problems_of(doc))


@pytest.mark.parametrize("name", ["a.b", "x_y-z.v2", "A", "a" * 256])
def test_header_attribute_names_sqs_accepts_are_valid(doc: dict[str, Any], name: str) -> None:
    doc["destinations"][0]["header_attributes"] = [name]
    assert BridgeConfig.from_dict(doc).destination("fulfilment").header_attributes == (name,)


def test_message_limit_is_the_destinations_own_and_applies_to_sqs(doc: dict[str, Any]) -> None:
    # given an existing queue with the old 256 KiB limit, a created queue limited to 512 KiB, defaults elsewhere
    doc["destinations"] += [{"name": "legacy", "type": "sqs", "arn": "arn:aws:sqs:us-east-1:123456789012:legacy",
                             "max_message_bytes": 262_144},
                            {"name": "legacy-default", "type": "sqs",
                             "arn": "arn:aws:sqs:us-east-1:123456789012:legacy-default"}]
    doc["destinations"][6]["max_message_bytes"] = 524_288  # stock-alerts

    # when
    cfg = BridgeConfig.from_dict(doc)

    # then the bridge packs to each destination's real limit
    assert cfg.destination("legacy").message_limit == 262_144
    assert cfg.destination("legacy-default").message_limit == 262_144  # assumed until stated
    assert cfg.destination("stock-alerts").message_limit == 524_288
    assert cfg.destination("fraud-review").message_limit == SQS_MAX_MESSAGE_BYTES
    assert cfg.destination("order-events").message_limit == SNS_DEFAULT_MAX_MESSAGE_BYTES


def test_kms_key_arns_of_existing_destinations_and_self_managed_secret(doc: dict[str, Any]) -> None:
    doc["destinations"].append({"name": "legacy", "type": "sns", "arn": "arn:aws:sns:us-east-1:123456789012:legacy",
                                "kms_key_arn": KEY_ARN})
    doc["source"] = {
        "kind": "self-managed", "topics": ["orders", "payments", "inventory"], "consumer_group_id": "g",
        "bootstrap_servers": ["b-1.kafka.internal:9096"], "auth": "sasl_scram_512",
        "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-creds-AbCdEf",
        "kms_key_arn": KEY_ARN, "network": {"vpc_id": "vpc-0abc"},
    }
    cfg = BridgeConfig.from_dict(doc)
    assert cfg.destination("legacy").kms_key_arn == KEY_ARN
    assert cfg.source.kms_key_arn == KEY_ARN
    assert cfg.destination("fulfilment").kms_key_arn is None


@pytest.mark.parametrize("network", [{"subnet_ids": ["subnet-0abc"]}, {"security_group_ids": ["sg-0abc"]}])
def test_half_configured_vpc_is_a_config_problem(doc: dict[str, Any], network: dict[str, Any]) -> None:
    # given self-managed Kafka with subnets but no security groups (or the reverse)
    doc["source"] = {
        "kind": "self-managed", "topics": ["orders", "payments", "inventory"], "consumer_group_id": "g",
        "bootstrap_servers": ["b-1.kafka.internal:9096"], "auth": "sasl_scram_512",
        "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-creds-AbCdEf", "network": network,
    }

    # when the handler validates it (same function as the CDK app), then it is in the one list of problems
    assert "source.network: subnet_ids and security_group_ids go together. Fix: list both so the event-source " \
           "mapping can reach the brokers, or neither for brokers reachable without a VPC" in problems_of(doc)


def test_subscription_dlq_name_is_one_function_for_the_model_and_validation(doc: dict[str, Any]) -> None:
    from bridge.config import subscription_dlq_name  # noqa: PLC0415 - the one name both use

    cfg = BridgeConfig.from_dict(doc)
    topic = cfg.destination("order-events")
    assert subscription_dlq_name(cfg.prefix, topic, "billing") == cfg.subscription_dlq_name(topic, "billing") == \
        "orders-bridge-dev-order-events-to-billing-dlq"
    # validation measures the same name: 40 + 4 + 1 + 25 + 4 + 9 + 4 characters is over the 80 SQS allows
    doc["name"] = "b" * 40
    doc["destinations"][2]["name"] = "e" * 25
    doc["routes"][0]["to"] = ["fulfilment", "e" * 25]
    too_long = subscription_dlq_name("b" * 40 + "-dev", Destination("e" * 25, "sns"), "analytics")
    assert any(p.startswith(f"destinations[{'e' * 25}].subscriptions:") and repr(too_long) in p
               for p in problems_of(doc))


def test_the_signature_header_cannot_become_a_message_attribute(doc: dict[str, Any]) -> None:
    doc["destinations"][0]["header_attributes"] = ["X-Bridge-Signature"]
    assert any(p.startswith("destinations[fulfilment].header_attributes:") and "never leaves the bridge" in p
               for p in problems_of(doc))


def test_an_existing_queue_is_assumed_to_take_256_kib_until_it_says_otherwise(doc: dict[str, Any]) -> None:
    doc["destinations"][3]["arn"] = "arn:aws:sqs:us-east-1:123456789012:legacy-analytics"
    doc["destinations"][2].pop("subscriptions")  # a topic cannot subscribe an existing queue
    cfg = BridgeConfig.from_dict(doc)
    assert cfg.destination("analytics").message_limit == 262_144
    assert cfg.destination("billing").message_limit == 1_048_576


@pytest.mark.parametrize(("environment", "production"), [(None, False), ("dev", False), ("staging", False),
                                                         ("prod", True), ("production", True)])
def test_production_defaults_from_the_environment_name(doc: dict[str, Any], environment: str | None,
                                                       production: bool) -> None:
    # given
    if environment is not None:
        doc["environment"] = environment
    # when
    config = BridgeConfig.from_dict(doc)
    # then
    assert config.environment == (environment or "dev")
    assert config.production is production


def test_production_flag_overrides_the_name_default(doc: dict[str, Any]) -> None:
    doc.update(environment="qa", production=True)
    assert BridgeConfig.from_dict(doc).production is True


@pytest.mark.parametrize("bad", ["Prod", "1dev", "dev-eu", "", "a" * 17])
def test_invalid_environment_is_named_with_a_fix(doc: dict[str, Any], bad: str) -> None:
    doc["environment"] = bad
    assert any(p.startswith("environment:") and "Fix:" in p for p in problems_of(doc))


@pytest.mark.parametrize("bad", ["two", "2", 2.5, 2.0, True])
def test_an_integer_setting_of_another_type_says_so_not_out_of_range(doc: dict[str, Any], bad: Any) -> None:
    doc["settings"]["checkpoint_in_flight"] = bad
    doc["producers"][0]["max_age_seconds"] = bad
    problems = problems_of(doc)
    assert f"settings.checkpoint_in_flight: must be a whole number, got {bad!r}. Fix: a whole number from 1 " \
           "to 64" in problems, problems
    assert any(p.endswith(f".max_age_seconds: must be a whole number, got {bad!r}. Fix: a whole number from 1 "
                          "to 31536000, or leave it out") for p in problems), problems


def test_an_integer_setting_out_of_its_range_says_out_of_range(doc: dict[str, Any]) -> None:
    doc["settings"]["checkpoint_in_flight"] = 65
    assert problems_of(doc) == ["settings.checkpoint_in_flight: 65 is out of range. Fix: a whole number from 1 to 64"]


def test_alarms_default_to_a_stack_topic_and_documented_thresholds(doc: dict[str, Any]) -> None:
    doc.pop("alarms", None)
    alarms = BridgeConfig.from_dict(doc).alarms
    assert (alarms.enabled, alarms.topic_arn, alarms.email) == (True, None, ())
    assert (alarms.offset_lag, alarms.bridge_dlq_max_age_seconds, alarms.duration_percent_of_timeout) == (
        10_000, 3_600, 80)


@pytest.mark.parametrize(("alarms", "field"), [
    ({"topic_arn": "arn:aws:sns:us-east-1:123456789012:oncall", "email": ["a@example.com"]}, "alarms.email"),
    ({"topic_arn": "arn:aws:sqs:us-east-1:123456789012:oncall"}, "alarms.topic_arn"),
    ({"email": ["not-an-address"]}, "alarms.email[0]"),
    ({"offset_lag": 0}, "alarms.offset_lag"),
    ({"duration_percent_of_timeout": 120}, "alarms.duration_percent_of_timeout"),
    ({"offset_lagg": 5}, "alarms.offset_lagg"),
])
def test_invalid_alarm_settings_name_the_field(doc: dict[str, Any], alarms: dict[str, Any], field: str) -> None:
    doc["alarms"] = alarms
    problems = problems_of(doc)
    assert len(problems) == 1
    assert problems[0].startswith(f"{field}:"), problems
    assert "Fix:" in problems[0]
