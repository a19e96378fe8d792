"""The configured destinations: created queues and topics (or existing ones by ARN) and SNS->SQS subscriptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from bridge.config import BridgeConfig, Destination
from constructs import Construct

from infra.constructs.messaging import SecureMessaging


class Destinations(Construct):
    """One queue or topic per `destinations[]` entry, each built by the secure-defaults factory."""

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig,
                 messaging: SecureMessaging) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._messaging = messaging
        self.queues: dict[str, sqs.IQueue] = {}
        self.topics: dict[str, sns.ITopic] = {}
        self.created_queues: dict[str, sqs.Queue] = {}
        self.created_topics: dict[str, sns.Topic] = {}
        # queue name -> ARNs of the topics subscribed to it (they must keep the right to deliver)
        self._delivering_topics: dict[str, list[str]] = {}
        # (topic destination, queue destination) -> the subscription's DLQ
        self.subscription_dlqs: dict[tuple[str, str], sqs.Queue] = {}

        for d in config.destinations:
            if d.type == "sqs":
                self.queues[d.name] = self._queue(d)
            else:
                self.topics[d.name] = self._topic(d)
        for d in config.destinations:
            for s in d.subscriptions:
                self._subscribe(d, s.queue, s.raw_message_delivery, s.filter_policy)

    def _queue(self, d: Destination) -> sqs.IQueue:
        if d.arn is not None:
            return sqs.Queue.from_queue_arn(self, d.name, d.arn)
        queue = self._messaging.queue(self, d.name, name=d.physical_name(self._config.prefix),
                                      dlq_name=d.dlq_physical_name(self._config.prefix), fifo=d.fifo,
                                      max_receive_count=d.max_receive_count, max_message_bytes=d.max_message_bytes,
                                      retention_seconds=d.retention_seconds)
        if d.consumers:
            SecureMessaging.restrict_consumers(queue, principal_arns=d.consumers)
        self.created_queues[d.name] = queue
        return queue

    def _topic(self, d: Destination) -> sns.ITopic:
        if d.arn is not None:
            return sns.Topic.from_topic_arn(self, d.name, d.arn)
        topic = self._messaging.topic(self, d.name, name=d.physical_name(self._config.prefix), fifo=d.fifo,
                                      max_message_bytes=d.max_message_bytes)
        self.created_topics[d.name] = topic
        return topic

    def _subscribe(self, d: Destination, queue_name: str, raw: bool,
                   filter_policy: Mapping[str, object] | None) -> None:
        topic = self.created_topics[d.name]  # config.py allows subscriptions on created topics only
        queue = self.created_queues[queue_name]  # ... and into created queues of the same FIFO-ness
        # Each subscription gets its own DLQ for messages SNS cannot deliver.
        dlq = self._messaging.subscription_dead_letter_queue(
            self, f"{d.name}-to-{queue_name}-dlq", name=self._config.subscription_dlq_name(d, queue_name), fifo=d.fifo,
            topic_arn=topic.topic_arn)
        self.subscription_dlqs[(d.name, queue_name)] = dlq
        subscription = topic.add_subscription(
            subscriptions.SqsSubscription(queue, raw_message_delivery=raw, dead_letter_queue=dlq))
        if filter_policy is not None:
            # The config holds a plain SNS filter policy; the L1 property takes it as-is, which keeps every
            # operator SNS supports ($or, prefix, numeric ...) without translating to SubscriptionFilter.
            cast(sns.CfnSubscription, subscription.node.default_child).filter_policy = dict(filter_policy)
        self._delivering_topics.setdefault(queue_name, []).append(topic.topic_arn)

    def restrict_senders(self, *, bridge_role_arn: str, producer_role_arns: Mapping[str, str]) -> None:
        """Let only the bridge (if it routes there), producers with `direct_send_to`, subscribed topics and the
        operators (`bridge replay` of the queue's DLQs; not into a signed-only queue) send to each created queue;
        let only the bridge (if it routes there) publish to each created topic."""
        routed = {d.name for d in self._config.routed_destinations()}
        for name, queue in self.created_queues.items():
            principals = [bridge_role_arn] if name in routed else []
            principals += [producer_role_arns[p.name] for p in self._config.producers if name in p.direct_send_to]
            if not self._config.destination(name).accept_from:
                principals += self._config.settings.operator_role_arns
            SecureMessaging.restrict_senders(queue, principal_arns=principals,
                                             topic_arns=self._delivering_topics.get(name, []))
        # Producers never publish to topics directly, so only the bridge (where it routes) may.
        for name, topic in self.created_topics.items():
            SecureMessaging.restrict_publishers(topic, principal_arns=[bridge_role_arn] if name in routed else [])
            endpoints = [self.created_queues[s.queue].queue_arn for s in self._config.destination(name).subscriptions]
            SecureMessaging.restrict_subscribers(topic, endpoint_arns=endpoints)
