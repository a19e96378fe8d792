"""Audit fan-out: the bridge publishes one event per batch to a topic; a monitoring queue subscribes."""

from __future__ import annotations

from aws_cdk import aws_sns_subscriptions as subscriptions
from bridge.config import BridgeConfig, Destination
from constructs import Construct

from infra.constructs.messaging import SecureMessaging

# The monitoring queue is not configurable; it redrives like a destination with the default setting.
AUDIT_MAX_RECEIVE_COUNT = Destination("audit", "sqs").max_receive_count


class AuditFanout(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig,
                 messaging: SecureMessaging) -> None:
        super().__init__(scope, construct_id)
        self.topic = messaging.topic(self, "Topic", name=config.audit_topic_name, fifo=False)
        self.queue = messaging.queue(self, "MonitorQueue", name=config.audit_queue_name,
                                     dlq_name=config.audit_queue_dlq_name, fifo=False,
                                     max_receive_count=AUDIT_MAX_RECEIVE_COUNT)
        self.subscription_dlq = subscription_dlq = messaging.subscription_dead_letter_queue(
            self, "SubscriptionDlq", name=config.audit_subscription_dlq_name, fifo=False,
            topic_arn=self.topic.topic_arn)
        self.topic.add_subscription(subscriptions.SqsSubscription(
            self.queue, raw_message_delivery=True, dead_letter_queue=subscription_dlq))
        # Only the audit topic (and the operators, for `bridge replay` of its DLQs) writes into the monitoring queue,
        # and only that queue subscribes to the topic.
        SecureMessaging.restrict_senders(self.queue, principal_arns=list(config.settings.operator_role_arns),
                                         topic_arns=[self.topic.topic_arn])
        SecureMessaging.restrict_subscribers(self.topic, endpoint_arns=[self.queue.queue_arn])
