"""Event-source mappings: one per Kafka topic (CDK and Lambda take one topic per mapping)."""

from __future__ import annotations

from typing import Any, cast

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as sources
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from bridge.config import BridgeConfig, Source
from bridge.filter_pushdown import topic_filters
from constructs import Construct

_AUTH = {
    "sasl_scram_256": sources.AuthenticationMethod.SASL_SCRAM_256_AUTH,
    "sasl_scram_512": sources.AuthenticationMethod.SASL_SCRAM_512_AUTH,
    "mtls": sources.AuthenticationMethod.CLIENT_CERTIFICATE_TLS_AUTH,
}
# Every metric group a Kafka mapping can publish (botocore lambda EventSourceMappingMetricList: at most 3).
ESM_METRICS = (lambda_.MetricType.EVENT_COUNT, lambda_.MetricType.ERROR_COUNT, lambda_.MetricType.KAFKA_METRICS)
_SOURCE_ACCESS_TYPE = {
    "sasl_scram_256": "SASL_SCRAM_256_AUTH",
    "sasl_scram_512": "SASL_SCRAM_512_AUTH",
    "mtls": "CLIENT_CERTIFICATE_TLS_AUTH",
}


class KafkaEventSources(Construct):
    """Consumes every `source.topics` entry with its own consumer group; failed batches go to S3."""

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig, function: lambda_.IFunction,
                 failure_bucket: s3.IBucket) -> None:
        super().__init__(scope, construct_id)
        src = config.source
        secret = (secretsmanager.Secret.from_secret_complete_arn(self, "KafkaCredentials", src.secret_arn)
                  if src.kind == "self-managed" and src.secret_arn else None)
        self.mappings: dict[str, lambda_.EventSourceMapping] = {}
        registry = _schema_registry(self, src)
        for topic in src.topics:
            common = _common_props(src, topic, failure_bucket)
            if registry is not None:
                common["schema_registry_config"] = registry
            pushdown = topic_filters(config, topic)
            if pushdown.patterns:
                # records no route of this topic selects are dropped by Lambda (FilteredOutEventCount)
                common["filters"] = [{"pattern": p} for p in pushdown.criteria()]
            event_source: lambda_.IEventSource
            if src.kind == "msk":
                assert src.cluster_arn is not None
                event_source = sources.ManagedKafkaEventSource(cluster_arn=src.cluster_arn, **common)
            else:
                assert src.auth is not None
                event_source = sources.SelfManagedKafkaEventSource(
                    bootstrap_servers=list(src.bootstrap_servers), authentication_method=_AUTH[src.auth],
                    secret=secret, **common)
            before = {c.node.path for c in function.node.children}
            function.add_event_source(event_source)
            mapping = next(c for c in function.node.children
                           if c.node.path not in before and isinstance(c, lambda_.EventSourceMapping))
            self.mappings[topic] = mapping
            if src.kind == "self-managed":
                _set_access(mapping, src)


def _schema_registry(scope: Construct, src: Source) -> lambda_.ISchemaRegistry | None:
    """The mapping decodes schema-registry records into JSON, so the function routes on their fields."""
    registry = src.schema_registry
    if registry is None:
        return None
    attribute = {"key": lambda_.KafkaSchemaValidationAttribute.KEY,
                 "value": lambda_.KafkaSchemaValidationAttribute.VALUE}
    validation = [lambda_.KafkaSchemaValidationConfig(attribute=attribute[a]) for a in registry.attributes]
    if registry.kind == "glue":
        return sources.GlueSchemaRegistry(schema_registry_arn=registry.uri,
                                          event_record_format=lambda_.EventRecordFormat.JSON,
                                          schema_validation_configs=validation)
    assert registry.secret_arn is not None
    return sources.ConfluentSchemaRegistry(
        schema_registry_uri=registry.uri, event_record_format=lambda_.EventRecordFormat.JSON,
        authentication_type=_REGISTRY_AUTH[registry.auth or "basic"],
        secret=secretsmanager.Secret.from_secret_complete_arn(scope, "SchemaRegistryCredentials",
                                                              registry.secret_arn),
        schema_validation_configs=validation)


_REGISTRY_AUTH = {
    "basic": lambda_.KafkaSchemaRegistryAccessConfigType.BASIC_AUTH,
    "client_certificate": lambda_.KafkaSchemaRegistryAccessConfigType.CLIENT_CERTIFICATE_TLS_AUTH,
}


def _common_props(src: Source, topic: str, failure_bucket: s3.IBucket) -> dict[str, Any]:
    props: dict[str, Any] = {
        "topic": topic,
        "consumer_group_id": src.group_id_for(topic),
        "batch_size": src.batch_size,
        "max_batching_window": Duration.seconds(src.batching_window_seconds),
        "starting_position": lambda_.StartingPosition[src.starting_position],
        # S3 keeps the failed records themselves; SQS/SNS on-failure destinations get metadata only
        "on_failure": sources.S3OnFailureDestination(failure_bucket),
        # the mapping's own metrics (polled, filtered, invoked, failed events; Kafka consumer metrics):
        # what the dashboard shows beside the function's, and what the runbook reads when lag grows
        "metrics_config": lambda_.MetricsConfig(metrics=list(ESM_METRICS)),
    }
    if src.starting_position_timestamp is not None:
        props["starting_position_timestamp"] = src.starting_position_timestamp
    if src.provisioned_pollers is not None:
        props["provisioned_poller_config"] = sources.ProvisionedPollerConfig(
            minimum_pollers=src.provisioned_pollers.minimum, maximum_pollers=src.provisioned_pollers.maximum)
    if src.retry is not None:
        props.update(
            retry_attempts=src.retry.max_attempts,
            max_record_age=Duration.seconds(src.retry.max_record_age_seconds),
            bisect_batch_on_error=src.retry.bisect_on_error,
            # the handler returns batchItemFailures; only provisioned mode honours them for Kafka
            report_batch_item_failures=True,
        )
    return props


def _set_access(mapping: lambda_.EventSourceMapping, src: Source) -> None:
    """Self-managed Kafka: authentication plus every configured subnet and security group.

    SelfManagedKafkaEventSource takes a single security group and an IVpc (which cannot be imported
    offline), so the list is written on the L1 resource instead.
    """
    assert src.auth is not None
    assert src.secret_arn is not None
    access = [{"Type": _SOURCE_ACCESS_TYPE[src.auth], "URI": src.secret_arn}]
    access += [{"Type": "VPC_SUBNET", "URI": f"subnet:{s}"} for s in src.network.subnet_ids]
    access += [{"Type": "VPC_SECURITY_GROUP", "URI": f"security_group:{g}"} for g in src.network.security_group_ids]
    cast(lambda_.CfnEventSourceMapping, mapping.node.default_child).add_property_override(
        "SourceAccessConfigurations", access)
