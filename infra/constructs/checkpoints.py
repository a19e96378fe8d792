"""The checkpoint table: per-batch delivery progress, so a redelivered batch skips what succeeded.

Created only with `settings.checkpoints: on` (the default in production stages). Items are small
(one per send request of up to 10 messages) and expire by TTL after
`BridgeConfig.checkpoint_ttl_seconds`, past the oldest record the mapping can still redeliver.
Only the bridge role is granted access (Query and BatchWriteItem, in BridgeFunction).
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_kms as kms
from bridge.adapters.dynamodb import PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE
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
        )
        acknowledge(self.table, "AwsSolutions-DDB3",
                    "Items are delivery progress that expires within days (TTL past the mapping's maximum record "
                    "age); restoring them from a backup would only skip records the backup says were sent. Losing "
                    "the table costs possible duplicate deliveries, never a record.")
        acknowledge_checkov(self.table, "CKV_AWS_28",
                            "Point-in-time recovery, as AwsSolutions-DDB3: the items are delivery progress that "
                            "expires within days; a restore would only skip records it says were sent, and losing "
                            "the table costs possible duplicates, never a record.")
