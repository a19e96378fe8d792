"""The checkpoint table: created only with checkpoints on, on demand, TTL past the record age, own CMK,
and reachable by the bridge role alone, with only the two calls the adapter makes."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match
from bridge.adapters.dynamodb import PARTITION_KEY, REDRIVE_LEDGER_PREFIXES, SORT_KEY, TTL_ATTRIBUTE

from tests.infra.conftest import Synth
from tests.infra.helpers import as_list, iam_statements


def test_no_table_when_checkpoints_are_off(dev: Synth) -> None:
    assert not dev.config.settings.checkpoints
    assert dev.resources("AWS::DynamoDB::Table") == {}
    assert not any("dynamodb:" in str(s.get("Action")) for _, s in iam_statements(dev.data))


def test_table_is_on_demand_with_ttl_and_a_customer_managed_key(provisioned: Synth) -> None:
    (table,) = provisioned.resources("AWS::DynamoDB::Table").values()
    props = table["Properties"]
    assert props["TableName"] == provisioned.config.checkpoint_table_name
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["KeySchema"] == [{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                                  {"AttributeName": SORT_KEY, "KeyType": "RANGE"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": TTL_ATTRIBUTE, "Enabled": True}
    sse = props["SSESpecification"]
    assert sse["SSEEnabled"] is True
    assert sse["SSEType"] == "KMS"
    key_id = sse["KMSMasterKeyId"]["Fn::GetAtt"][0]
    key = provisioned.data["Resources"][key_id]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True


def test_ttl_outlives_the_mappings_maximum_record_age(provisioned: Synth) -> None:
    retry = provisioned.config.source.retry
    assert retry is not None
    assert provisioned.config.checkpoint_ttl_seconds > retry.max_record_age_seconds


def test_only_the_bridge_role_may_touch_the_table_and_only_with_query_and_batch_write(provisioned: Synth) -> None:
    table_id = next(iter(provisioned.resources("AWS::DynamoDB::Table")))
    grants: list[tuple[str, dict[str, Any]]] = [
        (role, s) for role, s in iam_statements(provisioned.data)
        if any("dynamodb:" in a for a in as_list(s["Action"]))]
    assert len(grants) == 1
    role, statement = grants[0]
    assert "Bridge" in role
    assert sorted(as_list(statement["Action"])) == ["dynamodb:BatchWriteItem", "dynamodb:Query"]
    assert as_list(statement["Resource"]) == [{"Fn::GetAtt": [table_id, "Arn"]}]


def test_function_is_told_the_table_name(provisioned: Synth) -> None:
    table_id = next(iter(provisioned.resources("AWS::DynamoDB::Table")))
    provisioned.template.has_resource_properties("AWS::Lambda::Function", {
        "Environment": {"Variables": Match.object_like({"BRIDGE_CHECKPOINT_TABLE": {"Ref": table_id}})}})


def _table_policy(synth: Synth) -> list[dict[str, Any]]:
    (table,) = synth.resources("AWS::DynamoDB::Table").values()
    return as_list(table["Properties"]["ResourcePolicy"]["PolicyDocument"]["Statement"])


def test_operators_get_the_redrive_ledger_items_and_nothing_else_of_the_table(provisioned: Synth) -> None:
    operators = list(provisioned.config.settings.operator_role_arns)
    assert operators
    (statement,) = _table_policy(provisioned)
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"AWS": operators[0] if len(operators) == 1 else operators}
    # exactly the calls DynamoDbRedriveLedger makes
    assert sorted(as_list(statement["Action"])) == ["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"]
    # the table by its name (a resource policy cannot Fn::GetAtt its own table), no index, no stream
    assert statement["Resource"] == {"Fn::Join": ["", [
        "arn:", {"Ref": "AWS::Partition"}, ":dynamodb:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
        f":table/{provisioned.config.checkpoint_table_name}"]]}
    assert statement["Condition"] == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{p}*" for p in REDRIVE_LEDGER_PREFIXES]},
        "Null": {"dynamodb:LeadingKeys": "false"}}


def test_operators_use_the_tables_key_only_through_dynamodb(provisioned: Synth) -> None:
    (table,) = provisioned.resources("AWS::DynamoDB::Table").values()
    key = provisioned.data["Resources"][table["Properties"]["SSESpecification"]["KMSMasterKeyId"]["Fn::GetAtt"][0]]
    operators = set(provisioned.config.settings.operator_role_arns)
    granted = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
               if {p for p in as_list(s.get("Principal", {}).get("AWS", [])) if isinstance(p, str)} & operators]
    assert len(granted) == 1
    (statement,) = granted
    assert sorted(as_list(statement["Action"])) == ["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
                                                     "kms:GenerateDataKey"]
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": {"Fn::Join": ["", [
        "dynamodb.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}}}


def test_no_table_policy_without_operators(every_variant: Synth) -> None:
    for table in every_variant.resources("AWS::DynamoDB::Table").values():
        assert ("ResourcePolicy" in table["Properties"]) == bool(every_variant.config.settings.operator_role_arns)
