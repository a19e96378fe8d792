"""One IAM role per producer, trusting exactly the configured identity, plus per-producer signing keys."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from bridge.config import BridgeConfig, Producer
from constructs import Construct

from infra.msk import MskArns
from infra.nag import acknowledge

SIGNING_KEY_LENGTH = 64


class ProducerAccess(Construct):
    """Producer roles and signing secrets.

    Kafka permissions are written only for `source.kind: msk`: self-managed Kafka authenticates with
    SASL/mTLS and has no IAM topic authorization, so its producers' roles carry only the secret and
    direct-send statements.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: BridgeConfig,
                 queues: Mapping[str, sqs.IQueue], queue_key: kms.IKey) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self._msk = MskArns(config.source) if config.source.kind == "msk" else None
        self.roles: dict[str, iam.Role] = {}
        self.signing_secrets: dict[str, secretsmanager.Secret] = {}
        self.secret_key: kms.Key | None = None
        if any(p.signing for p in config.producers):
            self.secret_key = kms.Key(self, "SigningKeyEncryption", enable_key_rotation=True,
                                      description="Encrypts the Kafka bridge producers' signing secrets")
            # The key decrypts a signing secret only through Secrets Manager and only with that secret's
            # ARN as encryption context: no one decrypts a copied ciphertext directly, whatever their
            # identity policies say (the readers' policies then bind the context to their own secret).
            self.secret_key.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyThroughSecretsManagerForASecret", effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()], actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy "*" means this key
                conditions={"StringNotEquals": {"kms:ViaService": f"secretsmanager.{Stack.of(self).region}"
                                                                  f".amazonaws.com"}}))
            self.secret_key.add_to_resource_policy(iam.PolicyStatement(
                sid="OnlyWithASecretAsContext", effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()], actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"], conditions={"Null": {"kms:EncryptionContext:SecretARN": "true"}}))
        for p in config.producers:
            if p.signing:
                self.signing_secrets[p.name] = self._signing_secret(p)
            self.roles[p.name] = self._role(p, queues, queue_key)

    def _signing_secret(self, p: Producer) -> secretsmanager.Secret:
        secret = secretsmanager.Secret(
            self, f"{p.name}-signing-key",
            secret_name=self._config.signing_secret_name(p.name),
            description=f"HMAC key producer {p.name} signs its Kafka records with",
            encryption_key=self.secret_key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=SIGNING_KEY_LENGTH, exclude_punctuation=True),
        )
        if self._config.settings.signing_key_rotation_days == 0:
            acknowledge(secret, "AwsSolutions-SMG4",
                        "settings.signing_key_rotation_days is 0 in this configuration: its owners rotate by "
                        "hand (docs/security.md, key lifecycle).")
        return secret

    def _trust(self, p: Producer) -> iam.IPrincipal:
        if p.aws_principal is not None:
            # A principal of another account must also present the agreed external id, or belong to the
            # organization (config.py refuses one with neither).
            conditions: dict[str, dict[str, str]] = {}
            if p.external_id:
                conditions["StringEquals"] = {"sts:ExternalId": p.external_id}
            if p.org_id:
                conditions.setdefault("StringEquals", {})["aws:PrincipalOrgID"] = p.org_id
            principal = iam.ArnPrincipal(p.aws_principal)
            return principal.with_conditions(conditions) if conditions else principal
        assert p.oidc is not None  # config.py requires exactly one identity
        host = p.oidc.issuer_host
        provider_arn = p.oidc.provider_arn or Stack.of(self).format_arn(
            service="iam", region="", resource="oidc-provider", resource_name=host)
        # Exact audience and subject: a wildcard subject would let any branch or repository assume the role.
        return iam.WebIdentityPrincipal(provider_arn, conditions={
            "StringEquals": {f"{host}:aud": p.oidc.audience, f"{host}:sub": p.oidc.subject},
        })

    def _role(self, p: Producer, queues: Mapping[str, sqs.IQueue], queue_key: kms.IKey) -> iam.Role:
        statements: list[iam.PolicyStatement] = []
        if self._msk is not None:
            statements += [
                iam.PolicyStatement(
                    sid="ConnectToTheCluster",
                    # WriteDataIdempotently: Kafka clients enable idempotent producing by default
                    actions=["kafka-cluster:Connect", "kafka-cluster:WriteDataIdempotently"],
                    resources=[self._msk.cluster]),
                iam.PolicyStatement(
                    sid="WriteOwnTopics",
                    actions=["kafka-cluster:WriteData", "kafka-cluster:DescribeTopic"],
                    resources=[self._msk.topic(t) for t in p.topics]),
            ]
        if p.signing:
            assert self.secret_key is not None
            statements += [
                iam.PolicyStatement(sid="ReadOwnSigningKey", actions=["secretsmanager:GetSecretValue"],
                                    resources=[self.signing_secrets[p.name].secret_arn]),
                # bound to its own secret: the key is shared by every producer's secret
                iam.PolicyStatement(sid="DecryptOwnSigningKey", actions=["kms:Decrypt"],
                                    resources=[self.secret_key.key_arn],
                                    conditions={"StringEquals": {"kms:EncryptionContext:SecretARN":
                                                                 self.signing_secrets[p.name].secret_arn}}),
            ]
        if p.direct_send_to:
            statements += [
                iam.PolicyStatement(sid="SendDirectly", actions=["sqs:SendMessage"],
                                    resources=[queues[q].queue_arn for q in p.direct_send_to]),
                iam.PolicyStatement(sid="EncryptDirectSends", actions=["kms:GenerateDataKey", "kms:Decrypt"],
                                    resources=[queue_key.key_arn]),
            ]
        return iam.Role(
            self, p.name,
            assumed_by=self._trust(p),
            description=f"Kafka bridge producer {p.name} of {self._config.name}",
            inline_policies={"producer": iam.PolicyDocument(statements=statements)} if statements else None,
        )
