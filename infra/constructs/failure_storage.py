"""Where records go when they cannot be delivered: the bridge DLQ and the parking bucket."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from bridge.config import BridgeConfig
from constructs import Construct

from infra.constructs.messaging import SecureMessaging
from infra.nag import acknowledge, acknowledge_checkov


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

        # Parked payloads are as sensitive as delivered ones: a key of our own, whose use CloudTrail shows.
        self.parking_key = kms.Key(self, "ParkingKey", enable_key_rotation=True,
                                   description="Encrypts the Kafka bridge's parked records")
        retention = Duration.days(config.settings.parking_retention_days)
        self.parking_bucket = s3.Bucket(
            self, "ParkingBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.parking_key,
            bucket_key_enabled=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            versioned=True,
            # parked records are the only copy of data Kafka may already have expired; they expire after
            # settings.parking_retention_days, overwritten or deleted versions too
            lifecycle_rules=[s3.LifecycleRule(id="ExpireParkedRecords", expiration=retention,
                                              noncurrent_version_expiration=retention,
                                              abort_incomplete_multipart_upload_after=Duration.days(1))],
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge_checkov(self.parking_bucket, "CKV_AWS_18",
                            "Access to parked records is limited by the bucket policy and auditable with CloudTrail "
                            "data events; a separate access-log bucket would itself need this exemption.")
        acknowledge(self.parking_bucket, "AwsSolutions-S1",
                    "The bucket policy lets only the bridge role write (the handler and the event-source "
                    "mapping's on-failure destination, which writes with the function's role) and only the "
                    "bridge role and settings.operator_role_arns read. Object-level access is auditable with "
                    "CloudTrail data events; a separate access-log bucket would itself need this exemption.")

    def restrict_access(self, *, bridge_role_arn: str, reader_role_arns: Sequence[str]) -> None:
        """Deny writing parked objects to all but the bridge role, reading them to all but the bridge role
        and the operators' roles, and receiving, deleting, hiding or purging the bridge DLQ's messages to all
        but the operators' roles (`bridge redrive`; the bridge only sends there, which the stack limits to
        its role): the identity policies of the account's other principals (s3:* or sqs:* on *) no longer
        reach the parked records, nor can they make them disappear before an operator sees them."""
        SecureMessaging.restrict_consumers(self.bridge_dlq, principal_arns=reader_role_arns,
                                           sid="OnlyTheOperatorsReceive")
        objects = self.parking_bucket.arn_for_objects("*")
        self.parking_bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheBridgeWrites", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject"], resources=[objects],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [bridge_role_arn]}}))
        self.parking_bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheBridgeAndOperatorsRead", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[objects],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [bridge_role_arn, *reader_role_arns]}}))
