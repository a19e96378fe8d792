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

`bridge replay --from DLQ` (bridge_local.dlq_replay) calls, for every other DLQ of the stack (each queue's, each
subscription's, the audit monitor's and the audit subscription's) and the queue its messages go back to:
- on the DLQ: GetQueueUrl, ReceiveMessage, ChangeMessageVisibilityBatch, DeleteMessageBatch, GetQueueAttributes;
- on the target queue: GetQueueUrl and SendMessageBatch (sqs:SendMessage), which the queue's own Deny of other
  senders lets through for the operators (infra.constructs.destinations, .audit);
- through SQS, kms:Decrypt on the queue key for the DLQs' messages, kms:GenerateDataKey and kms:Decrypt for the
  targets' (what SQS asks of a sender to an encrypted queue), each by the queue's ARN in the encryption context.
A queue that takes only signed records (`accept_from`) is never a target: SendMessage there would let an operator
write unsigned messages its consumers trust, and no condition key limits a send to messages read from a DLQ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Aws, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from bridge.config import BridgeConfig
from constructs import Construct

from infra.constructs.audit import AuditFanout
from infra.constructs.bridge_function import ESM_FAILURE_PREFIX  # where the mapping writes failed batches
from infra.constructs.destinations import Destinations

# What the redrive command calls on the bridge DLQ (the batch calls are authorised as their single actions).
DLQ_ACTIONS = ["sqs:ReceiveMessage", "sqs:ChangeMessageVisibility", "sqs:DeleteMessage", "sqs:GetQueueAttributes"]
# What `bridge replay` calls on a DLQ it reads, and on the queue it sends to (queues are found by name).
REPLAY_DLQ_ACTIONS = ["sqs:GetQueueUrl", *DLQ_ACTIONS]
REPLAY_TARGET_ACTIONS = ["sqs:GetQueueUrl", "sqs:SendMessage"]


@dataclass(frozen=True)
class ReplayedDlq:
    """A DLQ `bridge replay` reads and the queue it sends its messages back to (constructs and physical names)."""

    dlq: sqs.IQueue
    dlq_name: str
    target: sqs.IQueue
    target_name: str


class OperatorAccess(Construct):
    """Allow statements for `bridge redrive` on the bridge DLQ, its key, the parking bucket, its key and the
    live alias, naming each operator role; nothing when there are none."""

    def __init__(self, scope: Construct, construct_id: str, *, operator_role_arns: Sequence[str],
                 bridge_dlq: sqs.IQueue, bridge_dlq_name: str, queue_key: kms.IKey, parking_bucket: s3.IBucket,
                 parking_key: kms.IKey, alias: lambda_.IAlias, replayed: Sequence[ReplayedDlq] = ()) -> None:
        super().__init__(scope, construct_id)
        if not operator_role_arns:
            return
        operators = [iam.ArnPrincipal(arn) for arn in operator_role_arns]
        if replayed:
            self._replay(operators, queue_key, replayed)
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

    def _replay(self, operators: Sequence[iam.IPrincipal], queue_key: kms.IKey,
                replayed: Sequence[ReplayedDlq]) -> None:
        """`bridge replay`'s grants: each DLQ's and each target's own policy names that one queue; the queue key
        decrypts only those queues' messages, through SQS (its encryption context names the queue)."""
        targets: dict[str, sqs.IQueue] = {}
        for r in replayed:
            r.dlq.add_to_resource_policy(iam.PolicyStatement(
                sid="OperatorsReplayFromThisDlq", principals=list(operators), actions=REPLAY_DLQ_ACTIONS,
                resources=[r.dlq.queue_arn]))
            targets.setdefault(r.target_name, r.target)
        for target in targets.values():
            target.add_to_resource_policy(iam.PolicyStatement(
                sid="OperatorsReplayIntoThisQueue", principals=list(operators), actions=REPLAY_TARGET_ACTIONS,
                resources=[target.queue_arn]))
        stack = Stack.of(self)
        via_sqs = {"kms:ViaService": f"sqs.{Aws.REGION}.amazonaws.com"}
        # ARNs from the fixed names: the queues refer to the key, so its policy cannot refer back to them
        queue_key.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsReadTheReplayedDlqs", principals=list(operators), actions=["kms:Decrypt"],
            resources=["*"],  # in a key policy "*" means this key
            conditions={"StringEquals": via_sqs, "ArnEquals": {"kms:EncryptionContext:aws:sqs:arn": sorted(
                {stack.format_arn(service="sqs", resource=r.dlq_name) for r in replayed})}}))
        queue_key.add_to_resource_policy(iam.PolicyStatement(
            sid="OperatorsSendReplaysIntoQueues", principals=list(operators),
            actions=["kms:GenerateDataKey", "kms:Decrypt"],
            resources=["*"],  # in a key policy "*" means this key
            conditions={"StringEquals": via_sqs, "ArnEquals": {"kms:EncryptionContext:aws:sqs:arn": sorted(
                stack.format_arn(service="sqs", resource=name) for name in targets)}}))


def replayed_dlqs(config: BridgeConfig, destinations: Destinations, audit: AuditFanout) -> list[ReplayedDlq]:
    """Every DLQ `bridge replay` takes (bridge_local.dlq_replay.replay_sources, which tests/infra checks against
    this list) whose target is not signed-only: each created queue's, each subscription's, the audit monitor's and
    the audit subscription's."""
    prefix = config.prefix
    out: list[ReplayedDlq] = []
    for name, queue in destinations.created_queues.items():
        d = config.destination(name)
        if d.accept_from or queue.dead_letter_queue is None:
            continue
        out.append(ReplayedDlq(queue.dead_letter_queue.queue, d.dlq_physical_name(prefix), queue,
                               d.physical_name(prefix)))
    for (topic, queue_name), dlq in destinations.subscription_dlqs.items():
        target = config.destination(queue_name)
        if target.accept_from:
            continue
        out.append(ReplayedDlq(dlq, config.subscription_dlq_name(config.destination(topic), queue_name),
                               destinations.created_queues[queue_name], target.physical_name(prefix)))
    if audit.queue.dead_letter_queue is not None:
        out.append(ReplayedDlq(audit.queue.dead_letter_queue.queue, config.audit_queue_dlq_name, audit.queue,
                               config.audit_queue_name))
    out.append(ReplayedDlq(audit.subscription_dlq, config.audit_subscription_dlq_name, audit.queue,
                           config.audit_queue_name))
    return out
