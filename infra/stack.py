"""The bridge stack: composes one construct per capability and publishes the addresses as outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from infra.config_document import ConfigDocument
from infra.console_events import StageSource, select_console_events
from infra.constructs.alarms import BridgeAlarms
from infra.constructs.audit import AuditFanout
from infra.constructs.bridge_function import BridgeFunction, stage_function_package
from infra.constructs.checkpoints import CheckpointTable
from infra.constructs.claim_check import ClaimCheckStorage
from infra.constructs.dashboard import BridgeDashboard
from infra.constructs.destinations import Destinations
from infra.constructs.failure_storage import FailureStorage
from infra.constructs.kafka_source import KafkaEventSources
from infra.constructs.log_queries import SavedLogQueries
from infra.constructs.messaging import SecureMessaging
from infra.constructs.operator_access import OperatorAccess, replayed_dlqs
from infra.constructs.producers import ProducerAccess
from infra.constructs.rollout import SafeRollout
from infra.constructs.signing_keys import SigningKeyProtection
from infra.constructs.test_events import ConsoleTestEvents, load_manifest, load_test_events

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POWERTOOLS_LAYER_VERSION = 27

# Restrict the key-policy statement SqsSubscription adds for SNS to the subscribed topic.
_FEATURE_FLAGS = {"@aws-cdk/aws-sns-subscriptions:restrictSqsDescryption": True,
                  # A new Powertools layer version publishes a new function version (and so a rollout) too.
                  "@aws-cdk/aws-lambda:recognizeLayerVersion": True}


@dataclass(frozen=True)
class StackOptions:
    """Deployment choices that are not part of the bridge configuration (CDK context in app.py)."""

    lambda_source_dir: Path = REPO_ROOT / "lambdas" / "bridge"
    staging_dir: Path = REPO_ROOT / "build" / "lambda-package"
    events_dir: Path = REPO_ROOT / "events"
    test_events: bool = True
    create_test_event_registry: bool = False
    powertools_layer_version: int = DEFAULT_POWERTOOLS_LAYER_VERSION
    reserved_concurrency: int | None = None
    tags: dict[str, str] = field(default_factory=dict)


def stack_name(name: str, environment: str) -> str:
    """`KafkaBridge-<name>-<environment>`: the stages of one bridge are separate stacks (at most 69 characters
    of CloudFormation's 128, from the config's name and environment limits)."""
    return f"KafkaBridge-{name}-{environment}"


class BridgeStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, loaded: ConfigDocument,
                 options: StackOptions = StackOptions(), **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        for flag, value in _FEATURE_FLAGS.items():
            self.node.set_context(flag, value)
        config = loaded.config
        # the config fields whose roles the resource policies list: named in a policy-size problem's fix
        self.policy_fields = {"settings.operator_role_arns": list(config.settings.operator_role_arns),
                              **{f"destinations.{d.name}.consumers": list(d.consumers) for d in config.destinations}}

        created_topic_names = [d.physical_name(config.prefix) for d in config.destinations
                               if d.type == "sns" and d.created] + [config.audit_topic_name]
        messaging = SecureMessaging(self, "Messaging", delivering_topic_names=created_topic_names)
        destinations = Destinations(self, "Destinations", config=config, messaging=messaging)
        storage = FailureStorage(self, "FailureStorage", config=config, messaging=messaging)
        checkpoints = CheckpointTable(self, "Checkpoints", config=config) if config.settings.checkpoints else None
        audit = AuditFanout(self, "Audit", config=config, messaging=messaging)
        producers = ProducerAccess(self, "Producers", config=config, queues=destinations.queues,
                                   queue_key=messaging.queue_key)

        claim_check = ClaimCheckStorage(self, "ClaimCheck", config=config) if config.claim_check else None
        routed = config.routed_destinations()
        trusted = {p for d in config.destinations for p in d.accept_from}
        package = stage_function_package(options.lambda_source_dir, loaded.document,
                                         options.staging_dir / config.prefix)
        bridge = BridgeFunction(
            self, "Bridge",
            config=config,
            package_dir=package,
            send_to=[destinations.queues[d.name] for d in routed if d.type == "sqs"] + [storage.bridge_dlq],
            publish_to=[destinations.topics[d.name] for d in routed if d.type == "sns"] + [audit.topic],
            encryption_keys=messaging.keys,
            signing_secrets=[s for name, s in producers.signing_secrets.items() if name in trusted],
            signing_secret_key=producers.secret_key if trusted else None,
            parking_bucket=storage.parking_bucket,
            checkpoint_table=checkpoints.table if checkpoints else None,
            checkpoint_key=checkpoints.key if checkpoints else None,
            parking_key=storage.parking_key,
            powertools_layer_version=options.powertools_layer_version,
            reserved_concurrency=options.reserved_concurrency,
            claim_check_bucket=claim_check.bucket if claim_check else None,
        )
        # the stage's retention (config deployment.log_retention_days: longer in production)
        cast(logs.CfnLogGroup, bridge.log_group.node.default_child).retention_in_days = \
            config.deployment.log_retention_days
        destinations.restrict_senders(
            bridge_role_arn=bridge.role.role_arn,
            producer_role_arns={name: role.role_arn for name, role in producers.roles.items()})
        if claim_check is not None:
            claim_check.restrict_writers(bridge_role_arn=bridge.role.role_arn)
        SecureMessaging.restrict_senders(storage.bridge_dlq, principal_arns=[bridge.role.role_arn], topic_arns=[])
        storage.restrict_access(bridge_role_arn=bridge.role.role_arn,
                                reader_role_arns=config.settings.operator_role_arns)
        if producers.secret_key is not None:
            keys = SigningKeyProtection(self, "SigningKeys", config=config, secrets=producers.signing_secrets,
                                        key=producers.secret_key, package_dir=package, log_key=bridge.log_key)
            keys.restrict_access(producer_role_arns={n: r.role_arn for n, r in producers.roles.items()},
                                 bridge_role_arn=bridge.role.role_arn,
                                 operator_role_arns=config.settings.operator_role_arns)
        SecureMessaging.restrict_publishers(audit.topic, principal_arns=[bridge.role.role_arn])
        # The mappings invoke the `live` alias, which CodeDeploy shifts to each new version (and back).
        rollout = SafeRollout(self, "Rollout", config=config, function=bridge.function, bridge_dlq=storage.bridge_dlq)
        OperatorAccess(self, "OperatorAccess", operator_role_arns=config.settings.operator_role_arns,
                       bridge_dlq=storage.bridge_dlq, bridge_dlq_name=config.bridge_dlq_name,
                       queue_key=messaging.queue_key, parking_bucket=storage.parking_bucket,
                       parking_key=storage.parking_key, alias=rollout.alias,
                       replayed=replayed_dlqs(config, destinations, audit))
        source = KafkaEventSources(self, "KafkaSource", config=config, function=rollout.alias,
                                   failure_bucket=storage.parking_bucket)
        alarms = BridgeAlarms(self, "Alarms", config=config, function=bridge.function, mappings=source.mappings,
                              service_name=bridge.service_name, metrics_namespace=bridge.metrics_namespace)
        SavedLogQueries(self, "LogQueries", config=config, log_group=bridge.log_group)
        dashboard = BridgeDashboard(self, "Dashboard", config=config, function=bridge.function,
                                    mappings=source.mappings, alarms=alarms.alarms, service_name=bridge.service_name,
                                    metrics_namespace=bridge.metrics_namespace,
                                    extra_alarms=[rollout.errors_alarm, rollout.parked_alarm])

        events = load_test_events(options.events_dir) if options.test_events else {}
        src = config.source
        stage_source = StageSource(src.kind, src.cluster_arn, tuple(src.bootstrap_servers))
        self.console_events = select_console_events(events, load_manifest(options.events_dir),
                                                    production=config.production, source=stage_source)
        if self.console_events.shipped:
            ConsoleTestEvents(self, "ConsoleTestEvents", function=bridge.function, selection=self.console_events,
                              create_registry=options.create_test_event_registry)

        self._outputs(destinations.queues, destinations.topics)
        CfnOutput(self, "BridgeDlqUrl", value=storage.bridge_dlq.queue_url, description="Bridge DLQ URL")
        CfnOutput(self, "AuditTopicArn", value=audit.topic.topic_arn, description="Audit topic ARN")
        CfnOutput(self, "AuditQueueUrl", value=audit.queue.queue_url, description="Audit monitoring queue URL")
        CfnOutput(self, "ParkingBucketName", value=storage.parking_bucket.bucket_name,
                  description="Parking bucket (oversized parked records, failed batches)")
        CfnOutput(self, "FunctionName", value=bridge.function.function_name, description="Bridge function")
        if claim_check is not None:
            CfnOutput(self, "ClaimCheckBucketName", value=claim_check.bucket.bucket_name,
                      description="Claim-check bucket: consumers need s3:GetObject on claim-check/<destination>/*")
        CfnOutput(self, "FunctionAliasArn", value=rollout.alias.function_arn,
                  description="The live alias the mappings invoke (bridge smoke invokes it too)")
        CfnOutput(self, "AlarmTopicArn", value=alarms.topic.topic_arn, description="Topic the alarms notify")
        CfnOutput(self, "DashboardName", value=dashboard.dashboard.dashboard_name,
                  description="CloudWatch dashboard of the bridge")
        for name, role in producers.roles.items():
            CfnOutput(self, f"ProducerRoleArn-{name}", value=role.role_arn,
                      description=f"Role producer {name} assumes")

    def _outputs(self, queues: dict[str, sqs.IQueue], topics: dict[str, sns.ITopic]) -> None:
        for name, queue in queues.items():
            CfnOutput(self, f"QueueUrl-{name}", value=queue.queue_url, description=f"Destination queue {name}")
        for name, topic in topics.items():
            CfnOutput(self, f"TopicArn-{name}", value=topic.topic_arn, description=f"Destination topic {name}")
