"""What `bridge redrive` needs, granted to the roles in `settings.operator_role_arns` by the resources' own
policies, scoped to those roles and to the one resource each (docs/decisions.md, "Operators get bridge
redrive's permissions from the stack").

`bridge redrive` in AWS mode (bridge_local.redrive / .replay) calls, as the operator's role:
- on the bridge DLQ: ReceiveMessage, ChangeMessageVisibilityBatch, DeleteMessageBatch and
  GetQueueAttributes (sqs:ReceiveMessage, sqs:ChangeMessageVisibility, sqs:DeleteMessage,
  sqs:GetQueueAttributes), and through SQS kms:Decrypt on the queue key for that queue's messages;
- in the parking bucket: GetObject for records parked too large for the DLQ; with `--on-failure`,
  ListObjectsV2 and GetObject and DeleteObject under the event-source mapping's `aws/lambda/` prefix;
  through S3 kms:Decrypt on the parking key;
- lambda:InvokeFunction on the `live` alias (the function re-verifies every redriven record);
- with checkpoints on, the redrive ledger in the checkpoint table (infra.constructs.checkpoints).
A same-account role needs no identity policy for any of it; a role of another account also needs
these actions in its own identity policy (docs/runbook.md, "Operators' permissions").
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.constructs.bridge_function import ESM_FAILURE_PREFIX  # where the mapping writes failed batches

# What the redrive command calls on the bridge DLQ (the batch calls are authorised as their single actions).
DLQ_ACTIONS = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]


class OperatorAccess(Construct):
    """Allow statements for `bridge redrive` on the bridge DLQ, its key, the parking bucket, its key and the
    live alias, naming each operator role; nothing when there are none."""

    def __init__(self, scope: Construct, construct_id: str, *, operator_role_arns: Sequence[str],
                 bridge_dlq: sqs.IQueue, bridge_dlq_name: str, queue_key: kms.IKey, parking_bucket: s3.IBucket,
                 parking_key: kms.IKey, alias: lambda_.IAlias) -> None:
        super().__init__(scope, construct_id)
        if not operator_role_arns:
            return
        operators = [iam.ArnPrincipal(arn) for arn in operator_role_arns]
        bridge_dlq.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsRedrive", principals=operators, actions=DLQ_ACTIONS, resources=[bridge_dlq.queue_arn]))
        # The queue key encrypts every queue of the stack: the grant holds only for SQS decrypting the bridge
        # DLQ's messages (SQS's encryption context names the queue). Its ARN from the fixed name: the queue
        # refers to the key, so the key's policy cannot refer back to the queue.
        dlq_arn = Stack.of(self).format_arn(service="sqs", resource=bridge_dlq_name)
        queue_key.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsReadTheBridgeDlq", principals=operators, actions=["kms:Decrypt"],
            resources=["*"],  # in a key policy "*" means this key
            conditions={"StringEquals": {"kms:ViaService": f"sqs.{Aws.REGION}.amazonaws.com"},
                        "ArnEquals": {"kms:EncryptionContext:aws:sqs:arn": dlq_arn}}))
        parking_bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsReadParkedRecords", principals=operators,
            actions=["s3:GetObject", "s3:GetObjectVersion"], resources=[parking_bucket.arn_for_objects("*")]))
        parking_bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsListFailedBatches", principals=operators, actions=["s3:ListBucket"],
            resources=[parking_bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [ESM_FAILURE_PREFIX]}}))
        parking_bucket.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsRemoveReplayedFailedBatches", principals=operators, actions=["s3:DeleteObject"],
            resources=[parking_bucket.arn_for_objects(ESM_FAILURE_PREFIX)]))
        # The parking key encrypts only the parking bucket's objects: through S3 is the whole scope.
        parking_key.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsReadParkedRecordsViaS3", principals=operators, actions=["kms:Decrypt"],
            resources=["*"],  # in a key policy "*" means this key
            conditions={"StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"}}))
        for i, arn in enumerate(operator_role_arns):
            lambda_.CfnPermission(self, f"OperatorInvoke{i}", action="lambda:InvokeFunction",
                                  function_name=alias.function_arn, principal=arn)
