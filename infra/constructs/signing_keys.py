"""Who may read and change the producers' signing keys, and their scheduled rotation.

Each signing secret gets a resource policy: only its producer's role, the bridge role and the rotation
function read it; only the rotation function and the operators' roles change its versions (an
identity policy with secretsmanager:* on * is no longer enough to read another producer's key and
sign as it, nor to put a key of one's own). With `settings.signing_key_rotation_days` set, a rotation
function writes a new random key on that schedule (bridge.rotation); the bridge keeps verifying the
previous key for `settings.signing_key_grace_seconds` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from bridge.config import BridgeConfig
from constructs import Construct

from infra.constructs.bridge_function import log_group_name
from infra.nag import acknowledge, acknowledge_checkov

ROTATION_HANDLER = "bridge.rotation.handler"
READ_ACTIONS = ["secretsmanager:GetSecretValue"]
WRITE_ACTIONS = ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]


class SigningKeyProtection(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig,
                 secrets: Mapping[str, secretsmanager.Secret], key: kms.IKey, package_dir: Path,
                 log_key: kms.IKey | None = None) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._secrets = secrets
        self.rotation_role: iam.Role | None = None
        days = config.settings.signing_key_rotation_days
        if not secrets or days == 0:
            return
        arns = [s.secret_arn for s in secrets.values()]
        log_group = logs.LogGroup(self, "RotationLogs", log_group_name=log_group_name(config, "signing-key-rotation"),
                                  encryption_key=log_key)
        # the stage's retention, like the function's (config deployment.log_retention_days)
        cast(logs.CfnLogGroup, log_group.node.default_child).retention_in_days = config.deployment.log_retention_days
        self.rotation_role = iam.Role(
            self, "RotationRole", assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Kafka bridge {config.name} signing-key rotation",
            inline_policies={"rotate": iam.PolicyDocument(statements=[
                iam.PolicyStatement(sid="RotateSigningKeys",
                                    actions=["secretsmanager:DescribeSecret", *READ_ACTIONS, *WRITE_ACTIONS],
                                    resources=arns),
                iam.PolicyStatement(sid="UseTheSigningKeyKey", actions=["kms:Decrypt", "kms:GenerateDataKey"],
                                    resources=[key.key_arn],
                                    conditions={"StringEquals": {"kms:EncryptionContext:SecretARN": arns}}),
                iam.PolicyStatement(sid="WriteOwnLogs", actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                                    resources=[log_group.log_group_arn]),
            ])})
        self.function = lambda_.Function(
            self, "Rotation", runtime=lambda_.Runtime.PYTHON_3_12, architecture=lambda_.Architecture.ARM_64,
            handler=ROTATION_HANDLER, code=lambda_.Code.from_asset(str(package_dir)),
            role=self.rotation_role.without_policy_updates(), timeout=Duration.seconds(30), memory_size=128,
            log_group=log_group, description=f"Rotates the signing keys of Kafka bridge {config.name}")
        acknowledge_checkov(self.function, "CKV_AWS_116",
                            "Secrets Manager invokes the rotation function synchronously and retries a failed "
                            "rotation itself; an asynchronous-invoke DLQ would never receive anything.")
        acknowledge_checkov(self.function, "CKV_AWS_117",
                            "It calls only the Secrets Manager API, over TLS; a VPC would add NAT or an endpoint and "
                            "protect nothing it uses.")
        acknowledge_checkov(self.function, "CKV_AWS_115",
                            "Secrets Manager runs one rotation step at a time per secret, every "
                            "signing_key_rotation_days: concurrency is bounded by the number of signing secrets.")
        acknowledge(self.function, "AwsSolutions-L1",
                    "python3.12, the runtime of the bridge function whose package it shares; both move together.")
        # L1 on purpose: RotationSchedule's grants would land in the key policy (the role is immutable),
        # and the key policy naming the role whose policy names the secrets under that key is a cycle.
        # The role's statements above are the grants.
        self.function.add_permission("SecretsManagerInvokes",
                                     principal=iam.ServicePrincipal("secretsmanager.amazonaws.com"),
                                     source_account=Stack.of(self).account)
        for name, secret in secrets.items():
            schedule = secretsmanager.CfnRotationSchedule(
                self, f"{name}-rotation", secret_id=secret.secret_arn, rotation_lambda_arn=self.function.function_arn,
                rotation_rules=secretsmanager.CfnRotationSchedule.RotationRulesProperty(automatically_after_days=days))
            schedule.node.add_dependency(self.function)

    def restrict_access(self, *, producer_role_arns: Mapping[str, str], bridge_role_arn: str,
                        operator_role_arns: Sequence[str]) -> None:
        """A resource policy per secret: read by its producer, the bridge and the rotation function only;
        versions changed by the rotation function and the operators only (revoking a key)."""
        rotation = [self.rotation_role.role_arn] if self.rotation_role is not None else []
        for name, secret in self._secrets.items():
            readers = [producer_role_arns[name], bridge_role_arn, *rotation]
            secret.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyItsProducerAndTheBridgeRead", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                actions=READ_ACTIONS, resources=["*"],  # in a secret's policy "*" means this secret
                conditions={"ArnNotEquals": {"aws:PrincipalArn": readers}}))
            writers = [*rotation, *operator_role_arns]
            secret.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyRotationAndOperatorsChangeVersions", effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()], actions=WRITE_ACTIONS, resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": writers}} if writers else None))
