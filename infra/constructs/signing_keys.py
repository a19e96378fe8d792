"""Who may read and change the producers' signing keys, and their scheduled rotation.

Each signing secret gets a resource policy: only its producer's role, the bridge role and the rotation
function read it; only the rotation function, the operators' roles and CloudFormation change its key
(versions, stages, rotation) and only CloudFormation deletes it or changes its policy, replicas or tags
(an identity policy with secretsmanager:* on * is no longer enough to read another producer's key and
sign as it, to put a key of one's own, nor to point its rotation at a function of one's own). With
`settings.signing_key_rotation_days` set, a rotation function writes a new random key on that schedule
(bridge.rotation); the bridge keeps verifying the previous key for `settings.signing_key_grace_seconds` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

from aws_cdk import DefaultStackSynthesizer, Duration, Fn, Stack
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
# What the rotation function calls (bridge.rotation): a new version, then AWSCURRENT moved to it.
WRITE_ACTIONS = ["secretsmanager:PutSecretValue", "secretsmanager:UpdateSecretVersionStage"]
# Every call that changes which key a secret serves, or when: WRITE_ACTIONS; RotateSecret, which rotates now
# and can point the rotation at another function (the key it writes is then someone else's);
# CancelRotateSecret, which stops rotation; UpdateSecret, which writes a new value too. Taken from botocore's
# secretsmanager model (every operation on one secret that is not a read), not from memory.
KEY_CHANGING_ACTIONS = [*WRITE_ACTIONS, "secretsmanager:RotateSecret", "secretsmanager:CancelRotateSecret",
                        "secretsmanager:UpdateSecret"]
# The rest of the model's writes: deleting or restoring the secret, its resource policy (which would lift
# these Denies), replication to other regions or accounts (a copy outside these policies) and tags. CloudFormation's
# deploys make them; no one else needs them.
MANAGING_ACTIONS = ["secretsmanager:DeleteSecret", "secretsmanager:RestoreSecret", "secretsmanager:PutResourcePolicy",
                    "secretsmanager:DeleteResourcePolicy", "secretsmanager:ReplicateSecretToRegions",
                    "secretsmanager:RemoveRegionsFromReplication", "secretsmanager:StopReplicationToReplica",
                    "secretsmanager:AssociateCrossAccountReplica",
                    "secretsmanager:DisassociateCrossAccountReplica", "secretsmanager:TagResource",
                    "secretsmanager:UntagResource"]


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
        its key changed (new versions, stages, rotation started, cancelled or re-pointed, the value updated)
        by the rotation function, the operators (revoking a key) and CloudFormation's execution role (a
        rotation schedule created is a RotateSecret); the secret deleted, restored, its policy, replicas or
        tags changed by CloudFormation's execution role only. An identity policy with secretsmanager:* on *
        reaches none of it."""
        rotation = [self.rotation_role.role_arn] if self.rotation_role is not None else []
        deployer = self._deployer()
        for name, secret in self._secrets.items():
            readers = [producer_role_arns[name], bridge_role_arn, *rotation]
            secret.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyItsProducerAndTheBridgeRead", effect=iam.Effect.DENY, principals=[iam.AnyPrincipal()],
                actions=READ_ACTIONS, resources=["*"],  # in a secret's policy "*" means this secret
                conditions={"ArnNotEquals": {"aws:PrincipalArn": readers}}))
            writers = [*rotation, *operator_role_arns, deployer]
            secret.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyRotationAndOperatorsChangeTheKey", effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()], actions=KEY_CHANGING_ACTIONS, resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": writers}}))
            secret.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyTheDeployerManages", effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()], actions=MANAGING_ACTIONS, resources=["*"],
                conditions={"ArnNotEquals": {"aws:PrincipalArn": [deployer]}}))

    def _deployer(self) -> str:
        """The role CloudFormation deploys this stack with: the CDK bootstrap's execution role."""
        synthesizer = Stack.of(self).synthesizer
        if not isinstance(synthesizer, DefaultStackSynthesizer):
            raise TypeError("the signing secrets' policies name CloudFormation's execution role, which only "
                            "DefaultStackSynthesizer (cdk bootstrap's roles) names")
        return Fn.sub(synthesizer.cloud_formation_execution_role_arn)
