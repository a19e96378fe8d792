"""Every regex-validated config field takes the whole value or nothing (review s9 2.2).

`pattern.match` against `^...$` let a trailing newline through (`$` matches before it: a YAML `|` block gives
exactly that), and `\\d`/`\\w` matched any Unicode digit or letter, which AWS's own patterns (botocore's
models, Java regexes with ASCII classes) refuse: validation passed values the deploy then failed on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from bridge.config import BridgeConfig, ConfigError

ROOT = Path(__file__).resolve().parents[2]
DEV = ROOT / "config" / "dev.yaml"
ACCOUNT = "123456789012"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
SECRET_ARN = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:kafka-creds-AbCdEf"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/ops"

Setter = Callable[[dict[str, Any], str], None]


def _self_managed(doc: dict[str, Any], **fields: Any) -> None:
    doc["source"] = {
        "kind": "self-managed", "topics": ["orders", "payments", "inventory"], "consumer_group_id": "g",
        "bootstrap_servers": ["b-1.kafka.internal:9096"], "auth": "sasl_scram_512", "secret_arn": SECRET_ARN,
        "network": {"vpc_id": "vpc-0abc", "subnet_ids": ["subnet-0abc"], "security_group_ids": ["sg-0abc"]},
        **fields,
    }


def _network(doc: dict[str, Any], key: str, value: Any) -> None:
    _self_managed(doc)
    doc["source"]["network"][key] = value


def _registry(doc: dict[str, Any], **fields: Any) -> None:
    doc["source"]["provisioned_pollers"] = {"minimum": 1, "maximum": 2}
    doc["source"]["schema_registry"] = fields


def _confluent(doc: dict[str, Any], **fields: Any) -> None:
    _registry(doc, **{"kind": "confluent", "uri": "https://registry.example.com", "secret_arn": SECRET_ARN,
                      **fields})


def _producer(doc: dict[str, Any], **fields: Any) -> None:
    doc["producers"][0].update(fields)


def _oidc(doc: dict[str, Any], **fields: Any) -> None:
    doc["producers"][1]["oidc"].update(fields)


def _rename_destination(doc: dict[str, Any], v: str) -> None:
    # analytics is only fed by order-events' subscription; keep that reference in step with the name
    doc["destinations"][3]["name"] = v
    doc["destinations"][2]["subscriptions"][0]["queue"] = v.strip()


# (field as the problem names it, a valid value, how to put a value there)
CASES: list[tuple[str, str, Setter]] = [
    ("name", "orders-bridge", lambda d, v: d.update(name=v)),
    ("environment", "dev", lambda d, v: d.update(environment=v)),
    ("source.topics[0]", "orders", lambda d, v: d["source"].update(topics=[v, "payments", "inventory"])),
    ("source.consumer_group_id", "orders-bridge", lambda d, v: d["source"].update(consumer_group_id=v)),
    ("source.cluster_arn", f"arn:aws:kafka:us-east-1:{ACCOUNT}:cluster/orders/0b1c2d3e-4f50",
     lambda d, v: d["source"].update(cluster_arn=v)),
    ("source.bootstrap_servers[0]", "b-1.kafka.internal:9096", lambda d, v: _self_managed(d, bootstrap_servers=[v])),
    ("source.secret_arn", SECRET_ARN, lambda d, v: _self_managed(d, secret_arn=v)),
    ("source.kms_key_arn", KEY_ARN, lambda d, v: _self_managed(d, kms_key_arn=v)),
    ("source.network.vpc_id", "vpc-0abc", lambda d, v: _network(d, "vpc_id", v)),
    ("source.network.subnet_ids[0]", "subnet-0abc", lambda d, v: _network(d, "subnet_ids", [v])),
    ("source.network.security_group_ids[0]", "sg-0abc", lambda d, v: _network(d, "security_group_ids", [v])),
    ("source.schema_registry.uri", f"arn:aws:glue:us-east-1:{ACCOUNT}:registry/orders",
     lambda d, v: _registry(d, kind="glue", uri=v)),
    ("source.schema_registry.uri", "https://registry.example.com:8081/api", lambda d, v: _confluent(d, uri=v)),
    ("source.schema_registry.secret_arn", SECRET_ARN, lambda d, v: _confluent(d, secret_arn=v)),
    ("source.schema_registry.attributes[0]", "value", lambda d, v: _confluent(d, attributes=[v])),
    ("source.schema_registry.local_schemas.", "1", lambda d, v: _confluent(d, local_schemas={v: "order.avsc"})),
    ("producers[0].name", "order-service", lambda d, v: _producer(d, name=v)),
    ("producers[0].topics[0]", "orders", lambda d, v: _producer(d, topics=[v])),
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/order-service",
     lambda d, v: _producer(d, aws_principal=v)),
    ("producers[0].external_id", "ext-id:42/a", lambda d, v: _producer(d, external_id=v)),
    ("producers[0].org_id", "o-abcdef1234", lambda d, v: _producer(d, org_id=v)),
    ("producers[0].direct_send_to[0]", "fulfilment", lambda d, v: _producer(d, direct_send_to=[v])),
    ("producers[1].oidc.issuer", "https://token.actions.githubusercontent.com", lambda d, v: _oidc(d, issuer=v)),
    ("producers[1].oidc.provider_arn", f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
     lambda d, v: _oidc(d, provider_arn=v)),
    ("destinations[3].name", "analytics", _rename_destination),
    ("destinations[7].arn", f"arn:aws:sqs:us-east-1:{ACCOUNT}:theirs",
     lambda d, v: d["destinations"].append({"name": "legacy", "type": "sqs", "arn": v})),
    ("destinations[0].header_attributes[0]", "event-type",
     lambda d, v: d["destinations"][0].update(header_attributes=[v])),
    ("destinations[1].accept_from[0]", "payment-service", lambda d, v: d["destinations"][1].update(accept_from=[v])),
    ("destinations[2].subscriptions[0].queue", "analytics",
     lambda d, v: d["destinations"][2]["subscriptions"][0].update(queue=v)),
    ("destinations[7].kms_key_arn", KEY_ARN, lambda d, v: d["destinations"].append(
        {"name": "legacy", "type": "sqs", "arn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:theirs", "kms_key_arn": v})),
    ("destinations[3].consumers[0]", ROLE_ARN, lambda d, v: d["destinations"][3].update(consumers=[v])),
    ("routes[0].name", "order-lifecycle", lambda d, v: d["routes"][0].update(name=v)),
    ("routes[0].to[0]", "fulfilment", lambda d, v: d["routes"][0].update(to=[v, "order-events"])),
    ("unmatched.to[0]", "fraud-review", lambda d, v: d.update(unmatched={"action": "route", "to": [v]})),
    ("settings.correlation_header", "correlation-id", lambda d, v: d["settings"].update(correlation_header=v)),
    ("settings.producer_header", "bridge-producer", lambda d, v: d["settings"].update(producer_header=v)),
    ("settings.signature_header", "bridge-signature", lambda d, v: d["settings"].update(signature_header=v)),
    ("settings.message_id_header", "bridge-message-id", lambda d, v: d["settings"].update(message_id_header=v)),
    ("settings.operator_role_arns[0]", ROLE_ARN, lambda d, v: d["settings"].update(operator_role_arns=[v])),
    ("alarms.email[0]", "kafka-oncall@example.com", lambda d, v: d["alarms"].update(email=[v])),
    ("alarms.topic_arn", f"arn:aws:sns:us-east-1:{ACCOUNT}:alarms",
     lambda d, v: d.update(alarms={"topic_arn": v})),
]
IDS = [f"{path}={value}" for path, value, _ in CASES]


def _doc(setter: Setter, value: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEV.read_text())
    setter(doc, value)
    return doc


def _problems(doc: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        BridgeConfig.from_dict(doc)
    return info.value.problems


@pytest.mark.parametrize(("path", "value", "setter"), CASES, ids=IDS)
def test_a_valid_value_passes(path: str, value: str, setter: Setter) -> None:
    BridgeConfig.from_dict(_doc(setter, value))


@pytest.mark.parametrize(("path", "value", "setter"), CASES, ids=IDS)
def test_a_trailing_newline_is_refused_naming_the_field_and_the_fix(path: str, value: str, setter: Setter) -> None:
    # given the value as a YAML `|` block scalar gives it
    problems = _problems(_doc(setter, value + "\n"))

    # then the field is named, with a fix
    named = [p for p in problems if p.startswith(path)]
    assert named, problems
    assert all("Fix:" in p for p in named), named


def test_a_trailing_newline_says_it_is_whitespace() -> None:
    problems = _problems(_doc(lambda d, v: d["settings"].update(operator_role_arns=[v]), ROLE_ARN + "\n"))
    assert problems == [
        f"settings.operator_role_arns[0]: {ROLE_ARN + chr(10)!r} has whitespace around it (a YAML `|` or `>` block "
        "keeps the final newline). Fix: remove it, or write the block as `|-`"
    ]


def test_a_yaml_block_scalar_role_is_refused() -> None:
    # given the config file as written, with `|` where `|-` was meant
    text = DEV.read_text().replace("settings:\n", f"settings:\n  operator_role_arns:\n    - |\n      {ROLE_ARN}\n", 1)
    assert yaml.safe_load(text)["settings"]["operator_role_arns"] == [ROLE_ARN + "\n"]

    # then
    assert [p.split(":")[0] for p in _problems(yaml.safe_load(text))] == ["settings.operator_role_arns[0]"]


ARABIC_INDIC_ACCOUNT = "".join(chr(0x0660 + int(c)) for c in ACCOUNT)  # str.isdigit() and \d accept these


@pytest.mark.parametrize(("path", "value", "setter"), [
    ("settings.operator_role_arns[0]", f"arn:aws:iam::{ACCOUNT}:role/opérateurs",
     lambda d, v: d["settings"].update(operator_role_arns=[v])),
    ("destinations[3].consumers[0]", f"arn:aws:iam::{ACCOUNT}:role/opérateurs",
     lambda d, v: d["destinations"][3].update(consumers=[v])),
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/opérateurs",
     lambda d, v: _producer(d, aws_principal=v)),
    ("producers[0].external_id", "clé-partagée", lambda d, v: _producer(d, external_id=v)),
    ("settings.operator_role_arns[0]", f"arn:aws:iam::{ARABIC_INDIC_ACCOUNT}:role/ops",
     lambda d, v: d["settings"].update(operator_role_arns=[v])),
    ("source.kms_key_arn", KEY_ARN.replace(ACCOUNT, ARABIC_INDIC_ACCOUNT),
     lambda d, v: _self_managed(d, kms_key_arn=v)),
    ("source.cluster_arn", f"arn:aws:kafka:us-east-1:{ARABIC_INDIC_ACCOUNT}:cluster/orders/0b1c2d3e-4f50",
     lambda d, v: d["source"].update(cluster_arn=v)),
    ("source.bootstrap_servers[0]", "b-1.kafka.internal:٩٠٩٦", lambda d, v: _self_managed(d, bootstrap_servers=[v])),
], ids=["operator-role", "consumer-role", "producer-role", "external-id", "role-account", "kms-account",
        "msk-account", "port"])
def test_a_non_ascii_name_or_digit_aws_cannot_take_is_refused(path: str, value: str, setter: Setter) -> None:
    # botocore: iam roleNameType [\w+=,.@-]+, sts externalIdType [\w+=,.@:\/-]*, lambda Principal [^\s]+ (Java
    # classes: ASCII); an account id is 12 ASCII digits
    problems = _problems(_doc(setter, value))
    assert [p for p in problems if p.startswith(path)], problems


def _aws_principal(doc: dict[str, Any], v: str) -> None:
    _producer(doc, aws_principal=v)


def _imported_queue(doc: dict[str, Any], v: str) -> None:
    doc["destinations"].append({"name": "legacy", "type": "sqs", "arn": v})


@pytest.mark.parametrize(("path", "value", "setter"), [
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/order-service ", _aws_principal),
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/order-service\t", _aws_principal),
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/order-service\r", _aws_principal),
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/order service", _aws_principal),
    ("producers[0].aws_principal", f"arn:aws:iam::{ACCOUNT}:role/order-service\u00a0", _aws_principal),
    ("destinations[7].arn", f"arn:aws:sqs:us-east-1:{ACCOUNT}:theirs ", _imported_queue),
    ("destinations[7].arn", f"arn:aws:sqs:us-east-1:{ACCOUNT}:the irs", _imported_queue),
], ids=["principal-space", "principal-tab", "principal-cr", "principal-space-inside", "principal-nbsp",
        "queue-space", "queue-space-inside"])
def test_whitespace_other_than_a_newline_in_an_arn_is_refused(path: str, value: str, setter: Setter) -> None:
    # `(?P<resource>.+)` took everything but a newline: Lambda's and IAM's principals ([^\s]+) and SQS queue names
    # ([A-Za-z0-9_-]) take no whitespace, so the deploy failed on these
    problems = _problems(_doc(setter, value))
    named = [p for p in problems if p.startswith(path)]
    assert named, problems
    assert all("Fix:" in p for p in named), named


def _imported_topic(doc: dict[str, Any], v: str) -> None:
    doc["destinations"].append({"name": "legacy", "type": "sns", "arn": v, "fifo": v.endswith(".fifo")})


@pytest.mark.parametrize(("value", "setter"), [
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:*", _imported_queue),  # every queue of the account
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders*", _imported_queue),  # every queue named orders...
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders-?", _imported_queue),
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders\u200b", _imported_queue),
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders/dlq", _imported_queue),
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:{'q' * 81}", _imported_queue),  # 80 at most
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:{'q' * 76}.fifo", _imported_queue),  # .fifo counts towards the 80
    (f"arn:aws:sns:us-east-1:{ACCOUNT}:*", _imported_topic),
    (f"arn:aws:sns:us-east-1:{ACCOUNT}:orders*", _imported_topic),
    (f"arn:aws:sns:us-east-1:{ACCOUNT}:{'t' * 257}", _imported_topic),
], ids=["sqs-star", "sqs-prefix", "sqs-question-mark", "sqs-zero-width", "sqs-slash", "sqs-81", "sqs-fifo-81",
        "sns-star", "sns-prefix", "sns-257"])
def test_an_imported_destination_arn_names_one_queue_or_topic(value: str, setter: Setter) -> None:
    # the stack grants the bridge sqs:SendMessage / sns:Publish on the ARN as written: `*` was every queue of the
    # account, refused only by cdk-nag at synth (AwsSolutions-IAM5), not by `bridge validate` or `bridge poll`
    problems = _problems(_doc(setter, value))

    assert len(problems) == 1, problems
    assert problems[0].startswith("destinations[7].arn: "), problems
    assert "name (a wildcard would grant the bridge every" in problems[0]
    assert "Fix: the exact " in problems[0]


@pytest.mark.parametrize(("value", "setter"), [
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:{'q' * 80}", _imported_queue),
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:Orders_v2-eu", _imported_queue),
    (f"arn:aws:sqs:us-east-1:{ACCOUNT}:q", _imported_queue),
    (f"arn:aws:sns:us-east-1:{ACCOUNT}:{'t' * 256}", _imported_topic),
    (f"arn:aws:sns:us-east-1:{ACCOUNT}:Orders_v2-eu.fifo", _imported_topic),
], ids=["sqs-80", "sqs-mixed", "sqs-one", "sns-256", "sns-fifo"])
def test_an_imported_destination_arn_with_a_real_name_loads(value: str, setter: Setter) -> None:
    config = BridgeConfig.from_dict(_doc(setter, value))

    assert config.destinations[7].arn == value


def test_an_imported_fifo_queue_of_80_characters_loads() -> None:
    value = f"arn:aws:sqs:us-east-1:{ACCOUNT}:{'q' * 75}.fifo"

    def setter(doc: dict[str, Any], v: str) -> None:
        doc["destinations"].append({"name": "legacy", "type": "sqs", "arn": v, "fifo": True})

    assert BridgeConfig.from_dict(_doc(setter, value)).destinations[7].arn == value


def test_a_root_principal_with_a_space_after_it_is_not_taken_for_a_role() -> None:
    # given a whole account's principal with a trailing space (a quoted YAML string keeps it)
    value = f"arn:aws:iam::{ACCOUNT}:root "

    # then it is refused, as whitespace: the :root check compared the resource "root " with "root" and let it by
    assert _problems(_doc(_aws_principal, value)) == [
        f"producers[0].aws_principal: {value!r} has whitespace around it (a YAML `|` or `>` block keeps the final "
        "newline). Fix: remove it, or write the block as `|-`"
    ]
