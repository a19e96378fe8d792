"""The stack's CloudWatch dashboard: what went in, where it went, what was parked, how far behind.

Rows, top to bottom: alarm status; records in / delivered per destination / parked per reason;
offset lag and the mappings' own event counts per topic; duration against the timeout and
concurrency; the depth of every dead-letter queue. Lag and mapping metrics are Metrics Insights
queries on the mapping's EventSourceMappingUUID, like the lag alarms (infra/constructs/alarms.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_lambda as lambda_
from bridge.config import BridgeConfig
from bridge.parking import PARK_REASONS
from constructs import Construct

from infra.constructs.alarms import PERIOD, BridgeAlarm

WIDGETS_MAX = 500  # CloudWatch dashboard body: 0-500 widgets
ALARMS_PER_STATUS_WIDGET = 100  # an alarm status widget lists at most 100 alarms
# Events a Kafka mapping counts with MetricsConfig EventCount (Lambda event source mapping metrics).
MAPPING_EVENT_METRICS = ("PolledEventCount", "FilteredOutEventCount", "InvokedEventCount", "FailedInvokeEventCount")


class BridgeDashboard(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig, function: lambda_.IFunction,
                 mappings: Mapping[str, lambda_.EventSourceMapping], alarms: Sequence[BridgeAlarm],
                 service_name: str, metrics_namespace: str,
                 extra_alarms: Sequence[cloudwatch.IAlarm] = ()) -> None:
        """`extra_alarms`: alarms other constructs own (e.g. a deployment's rollback alarms), shown too."""
        super().__init__(scope, construct_id)
        self._namespace = metrics_namespace
        self._service = service_name
        all_alarms: list[cloudwatch.IAlarm] = [a.alarm for a in alarms] + list(extra_alarms)
        # HIGH first, so what needs action now is top left
        all_alarms.sort(key=lambda a: 0 if any(b.alarm is a and b.severity == "HIGH" for b in alarms) else 1)
        rows: list[list[cloudwatch.IWidget]] = []
        for i in range(0, len(all_alarms), ALARMS_PER_STATUS_WIDGET):
            rows.append([cloudwatch.AlarmStatusWidget(
                title=f"Alarms of {config.prefix}" + (f" ({i // ALARMS_PER_STATUS_WIDGET + 1})" if i else ""),
                alarms=all_alarms[i:i + ALARMS_PER_STATUS_WIDGET], width=24,
                height=max(3, 1 + (min(len(all_alarms) - i, ALARMS_PER_STATUS_WIDGET) + 3) // 4))])

        routed = [d.name for d in config.routed_destinations()]
        rows.append([
            self._graph("Records in / skipped", [self._metric("RecordsIn", "records in"),
                                                 self._metric("RecordsSkipped", "skipped")]),
            self._graph("Delivered per destination",
                        [self._metric("RecordsDelivered", d, destination=d) for d in routed]),
            self._graph("Parked per reason",
                        [self._metric("RecordsParked", r, reason=r) for r in PARK_REASONS]),
        ])
        rows.append([
            self._graph("Offset lag per topic (records)",
                        [_insights("MAX", "OffsetLag", m, t) for t, m in mappings.items()], width=24),
        ])
        # per mapping: polled, filtered out (filter pushdown), invoked, failed; three topics to a row
        event_graphs: list[cloudwatch.IWidget] = [
            self._graph(f"Mapping events: {t}",
                        [_insights("SUM", name, m, name.removesuffix("EventCount")) for name in MAPPING_EVENT_METRICS])
            for t, m in mappings.items()]
        rows += [event_graphs[i:i + 3] for i in range(0, len(event_graphs), 3)]
        timeout_ms = config.settings.timeout_seconds * 1000
        rows.append([
            cloudwatch.GraphWidget(
                title="Duration (ms) against the timeout", width=8,
                left=[function.metric_duration(period=PERIOD, statistic=s, label=s) for s in ("Average", "p99",
                                                                                               "Maximum")],
                left_annotations=[cloudwatch.HorizontalAnnotation(value=timeout_ms, label="timeout",
                                                                  color=cloudwatch.Color.RED)]),
            self._graph("Concurrency and invocations",
                        [cloudwatch.Metric(namespace="AWS/Lambda", metric_name="ConcurrentExecutions",
                                           dimensions_map={"FunctionName": function.function_name},
                                           statistic="Maximum", period=PERIOD, label="concurrent (max)"),
                         function.metric_invocations(period=PERIOD, statistic="Sum", label="invocations")]),
            self._graph("Errors and throttles",
                        [function.metric_errors(period=PERIOD, statistic="Sum", label="errors"),
                         function.metric_throttles(period=PERIOD, statistic="Sum", label="throttles"),
                         self._metric("ParkingFailed", "parking failed"),
                         self._metric("AuditPublishFailed", "audit not published"),
                         self._metric("FifoOrderBreaks", "FIFO order breaks"),
                         self._metric("OutageRetries", "outage retries"),
                         self._metric("CheckpointErrors", "checkpoint errors")]),
        ])
        rows.append([
            self._graph("Dead-letter queue depths (messages)",
                        [_depth(q) for q in dead_letter_queue_names(config)], width=16),
            self._graph("Oldest message (s)",
                        [_age(config.bridge_dlq_name, "bridge DLQ"), _age(config.audit_queue_name, "audit monitor")]),
        ])
        widgets = sum(len(r) for r in rows)
        if widgets > WIDGETS_MAX:
            raise ValueError(f"dashboard {config.name}: {widgets} widgets, CloudWatch takes {WIDGETS_MAX}")
        self.dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=dashboard_name(config),
                                              default_interval=Duration.hours(6), widgets=rows)

    def _metric(self, name: str, label: str, **dimensions: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(namespace=self._namespace, metric_name=name, statistic="Sum", period=PERIOD,
                                 dimensions_map={"service": self._service, **dimensions}, label=label)

    @staticmethod
    def _graph(title: str, metrics: Sequence[cloudwatch.IMetric], width: int = 8) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(title=title, left=list(metrics), width=width, height=6)


def dashboard_name(config: BridgeConfig) -> str:
    """Dashboard names take letters, digits, '-' and '_' (1-255) and are unique per account: the bridge's name
    and stage (`<name>-<environment>`) is one."""
    return config.prefix


def dead_letter_queue_names(config: BridgeConfig) -> list[str]:
    """Every dead-letter queue the stack creates, the bridge DLQ first."""
    names = [config.bridge_dlq_name]
    names += [d.dlq_physical_name(config.prefix) for d in config.destinations if d.type == "sqs" and d.created]
    names += [config.subscription_dlq_name(d, s.queue) for d in config.destinations for s in d.subscriptions]
    return [*names, config.audit_queue_dlq_name, config.audit_subscription_dlq_name]


def _depth(queue_name: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace="AWS/SQS", metric_name="ApproximateNumberOfMessagesVisible",
                             dimensions_map={"QueueName": queue_name}, statistic="Maximum", period=PERIOD,
                             label=queue_name)


def _age(queue_name: str, label: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage",
                             dimensions_map={"QueueName": queue_name}, statistic="Maximum", period=PERIOD,
                             label=label)


def _insights(function: str, metric: str, mapping: lambda_.EventSourceMapping, label: str) -> cloudwatch.IMetric:
    """One mapping's metric as a Metrics Insights query (the metric's full dimension set does not matter)."""
    where = f"EventSourceMappingUUID = '{mapping.event_source_mapping_id}'"
    query = f'SELECT {function}({metric}) FROM "AWS/Lambda" WHERE {where}'  # noqa: S608 - Metrics Insights, no input
    return cloudwatch.MathExpression(expression=query, using_metrics={}, period=PERIOD, label=label)
