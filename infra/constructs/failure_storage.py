"""Where records go when they cannot be delivered: the bridge DLQ and the parking bucket."""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_s3 as s3
from bridge.config import BridgeConfig
from constructs import Construct

from infra.constructs.messaging import SecureMessaging
from infra.nag import acknowledge


class FailureStorage(Construct):
    """The bridge DLQ (one message per parked record) and the parking bucket.

    The bucket holds parked records too large for the DLQ and is the event-source mapping's on-failure
    destination: an S3 destination receives the failed records themselves, SQS/SNS would get metadata only.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig,
                 messaging: SecureMessaging) -> None:
        super().__init__(scope, construct_id)
        self.bridge_dlq = messaging.dead_letter_queue(self, "BridgeDlq", name=config.bridge_dlq_name, fifo=False)
        acknowledge(self.bridge_dlq, "AwsSolutions-SQS3",
                    "This queue is the bridge's own dead-letter queue: parked records wait here for inspection "
                    "and redrive. A dead-letter queue behind it would only move the same messages again.")

        self.parking_bucket = s3.Bucket(
            self, "ParkingBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            # parked records are the only copy of data Kafka may already have expired
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge(self.parking_bucket, "AwsSolutions-S1",
                    "Only the bridge role and its event-source mapping write here, and no one reads anonymously "
                    "(public access blocked, TLS only). Object-level access is auditable with CloudTrail data "
                    "events; a separate access-log bucket would itself need this exemption.")
