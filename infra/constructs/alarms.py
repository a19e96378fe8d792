"""CloudWatch alarms from the config (`alarms:`), and the topic they notify.

One alarm per thing an operator must act on; docs/runbook.md has a section per alarm id (what it
means, the saved Logs Insights query to look with, the `bridge` command that fixes it). Alarm names
are `<bridge name>-<environment>-<id>`; the description starts with the severity (HIGH or WARN), so an e-mail
subject or a pager rule can tell them apart.

Queue alarms name queues by their configured names (the stack names every queue it creates), so
they need no reference to the queue constructs. Existing destinations (`arn:`) have DLQs the stack
does not know: their owners alarm on them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from bridge.config import BridgeConfig
from bridge.parking import PARK_REASONS, TRUST_PARK_REASONS
from constructs import Construct

Severity = Literal["HIGH", "WARN"]
PERIOD = Duration.minutes(5)
OFFSET_LAG_PERIODS = 3  # lag must stay above the bound for 15 minutes: pollers scale up within about 3
ALARM_NAME_MAX = 255  # CloudWatch PutMetricAlarm AlarmName (botocore cloudwatch model)
ALARM_DESCRIPTION_MAX = 1024
RUNBOOK = "docs/runbook.md"


@dataclass(frozen=True)
class BridgeAlarm:
    """One alarm with what the runbook and the dashboard need to know about it."""

    id: str
    severity: Severity
    meaning: str
    alarm: cloudwatch.Alarm


def alarm_topic_name(config: BridgeConfig) -> str:
    return f"{config.prefix}-alarms"


class BridgeAlarms(Construct):
    """Every alarm the config asks for, each notifying the alarm topic when it fires and when it clears."""

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig, function: lambda_.IFunction,
                 mappings: Mapping[str, lambda_.EventSourceMapping], service_name: str,
                 metrics_namespace: str) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._service = service_name
        self._namespace = metrics_namespace
        settings = config.alarms
        self.topic = self._topic(config)
        self.alarms: list[BridgeAlarm] = []

        # Parked records: the bridge DLQ, by reason, and the trust reasons together.
        self._queue_not_empty("bridge-dlq-not-empty", "WARN", config.bridge_dlq_name,
                              "Records were parked in the bridge DLQ: they reached no destination.")
        self._add("bridge-dlq-oldest-message", "HIGH",
                  f"A parked record has waited over {settings.bridge_dlq_max_age_seconds} s in the bridge DLQ "
                  "(14 days retention): fix the cause and redrive it before it expires.",
                  _sqs(config.bridge_dlq_name, "ApproximateAgeOfOldestMessage"),
                  settings.bridge_dlq_max_age_seconds)
        for reason in PARK_REASONS:
            if reason not in TRUST_PARK_REASONS:
                self._add(f"parked-{reason.replace('_', '-')}", "WARN",
                          f"Records were parked with reason {reason}.", self._parked(reason), settings.parked_records)
        trust = {f"m{i}": self._parked(r) for i, r in enumerate(TRUST_PARK_REASONS)}
        self._add("parked-untrusted", "HIGH",
                  f"Records failed the trust checks ({', '.join(TRUST_PARK_REASONS)}): a producer without a valid "
                  "signature or permission wrote to a topic feeding a protected destination.",
                  cloudwatch.MathExpression(expression=" + ".join(f"FILL({k}, 0)" for k in trust),
                                            using_metrics=trust, period=PERIOD, label="untrusted records parked"),
                  settings.parked_records)
        self._add("parking-failed", "HIGH",
                  "Records could be neither delivered nor parked: the batch is retried and its partition waits.",
                  self._bridge_metric("ParkingFailed"), 1)

        self._add("fifo-order-break", "WARN",
                  "A FIFO destination accepted a later message of a group after an earlier one failed: the "
                  "rest of that group was parked (delivery_failed) to keep its order.",
                  self._bridge_metric("FifoOrderBreaks"), 1)
        self._add("outage-retries", "WARN",
                  "Batches were failed back to the event-source mapping because a destination or Secrets "
                  "Manager was down (settings.outage_retry_seconds); their partitions wait.",
                  self._bridge_metric("OutageRetries"), 1)

        if config.settings.checkpoints:
            self._add("checkpoint-errors", "WARN",
                      "The checkpoint table could not be read or written: delivery went on, but a redelivered "
                      "batch may send duplicates.", self._bridge_metric("CheckpointErrors"), 1)

        # Destination, subscription and audit dead-letter queues.
        for d in config.destinations:
            if d.created and d.type == "sqs":
                self._queue_not_empty(f"destination-dlq-{d.name}", "WARN", d.dlq_physical_name(config.prefix),
                                      f"Consumers of {d.name} failed a message {d.max_receive_count} times.",
                                      runbook_section="destination-dlq")
            for s in d.subscriptions:
                self._queue_not_empty(f"subscription-dlq-{d.name}-to-{s.queue}", "WARN",
                                      config.subscription_dlq_name(d, s.queue),
                                      f"SNS could not deliver messages of {d.name} into {s.queue}.",
                                      runbook_section="subscription-dlq")
        self._queue_not_empty("audit-monitor-dlq", "WARN", config.audit_queue_dlq_name,
                              "The audit consumer failed audit events repeatedly.")
        self._queue_not_empty("audit-subscription-dlq", "WARN", config.audit_subscription_dlq_name,
                              "SNS could not deliver audit events into the audit monitor queue.")
        self._add("audit-monitor-oldest-message", "WARN",
                  f"No one has consumed an audit event for {settings.audit_queue_max_age_seconds} s.",
                  _sqs(config.audit_queue_name, "ApproximateAgeOfOldestMessage"),
                  settings.audit_queue_max_age_seconds)
        self._add("audit-not-published", "WARN",
                  "Batches were delivered but their audit events could not be published.",
                  self._bridge_metric("AuditPublishFailed"), 1)

        # The function and its event-source mappings.
        timeout_ms = config.settings.timeout_seconds * 1000
        self._add("function-errors", "HIGH",
                  "Invocations failed: Lambda retries the batch and its partition does not move.",
                  function.metric_errors(period=PERIOD, statistic="Sum"), settings.function_errors)
        self._add("function-throttles", "WARN", "Invocations were throttled: records wait in Kafka.",
                  function.metric_throttles(period=PERIOD, statistic="Sum"), settings.throttles)
        self._add("function-duration-near-timeout", "WARN",
                  f"An invocation ran for {settings.duration_percent_of_timeout}% of the "
                  f"{config.settings.timeout_seconds} s timeout; a timeout retries the whole batch.",
                  function.metric_duration(period=PERIOD, statistic="Maximum"),
                  timeout_ms * settings.duration_percent_of_timeout // 100)
        for topic, mapping in mappings.items():
            self._add(f"offset-lag-{_id_part(topic)}", "WARN",
                      f"The mapping for topic {topic} is over {settings.offset_lag} records behind for "
                      f"{OFFSET_LAG_PERIODS * PERIOD.to_minutes()} minutes.",
                      offset_lag(mapping), settings.offset_lag, evaluation_periods=OFFSET_LAG_PERIODS,
                      runbook_section="offset-lag")

    # --- building blocks ---------------------------------------------------------------------------

    def _topic(self, config: BridgeConfig) -> sns.ITopic:
        if config.alarms.topic_arn:
            return sns.Topic.from_topic_arn(self, "Topic", config.alarms.topic_arn)
        key = kms.Key(self, "TopicKey", enable_key_rotation=True,
                      description=f"Encrypts the alarm topic of Kafka bridge {config.name}")
        # CloudWatch publishes alarm notifications into the encrypted topic (CloudWatch documentation:
        # the key policy must let cloudwatch.amazonaws.com use the key). In a key policy "*" is this key.
        key.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowCloudWatchAlarmsToPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"]))
        topic = sns.Topic(self, "Topic", topic_name=alarm_topic_name(config), master_key=key, enforce_ssl=True)
        own_alarms = Stack.of(self).format_arn(service="cloudwatch", resource="alarm",
                                               resource_name=f"{config.prefix}-*",
                                               arn_format=ArnFormat.COLON_RESOURCE_NAME)
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="AllowThisBridgesAlarms", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
            actions=["sns:Publish"], resources=[topic.topic_arn],
            conditions={"ArnLike": {"aws:SourceArn": own_alarms},
                        "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}}))
        # Nobody else publishes: a request without this bridge's alarm as its source (any IAM principal,
        # whose requests carry no aws:SourceArn) is denied, so a fake "OK" cannot drown a real alarm.
        topic.add_to_resource_policy(iam.PolicyStatement(
            sid="OnlyThisBridgesAlarmsPublish", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
            actions=["sns:Publish"], resources=[topic.topic_arn],
            conditions={"ArnNotLike": {"aws:SourceArn": own_alarms}}))
        for address in config.alarms.email:
            topic.add_subscription(subscriptions.EmailSubscription(address))
        return topic

    def _add(self, alarm_id: str, severity: Severity, meaning: str, metric: cloudwatch.IMetric, threshold: float,
             *, evaluation_periods: int = 1, runbook_section: str | None = None) -> None:
        """`runbook_section`: the docs/runbook.md heading, when one section covers a family of alarms."""
        name = f"{self._config.prefix}-{alarm_id}"
        description = f"{severity}: {meaning} Runbook: {RUNBOOK}#{runbook_section or alarm_id}"
        if len(name) > ALARM_NAME_MAX or len(description) > ALARM_DESCRIPTION_MAX:
            raise ValueError(f"alarm {name!r}: name or description over the CloudWatch limits")
        alarm = cloudwatch.Alarm(
            self, alarm_id, alarm_name=name, alarm_description=description, metric=metric, threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            # no data means nothing happened: no parked record, no invocation, an empty queue
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            actions_enabled=self._config.alarms.enabled)
        alarm.add_alarm_action(actions.SnsAction(self.topic))
        alarm.add_ok_action(actions.SnsAction(self.topic))
        self.alarms.append(BridgeAlarm(alarm_id, severity, meaning, alarm))

    def _queue_not_empty(self, alarm_id: str, severity: Severity, queue_name: str, meaning: str,
                         runbook_section: str | None = None) -> None:
        self._add(alarm_id, severity, f"{meaning} Queue {queue_name} is not empty.",
                  _sqs(queue_name, "ApproximateNumberOfMessagesVisible"), 1, runbook_section=runbook_section)

    def _bridge_metric(self, name: str, **dimensions: str) -> cloudwatch.Metric:
        """A metric the handler emits (bridge.handler): namespace and `service` dimension from the function."""
        return cloudwatch.Metric(namespace=self._namespace, metric_name=name,
                                 dimensions_map={"service": self._service, **dimensions}, statistic="Sum",
                                 period=PERIOD)

    def _parked(self, reason: str) -> cloudwatch.Metric:
        return self._bridge_metric("RecordsParked", reason=reason)


def _sqs(queue_name: str, metric_name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace="AWS/SQS", metric_name=metric_name, dimensions_map={"QueueName": queue_name},
                             statistic="Maximum", period=PERIOD)


def offset_lag(mapping: lambda_.EventSourceMapping) -> cloudwatch.IMetric:
    """Lambda's OffsetLag of one mapping, as a Metrics Insights query on its EventSourceMappingUUID.

    The query matches the metric whatever other dimensions Lambda publishes it with, so the alarm does
    not depend on the exact dimension set (which the Lambda documentation does not spell out for it).
    """
    uuid = mapping.event_source_mapping_id
    # a CloudWatch Metrics Insights query, not SQL; the UUID is a CloudFormation reference, not input
    query = f"SELECT MAX(OffsetLag) FROM \"AWS/Lambda\" WHERE EventSourceMappingUUID = '{uuid}'"  # noqa: S608
    return cloudwatch.MathExpression(expression=query, using_metrics={}, period=PERIOD, label="OffsetLag")


def _id_part(text: str) -> str:
    """A Kafka topic name as part of a construct id / alarm name (letters, digits, '-')."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in text)
