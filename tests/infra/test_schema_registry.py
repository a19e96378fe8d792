"""Schema registry: the mappings decode records to JSON (provisioned mode), with read-only access to schemas."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from bridge.config import ConfigError

from infra.config_document import config_from_document
from tests.infra.conftest import GLUE_REGISTRY_ARN, Synth, synthesize
from tests.infra.helpers import inline_statements

pytestmark = pytest.mark.infra

REGISTRY_SECRET = "arn:aws:secretsmanager:us-east-1:123456789012:secret:schema-registry-AbCdEf"


def _bridge_statements(synth: Synth) -> list[dict[str, Any]]:
    return inline_statements(synth.data, synth.logical_id("AWS::IAM::Role", Description="Kafka bridge orders-bridge"))


def test_glue_registry_decodes_values_to_json_and_reads_only_its_schemas(provisioned: Synth) -> None:
    for mapping in provisioned.resources("AWS::Lambda::EventSourceMapping").values():
        config = mapping["Properties"]["AmazonManagedKafkaEventSourceConfig"]["SchemaRegistryConfig"]
        assert config == {"SchemaRegistryURI": GLUE_REGISTRY_ARN, "EventRecordFormat": "JSON",
                          "SchemaValidationConfigs": [{"Attribute": "VALUE"}]}
    (read,) = [s for s in _bridge_statements(provisioned) if s.get("Sid") == "ReadSchemas"]
    assert read["Action"] == ["glue:GetRegistry", "glue:GetSchemaVersion"]
    assert read["Resource"] == [GLUE_REGISTRY_ARN, "arn:aws:glue:us-east-1:123456789012:schema/orders/*"]


def test_confluent_registry_authenticates_with_its_secret(variant_document: Any,
                                                         tmp_path_factory: pytest.TempPathFactory) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["source"].update(provisioned_pollers={"minimum": 1, "maximum": 2}, schema_registry={
            "kind": "confluent", "uri": "https://registry.example.com", "secret_arn": REGISTRY_SECRET,
            "attributes": ["key", "value"]})

    synth = synthesize(config_from_document(variant_document(edit), "confluent"), tmp_path_factory.mktemp("cr"))
    for mapping in synth.resources("AWS::Lambda::EventSourceMapping").values():
        config = mapping["Properties"]["AmazonManagedKafkaEventSourceConfig"]["SchemaRegistryConfig"]
        assert config["SchemaRegistryURI"] == "https://registry.example.com"
        assert config["EventRecordFormat"] == "JSON"
        assert config["AccessConfigs"] == [{"Type": "BASIC_AUTH", "URI": REGISTRY_SECRET}]
        assert config["SchemaValidationConfigs"] == [{"Attribute": "KEY"}, {"Attribute": "VALUE"}]
    (read,) = [s for s in _bridge_statements(synth) if s.get("Sid") == "ReadSchemaRegistryCredentials"]
    assert (read["Action"], read["Resource"]) == ("secretsmanager:GetSecretValue", REGISTRY_SECRET)


@pytest.mark.parametrize(("registry", "field", "text"), [
    ({"kind": "glue", "uri": GLUE_REGISTRY_ARN}, "source.schema_registry", "needs provisioned mode"),
    ({"kind": "confluent", "uri": "http://registry.example.com", "secret_arn": REGISTRY_SECRET},
     "source.schema_registry.uri", "https://"),
    ({"kind": "confluent", "uri": "https://registry.example.com"}, "source.schema_registry.secret_arn", "required"),
    ({"kind": "glue", "uri": "arn:aws:glue:us-east-1:123456789012:registry/x", "secret_arn": REGISTRY_SECRET},
     "source.schema_registry", "Confluent"),
])
def test_invalid_registry_settings_are_refused_in_one_line(dev_document: dict[str, Any], registry: dict[str, Any],
                                                           field: str, text: str) -> None:
    doc = copy.deepcopy(dev_document)
    if "provisioned" not in text:
        doc["source"]["provisioned_pollers"] = {"minimum": 1, "maximum": 2}
    doc["source"]["schema_registry"] = registry
    with pytest.raises(ConfigError) as info:
        config_from_document(doc, "bad")
    (problem,) = info.value.problems
    assert problem.startswith(f"{field}:")
    assert text in problem
