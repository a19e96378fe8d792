"""Secure defaults for every queue and topic the stack creates, in one place.

Every queue: a dead-letter queue (redrive after the destination's max_receive_count), encryption
with a customer-managed key, TLS-only access, FIFO high-throughput settings and an explicit
MaximumMessageSize (1 MiB unless the destination says less), so no queue depends on what anyone
takes the default to be. Every topic: its own customer-managed key and TLS-only access. Queues and
topics use two keys on purpose: a queue key's policy names the topics that deliver into it, which
would be a dependency cycle if the topics were encrypted with that same key.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from bridge.config import SQS_MAX_MESSAGE_BYTES, SQS_MAX_RETENTION_SECONDS
from constructs import Construct

from infra.nag import acknowledge

# Dead-letter queues keep messages for the SQS maximum so an operator has time to look and redrive.
DLQ_RETENTION = Duration.seconds(SQS_MAX_RETENTION_SECONDS)
CONSUMER_ACTIONS = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue"]


class SecureMessaging(Construct):
    """Owns the messaging keys; builds queues and topics with the secure defaults in the caller's scope."""

    def __init__(self, scope: Construct, construct_id: str, *, delivering_topic_names: Sequence[str]) -> None:
        """`delivering_topic_names`: the topics the stack creates, all of which may deliver into its queues."""
        super().__init__(scope, construct_id)
        self.queue_key = kms.Key(self, "QueueKey", enable_key_rotation=True,
                                 description="Encrypts the Kafka bridge's SQS queues")
        self.topic_key = kms.Key(self, "TopicKey", enable_key_rotation=True,
                                 description="Encrypts the Kafka bridge's SNS topics")
        stack = Stack.of(self)
        topic_arns = [stack.format_arn(service="sns", resource=name) for name in delivering_topic_names]
        if topic_arns:
            # SNS must encrypt what it delivers into a KMS-encrypted queue (subscriptions and their DLQs).
            # ARNs are built from the configured names rather than referenced, so no cycle through the topics.
            self.queue_key.add_to_resource_policy(iam.PolicyStatement(
                sid="AllowTheBridgeTopicsToDeliver",
                principals=[iam.ServicePrincipal("sns.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"ArnLike": {"aws:SourceArn": topic_arns}},
            ))

    @property
    def keys(self) -> list[kms.IKey]:
        return [self.queue_key, self.topic_key]

    def dead_letter_queue(self, scope: Construct, construct_id: str, *, name: str | None, fifo: bool,
                          source_queue_arn: str | None = None) -> sqs.Queue:
        """A queue that only receives what others give up on; it has no DLQ of its own.

        Its RedriveAllowPolicy lets only `source_queue_arn` name it as a dead-letter queue (no queue at
        all when None: the DLQ of a subscription or of the bridge itself), so no other queue of the
        account can pour its messages in.
        """
        if source_queue_arn is not None:
            allow = sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[sqs.Queue.from_queue_arn(scope, f"{construct_id}-source", source_queue_arn)])
        else:
            allow = sqs.RedriveAllowPolicy(redrive_permission=sqs.RedrivePermission.DENY_ALL)
        return sqs.Queue(scope, construct_id, queue_name=name, retention_period=DLQ_RETENTION,
                         redrive_allow_policy=allow, **self._queue_defaults(fifo))

    def subscription_dead_letter_queue(self, scope: Construct, construct_id: str, *, name: str,
                                       fifo: bool, topic_arn: str) -> sqs.Queue:
        """The DLQ of one SNS subscription (a FIFO topic needs a FIFO DLQ); only that topic sends to it."""
        dlq = self.dead_letter_queue(scope, construct_id, name=name, fifo=fifo)
        self.restrict_senders(dlq, principal_arns=[], topic_arns=[topic_arn], sid="OnlyItsSubscriptionSends")
        # cdk-nag recognises DLQs named in a queue's RedrivePolicy, not in a subscription's.
        acknowledge(dlq, "AwsSolutions-SQS3",
                    "This queue is the dead-letter queue of an SNS subscription (the subscription's "
                    "RedrivePolicy names it); a dead-letter queue needs no dead-letter queue of its own.")
        return dlq

    def queue(self, scope: Construct, construct_id: str, *, name: str, dlq_name: str, fifo: bool,
              max_receive_count: int, max_message_bytes: int | None = None,
              retention_seconds: int | None = None) -> sqs.Queue:
        """A queue with its DLQ: a message received `max_receive_count` times moves there.

        `max_message_bytes` lowers the queue's MaximumMessageSize; its DLQ keeps the maximum, so anything
        the queue accepted fits there too.
        """
        source_arn = Stack.of(scope).format_arn(service="sqs", resource=name)  # by name: no cycle via the DLQ
        dlq = self.dead_letter_queue(scope, f"{construct_id}-dlq", name=dlq_name, fifo=fifo,
                                     source_queue_arn=source_arn)
        # Only its queue moves messages here (SQS's own move is not an API call); anyone else's SendMessage
        # would plant messages an operator may redrive into the destination.
        self.restrict_senders(dlq, principal_arns=[], topic_arns=[source_arn], sid="OnlyItsSourceQueueSends")
        props = self._queue_defaults(fifo)
        if max_message_bytes is not None:
            props["max_message_size_bytes"] = max_message_bytes
        if retention_seconds is not None:
            props["retention_period"] = Duration.seconds(retention_seconds)
        return sqs.Queue(scope, construct_id, queue_name=name,
                         dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=max_receive_count),
                         **props)

    def topic(self, scope: Construct, construct_id: str, *, name: str, fifo: bool,
              max_message_bytes: int | None = None) -> sns.Topic:
        topic = sns.Topic(scope, construct_id, topic_name=name, fifo=fifo or None,
                          content_based_deduplication=False if fifo else None,
                          master_key=self.topic_key, enforce_ssl=True)
        if max_message_bytes is not None:
            # The L2 Topic does not expose MaximumMessageSize yet; the L1 property does.
            cast(sns.CfnTopic, topic.node.default_child).maximum_message_size = max_message_bytes
        return topic

    @staticmethod
    def restrict_senders(queue: sqs.IQueue, *, principal_arns: Sequence[str], topic_arns: Sequence[str],
                         sid: str = "OnlyTheBridgeAndNamedProducersSend") -> None:
        """Deny sqs:SendMessage to everyone but `principal_arns` and deliveries from `topic_arns` (sources by
        aws:SourceArn: topics, or the queue a DLQ belongs to).

        Only SendMessage is denied, so administrators keep managing and reading the queue. SNS deliveries
        carry no aws:PrincipalArn but do carry aws:SourceArn; the keys inside one operator are ANDed, so a
        request is denied only when it matches neither list.
        """
        not_equals: dict[str, Any] = {}
        if principal_arns:
            not_equals["aws:PrincipalArn"] = list(principal_arns)
        if topic_arns:
            not_equals["aws:SourceArn"] = list(topic_arns)
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid=sid,
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["sqs:SendMessage"],
            resources=[queue.queue_arn],
            conditions={"ArnNotEquals": not_equals} if not_equals else None,
        ))

    @staticmethod
    def restrict_consumers(queue: sqs.IQueue, *, principal_arns: Sequence[str],
                           sid: str = "OnlyTheConsumersReceive") -> None:
        """Deny receiving, deleting, hiding and purging messages to everyone but `principal_arns` (a
        destination's configured consumers, the bridge DLQ's operators; no one, when empty): a reader of the
        account could otherwise drain a queue."""
        queue.add_to_resource_policy(iam.PolicyStatement(
            sid=sid, effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=CONSUMER_ACTIONS, resources=[queue.queue_arn],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": list(principal_arns)}} if principal_arns else None))

    @staticmethod
    def restrict_subscribers(topic: sns.ITopic, *, endpoint_arns: Sequence[str]) -> None:
        """Deny sns:Subscribe to every endpoint but the configured queues (none, when empty): anyone allowed
        sns:Subscribe on "*" could otherwise copy every message to an endpoint of their own."""
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheConfiguredQueuesSubscribe", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["sns:Subscribe"], resources=[topic.topic_arn],
            conditions={"StringNotEquals": {"sns:Endpoint": list(endpoint_arns)}} if endpoint_arns else None))

    @staticmethod
    def restrict_publishers(topic: sns.ITopic, *, principal_arns: Sequence[str]) -> None:
        """Deny sns:Publish to everyone but `principal_arns` (no one, when empty), as `restrict_senders` does
        for queues: otherwise any principal of the account allowed sns:Publish on "*" could inject messages
        that the topic fans out to its queues. Only Publish is denied; administrators keep managing the topic.
        """
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyTheBridgePublishes",
            effect=iam.Effect.DENY,
            principals=[iam.AnyPrincipal()],
            actions=["sns:Publish"],
            resources=[topic.topic_arn],
            conditions={"ArnNotEquals": {"aws:PrincipalArn": list(principal_arns)}} if principal_arns else None,
        ))

    def _queue_defaults(self, fifo: bool) -> dict[str, Any]:
        props: dict[str, Any] = {
            "encryption": sqs.QueueEncryption.KMS,
            "encryption_master_key": self.queue_key,
            "enforce_ssl": True,
            # explicit, so parked documents and messages up to 1 MiB fit whatever the default is taken to be
            "max_message_size_bytes": SQS_MAX_MESSAGE_BYTES,
        }
        if fifo:
            props.update(
                fifo=True,
                # the bridge sets an explicit deduplication id per record; content-based dedup would drop
                # two records that happen to carry the same value
                content_based_deduplication=False,
                deduplication_scope=sqs.DeduplicationScope.MESSAGE_GROUP,
                fifo_throughput_limit=sqs.FifoThroughputLimit.PER_MESSAGE_GROUP_ID,
            )
        return props
