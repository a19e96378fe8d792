"""The bridge Lambda function: its package, its least-privilege role and its log group."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, Aws, Duration, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from bridge.config import BridgeConfig, config_to_json
from constructs import Construct

from infra.bytecode import compile_package
from infra.constructs.claim_check import OBJECTS as CLAIM_CHECK_OBJECTS
from infra.msk import MskArns
from infra.nag import acknowledge, acknowledge_checkov

HANDLER = "bridge.handler.lambda_handler"
CONFIG_FILE_NAME = "bridge_config.json"
POWERTOOLS_LAYER = "arn:aws:lambda:{region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-arm64:{version}"
POWERTOOLS_METRICS_NAMESPACE = "KafkaBridge"
# Where the event-source mapping writes failed batches in an S3 on-failure destination.
ESM_FAILURE_PREFIX = "aws/lambda/*"
PARKED_PREFIX = "parked/*"


def log_group_name(config: BridgeConfig, what: str) -> str:
    """The bridge's log groups, named up front so their key's policy can name them without a cycle."""
    return f"/kafka-bridge/{config.prefix}/{what}"


def log_group_key(scope: Construct, config: BridgeConfig) -> kms.Key:
    """A customer-managed key for the bridge's log groups: logs say which records were parked and why."""
    key = kms.Key(scope, "LogKey", enable_key_rotation=True, description=f"Encrypts Kafka bridge {config.name} logs")
    stack = Stack.of(scope)
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="CloudWatchLogsEncryptsTheBridgeLogGroups",
        principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],  # in a key policy "*" means this key
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": stack.format_arn(
            service="logs", resource="log-group", resource_name=log_group_name(config, "*"),
            arn_format=ArnFormat.COLON_RESOURCE_NAME)}}))
    return key


def glue_schemas_arn(registry_arn: str) -> str:
    """Every schema of a Glue registry: `arn:...:registry/<name>` -> `arn:...:schema/<name>/*`."""
    return registry_arn.replace(":registry/", ":schema/", 1) + "/*"


def stage_function_package(source_dir: Path, document: Mapping[str, Any], out_dir: Path,
                           compile_bytecode: bool = True) -> Path:
    """Write the function package: `bridge/` (local caches left out), `bridge_config.json` beside it, and
    bytecode compiled by the runtime's Python when this machine has one (infra/bytecode.py)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    shutil.copytree(source_dir, out_dir / "bridge", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (out_dir / CONFIG_FILE_NAME).write_text(config_to_json(document), encoding="utf-8")
    if compile_bytecode:
        compile_package(out_dir)
    return out_dir


class BridgeFunction(Construct):
    """The function and a role written as explicit statements on exactly the resources the bridge uses.

    The role is handed to the function without policy updates: the CDK event-source and destination
    helpers would otherwise attach the managed AWSLambdaMSKExecutionRole (Resource "*") and broad S3 grants.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: BridgeConfig,
        package_dir: Path,
        send_to: Sequence[sqs.IQueue],
        publish_to: Sequence[sns.ITopic],
        encryption_keys: Sequence[kms.IKey],
        signing_secrets: Sequence[secretsmanager.ISecret],
        signing_secret_key: kms.IKey | None,
        parking_bucket: s3.IBucket,
        parking_key: kms.IKey,
        powertools_layer_version: int,
        checkpoint_table: dynamodb.ITable | None = None,
        checkpoint_key: kms.IKey | None = None,
        reserved_concurrency: int | None = None,
        claim_check_bucket: s3.IBucket | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        super().__init__(scope, construct_id)
        # The service name is the bridge's name and stage (`<name>-<environment>`): it is the `service`
        # dimension of every metric the handler emits, so two bridges, or two stages of one, in one account
        # and Region keep their metrics (and alarms) apart.
        self.service_name = config.prefix
        self.metrics_namespace = POWERTOOLS_METRICS_NAMESPACE
        self.log_key = log_group_key(self, config)
        self.log_group = logs.LogGroup(self, "Logs", log_group_name=log_group_name(config, "function"),
                                       retention=log_retention, encryption_key=self.log_key)
        statements = [
            *self._delivery_statements(send_to, publish_to, encryption_keys, config),
            *self._secret_statements(signing_secrets, signing_secret_key, config),
            *self._storage_statements(parking_bucket, parking_key),
            *self._checkpoint_statements(checkpoint_table, checkpoint_key),
            *self._claim_check_statements(claim_check_bucket),
            *self._kafka_statements(config),
            *self._schema_registry_statements(config),
            *self._network_statements(),
            iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                resources=[self.log_group.log_group_arn]),
            # X-Ray has no resource-level permissions; "*" is the only resource it accepts.
            iam.PolicyStatement(sid="SendTraces", actions=["xray:PutTraceSegments", "xray:PutTelemetryRecords"],
                                resources=["*"]),
        ]
        # Inline on the role, so the function and its event-source mappings (which Lambda validates against
        # the role's permissions on creation) are created only after the permissions exist.
        self.role = iam.Role(self, "Role", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                             description=f"Kafka bridge {config.name}",
                             inline_policies={"bridge": iam.PolicyDocument(statements=statements)})
        acknowledge(self.role, "AwsSolutions-IAM5[Resource::*]",
                    "Two statements only: the event-source mapping's network interfaces (ec2 Create/Delete/"
                    "DescribeNetworkInterfaces, DescribeVpcs/Subnets/SecurityGroups, which Lambda validates on '*' "
                    "when it creates the mapping) and xray:PutTraceSegments/PutTelemetryRecords, which have no "
                    "resource-level permissions.")
        self._acknowledge_prefix(parking_bucket)
        if claim_check_bucket is not None:
            self._acknowledge_claim_check_prefix(claim_check_bucket)
        self._acknowledge_schemas(config)

        layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools",
            POWERTOOLS_LAYER.format(region=Aws.REGION, version=powertools_layer_version))
        self.function = lambda_.Function(
            self, "Function",
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.ARM_64,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(package_dir)),
            layers=[layer],
            role=self.role.without_policy_updates(),
            memory_size=config.settings.memory_mb,
            timeout=Duration.seconds(config.settings.timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            # SnapStart applies to published versions only (python3.12+; no provisioned concurrency, EFS
            # or ephemeral storage over 512 MB, none of which the bridge uses); docs/config.md.
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if config.settings.snapstart else None,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            reserved_concurrent_executions=reserved_concurrency,
            description=f"Kafka to SQS/SNS bridge {config.name}",
            environment={
                "BRIDGE_ACCOUNT_ID": Aws.ACCOUNT_ID,
                "BRIDGE_PARTITION": Aws.PARTITION,
                "BRIDGE_PARKING_BUCKET": parking_bucket.bucket_name,
                "POWERTOOLS_SERVICE_NAME": self.service_name,
                "POWERTOOLS_METRICS_NAMESPACE": POWERTOOLS_METRICS_NAMESPACE,
                **({"BRIDGE_CHECKPOINT_TABLE": checkpoint_table.table_name} if checkpoint_table else {}),
                # Lambda's active tracing stays on; the Powertools Tracer and its X-Ray SDK only on request
                **({} if config.settings.tracing else {"POWERTOOLS_TRACE_DISABLED": "true"}),
                **({"BRIDGE_SNAPSTART": "true"} if config.settings.snapstart else {}),
                **({} if config.settings.direct_sends else {"BRIDGE_DIRECT_SENDS": "off"}),
                **({"BRIDGE_CLAIM_CHECK_BUCKET": claim_check_bucket.bucket_name} if claim_check_bucket else {}),
            },
        )
        acknowledge_checkov(self.function, "CKV_AWS_116",
                            "The event-source mapping invokes the function synchronously, so an asynchronous-invoke "
                            "DLQ would never receive anything; records that cannot be delivered are parked in the "
                            "bridge DLQ and failed batches go to the mapping's S3 on-failure destination.")
        acknowledge_checkov(self.function, "CKV_AWS_117",
                            "The function calls only SQS, SNS, S3, Secrets Manager (and DynamoDB) APIs over TLS; "
                            "the brokers are reached by the event-source mapping from the cluster's subnets, not "
                            "by the function. A VPC would add NAT or endpoints and protect nothing it uses.")
        acknowledge_checkov(self.function, "CKV_AWS_115",
                            "Concurrency is bounded by the event-source mapping (one batch per partition at a time, "
                            "or provisioned_pollers.maximum); a reserved limit is available as -c "
                            "reserved_concurrency where an account needs one.")
        acknowledge_checkov(self.function, "CKV_AWS_173",
                            "The environment holds no secrets (account id, partition, bucket and table names, "
                            "Powertools names); Lambda encrypts it at rest with its own key.")
        acknowledge_checkov(self.role, "CKV_AWS_111",
                            "Two unconstrained write statements, both forced by AWS: the event-source mapping's "
                            "network interfaces (ec2:CreateNetworkInterface/DeleteNetworkInterface, validated on "
                            "'*' when Lambda creates the mapping) and X-Ray PutTraceSegments/PutTelemetryRecords, "
                            "which have no resource-level permissions.")
        acknowledge(self.function, "AwsSolutions-L1",
                    "python3.12 is pinned by the runtime contract together with the public Powertools layer "
                    "built for it (AWSLambdaPowertoolsPythonV3-python312-arm64); both move in one change.")

    @staticmethod
    def _delivery_statements(send_to: Sequence[sqs.IQueue], publish_to: Sequence[sns.ITopic],
                             keys: Sequence[kms.IKey], config: BridgeConfig) -> list[iam.PolicyStatement]:
        out = [iam.PolicyStatement(sid="SendToRoutedQueues", actions=["sqs:SendMessage"],
                                   resources=[q.queue_arn for q in send_to])]
        if publish_to:
            out.append(iam.PolicyStatement(sid="PublishToRoutedTopics", actions=["sns:Publish"],
                                           resources=[t.topic_arn for t in publish_to]))
        out.append(iam.PolicyStatement(sid="EncryptMessages", actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                       resources=[k.key_arn for k in keys]))
        # Existing queues and topics under their own customer-managed key: sends fail with KMS AccessDenied
        # unless the bridge may use that key too (the key's policy must also allow the account's IAM).
        existing_keys = list(dict.fromkeys(d.kms_key_arn for d in config.routed_destinations() if d.kms_key_arn))
        if existing_keys:
            out.append(iam.PolicyStatement(sid="EncryptForExistingDestinations",
                                           actions=["kms:GenerateDataKey", "kms:Decrypt"], resources=existing_keys))
        return out

    @staticmethod
    def _secret_statements(secrets: Sequence[secretsmanager.ISecret], key: kms.IKey | None,
                           config: BridgeConfig) -> list[iam.PolicyStatement]:
        arns = [s.secret_arn for s in secrets]
        if config.source.kind == "self-managed" and config.source.secret_arn:
            arns.append(config.source.secret_arn)  # the event-source mapping reads the Kafka credentials
        out = []
        if arns:
            out.append(iam.PolicyStatement(sid="ReadSecrets", actions=["secretsmanager:GetSecretValue"],
                                           resources=arns))
        if secrets and key is not None:
            # only through the secrets it may read: the key encrypts every producer's secret
            out.append(iam.PolicyStatement(sid="DecryptSigningKeys", actions=["kms:Decrypt"],
                                           resources=[key.key_arn],
                                           conditions={"StringEquals": {"kms:EncryptionContext:SecretARN":
                                                                        [s.secret_arn for s in secrets]}}))
        if config.source.kms_key_arn:
            # the Kafka credentials secret is encrypted with a customer-managed key
            out.append(iam.PolicyStatement(sid="DecryptKafkaCredentials", actions=["kms:Decrypt"],
                                           resources=[config.source.kms_key_arn]))
        return out

    @staticmethod
    def _checkpoint_statements(table: dynamodb.ITable | None, key: kms.IKey | None) -> list[iam.PolicyStatement]:
        """Read and write progress items (bridge.adapters.dynamodb: Query, BatchWriteItem) and nothing else."""
        if table is None or key is None:
            return []
        return [
            iam.PolicyStatement(sid="CheckpointProgress", actions=["dynamodb:Query", "dynamodb:BatchWriteItem"],
                                resources=[table.table_arn]),
            iam.PolicyStatement(sid="EncryptCheckpoints",
                                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                                resources=[key.key_arn],
                                conditions={"StringEquals": {
                                    "kms:ViaService": f"dynamodb.{Aws.REGION}.amazonaws.com"}}),
        ]

    @staticmethod
    def _storage_statements(bucket: s3.IBucket, key: kms.IKey) -> list[iam.PolicyStatement]:
        return [
            # objects are written under the bucket's customer-managed key (SSE-KMS)
            iam.PolicyStatement(sid="EncryptParkedRecords", actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                resources=[key.key_arn]),
            # parked records from the handler, failed batches from the event-source mapping
            iam.PolicyStatement(sid="ParkRecords", actions=["s3:PutObject"],
                                resources=[bucket.arn_for_objects(PARKED_PREFIX),
                                           bucket.arn_for_objects(ESM_FAILURE_PREFIX)]),
            # the S3 on-failure destination also needs ListBucket (AWS Lambda documentation)
            iam.PolicyStatement(sid="ListParkingBucket", actions=["s3:ListBucket"], resources=[bucket.bucket_arn]),
        ]

    @staticmethod
    def _claim_check_statements(bucket: s3.IBucket | None) -> list[iam.PolicyStatement]:
        if bucket is None:
            return []
        # message bodies over a destination's limit; nothing else in that bucket, and no read
        return [iam.PolicyStatement(sid="StoreClaimChecks", actions=["s3:PutObject"],
                                    resources=[bucket.arn_for_objects(CLAIM_CHECK_OBJECTS)])]

    @staticmethod
    def _kafka_statements(config: BridgeConfig) -> list[iam.PolicyStatement]:
        if config.source.kind != "msk":
            return []  # self-managed Kafka authenticates with the secret above, not IAM
        msk = MskArns(config.source)
        topics = config.source.topics
        return [
            iam.PolicyStatement(sid="ConnectToTheCluster",
                                actions=["kafka-cluster:Connect", "kafka-cluster:DescribeClusterDynamicConfiguration",
                                         "kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"],
                                resources=[msk.cluster]),
            iam.PolicyStatement(sid="ReadSourceTopics",
                                actions=["kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"],
                                resources=[msk.topic(t) for t in topics]),
            iam.PolicyStatement(sid="UseOwnConsumerGroups",
                                actions=["kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"],
                                resources=[msk.group(config.source.group_id_for(t)) for t in topics]),
        ]

    @staticmethod
    def _schema_registry_statements(config: BridgeConfig) -> list[iam.PolicyStatement]:
        """What the event-source mapping needs to read the schemas it decodes records with."""
        registry = config.source.schema_registry
        if registry is None:
            return []
        if registry.kind == "confluent":
            assert registry.secret_arn is not None
            return [iam.PolicyStatement(sid="ReadSchemaRegistryCredentials", actions=["secretsmanager:GetSecretValue"],
                                        resources=[registry.secret_arn])]
        return [iam.PolicyStatement(sid="ReadSchemas", actions=["glue:GetRegistry", "glue:GetSchemaVersion"],
                                    resources=[registry.uri, glue_schemas_arn(registry.uri)])]

    @staticmethod
    def _network_statements() -> list[iam.PolicyStatement]:
        # The event-source mapping reaches the brokers through network interfaces it creates in the
        # cluster's subnets. Lambda checks the execution role for these six actions on "*" when it
        # creates the mapping (EventBridge Pipes on MSK hit the same check: scoped Create/Delete
        # fail it), and the Describe* calls support no resource-level permissions at all. So this
        # is the one statement with Resource "*"; it grants nothing beyond network interfaces.
        return [
            iam.PolicyStatement(
                sid="MappingNetworkInterfaces",
                actions=["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface",
                         "ec2:DescribeNetworkInterfaces", "ec2:DescribeVpcs", "ec2:DescribeSubnets",
                         "ec2:DescribeSecurityGroups"],
                resources=["*"]),
        ]

    def _acknowledge_schemas(self, config: BridgeConfig) -> None:
        registry = config.source.schema_registry
        if registry is not None and registry.kind == "glue":
            acknowledge(self.role, f"AwsSolutions-IAM5[Resource::{glue_schemas_arn(registry.uri)}]",
                        "The mapping reads whichever schema version a record names; the statement covers the "
                        "schemas of the one configured registry, read-only (GetRegistry, GetSchemaVersion).")

    def _acknowledge_claim_check_prefix(self, bucket: s3.IBucket) -> None:
        bucket_id = Stack.of(self).resolve(bucket.bucket_arn)["Fn::GetAtt"][0]
        acknowledge(self.role, f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{CLAIM_CHECK_OBJECTS}]",
                    "Claim-check object keys are generated per record and destination; the statement is limited "
                    "to PutObject under the claim-check/ prefix of the claim-check bucket.")

    def _acknowledge_prefix(self, bucket: s3.IBucket) -> None:
        stack = Stack.of(self)
        bucket_id = stack.resolve(bucket.bucket_arn)["Fn::GetAtt"][0]
        for prefix in (PARKED_PREFIX, ESM_FAILURE_PREFIX):
            acknowledge(self.role, f"AwsSolutions-IAM5[Resource::<{bucket_id}.Arn>/{prefix}]",
                        "Object keys are generated per record (handler) and per failed batch (event-source "
                        "mapping); the statement is limited to PutObject under this one prefix of the bucket.")
