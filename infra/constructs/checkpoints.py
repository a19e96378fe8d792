"""The checkpoint table: per-batch delivery progress, so a redelivered batch skips what succeeded.

Created only with `settings.checkpoints: on` (the default in production stages). Items are small
(one per send request of up to 10 messages) and expire by TTL after
`BridgeConfig.checkpoint_ttl_seconds`, past the oldest record the mapping can still redeliver.
The bridge role is granted Query and BatchWriteItem (in BridgeFunction). The roles in
`settings.operator_role_arns` are granted `bridge redrive`'s ledger and nothing else: BatchGetItem and
BatchWriteItem on items whose partition key is a ledger key (`REDRIVE_LEDGER_PREFIXES`), by the table's
resource policy, and the table's key only through DynamoDB, by the key policy. So in AWS the ledger works
with the operators' roles as they are, and an operator cannot read or forge the bridge's progress.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from bridge.adapters.dynamodb import PARTITION_KEY, REDRIVE_LEDGER_PREFIXES, SORT_KEY, TTL_ATTRIBUTE
from bridge.config import BridgeConfig
from constructs import Construct

from infra.nag import acknowledge, acknowledge_checkov


class CheckpointTable(Construct):
    """An on-demand DynamoDB table encrypted with its own customer-managed key."""

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(self, "Key", enable_key_rotation=True,
                           description="Encrypts the Kafka bridge's checkpoint table")
        self.table = dynamodb.Table(
            self, "Table",
            table_name=config.checkpoint_table_name,
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=SORT_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            time_to_live_attribute=TTL_ATTRIBUTE,
            # Progress only: losing it costs possible duplicates, never a record, so no snapshot to keep.
            removal_policy=RemovalPolicy.DESTROY,
            resource_policy=self._ledger_policy(config.checkpoint_table_name, config.settings.operator_role_arns),
        )
        if config.settings.operator_role_arns:
            self.key.add_to_resource_policy(self.ledger_key_statement(config.settings.operator_role_arns))
        acknowledge(self.table, "AwsSolutions-DDB3",
                    "Items are delivery progress that expires within days (TTL past the mapping's maximum record "
                    "age); restoring them from a backup would only skip records the backup says were sent. Losing "
                    "the table costs possible duplicate deliveries, never a record.")
        acknowledge_checkov(self.table, "CKV_AWS_28",
                            "Point-in-time recovery, as AwsSolutions-DDB3: the items are delivery progress that "
                            "expires within days; a restore would only skip records it says were sent, and losing "
                            "the table costs possible duplicates, never a record.")

    def _ledger_policy(self, table_name: str, operator_role_arns: Sequence[str]) -> iam.PolicyDocument | None:
        if not operator_role_arns:
            return None
        # The table's ARN from its fixed name: a resource policy may not refer to its own table by Fn::GetAtt.
        table_arn = Stack.of(self).format_arn(service="dynamodb", resource="table", resource_name=table_name)
        return iam.PolicyDocument(statements=[self.ledger_statement(table_arn, operator_role_arns)])

    @staticmethod
    def ledger_statement(table_arn: str, operator_role_arns: Sequence[str]) -> iam.PolicyStatement:
        """What `bridge redrive`'s ledger calls (bridge_local.redrive.DynamoDbRedriveLedger: BatchGetItem,
        BatchWriteItem), on ledger items only. `dynamodb:LeadingKeys` holds every partition key a request
        touches; ForAllValues requires all of them to be ledger keys, and the Null test refuses a request
        that carries none (ForAllValues alone is true for an empty set)."""
        return iam.PolicyStatement(
            sid="OperatorsRedriveLedger",
            principals=[iam.ArnPrincipal(arn) for arn in operator_role_arns],
            actions=["dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"],
            resources=[table_arn],
            conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"{p}*" for p in REDRIVE_LEDGER_PREFIXES]},
                        "Null": {"dynamodb:LeadingKeys": "false"}})

    @staticmethod
    def ledger_key_statement(operator_role_arns: Sequence[str]) -> iam.PolicyStatement:
        """The table's key for the operators, only in DynamoDB's requests on their behalf (the actions the
        bridge role has on it); which items they reach is the table policy's decision."""
        return iam.PolicyStatement(
            sid="OperatorsRedriveLedgerViaDynamoDb",
            principals=[iam.ArnPrincipal(arn) for arn in operator_role_arns],
            actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
            resources=["*"],  # in a key policy, "*" is this key and nothing else
            conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{Aws.REGION}.amazonaws.com"}})
