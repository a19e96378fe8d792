"""The claim-check bucket: message bodies over their destination's limit, read by consumers' extended clients.

A bucket of its own rather than the parking bucket: consumers of the destinations must read it
(`s3:GetObject` on `claim-check/<destination>/*`), and the parking bucket holds records no consumer
should see. Objects expire after `settings.claim_check_retention_days`, longer than SQS keeps any
message that points to one (14 days, DLQs included). S3-managed encryption, so a consumer needs no
KMS grant to read; TLS only; no public access.
"""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3 as s3
from bridge.claim_check import KEY_PREFIX
from bridge.config import BridgeConfig
from constructs import Construct

from infra.nag import acknowledge, acknowledge_checkov

OBJECTS = f"{KEY_PREFIX}*"


class ClaimCheckStorage(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig) -> None:
        super().__init__(scope, construct_id)
        days = config.settings.claim_check_retention_days
        self.bucket = s3.Bucket(
            self, "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            encryption=s3.BucketEncryption.S3_MANAGED,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[s3.LifecycleRule(id="expire-claim-checks", prefix=KEY_PREFIX,
                                              expiration=Duration.days(days),
                                              abort_incomplete_multipart_upload_after=Duration.days(1))],
            # copies of records on their way to consumers; the lifecycle rule empties it
            removal_policy=RemovalPolicy.RETAIN,
        )
        acknowledge_checkov(self.bucket, "CKV_AWS_18",
                            "Object-level access is auditable with CloudTrail data events; a separate access-log "
                            "bucket would itself need this exemption.")
        acknowledge_checkov(self.bucket, "CKV_AWS_21",
                            "Only the bridge role writes or deletes objects (bucket policy), under keys fixed per "
                            "record and destination: a redelivery rewrites the same bytes, so versions would only "
                            "keep identical copies of payloads past the lifecycle expiry.")
        acknowledge(self.bucket, "AwsSolutions-S1",
                    "Only the bridge role writes here (PutObject under claim-check/) and consumers read objects "
                    "they received pointers to; object-level access is auditable with CloudTrail data events, and "
                    "an access-log bucket would itself need this exemption.")

    def restrict_writers(self, *, bridge_role_arn: str) -> None:
        """Deny writing and deleting objects to everyone but the bridge role.

        A consumer trusts what a pointer points to as if it came in the message: anyone else able to
        overwrite an object could swap a record after the bridge checked its signature (a queue with
        `accept_from`), or delete it from under its pointers. Reads stay with IAM (consumers' roles).
        """
        self.bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheBridgeWritesClaimChecks", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
            resources=[self.bucket.arn_for_objects("*")],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": [bridge_role_arn]}}))
