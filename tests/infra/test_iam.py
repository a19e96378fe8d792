"""Who may do what: producer roles, the bridge role, and no wildcards where they would matter."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match
from bridge.config import Producer

from infra.msk import MskArns
from tests.infra.conftest import EXISTING_QUEUE_KEY_ARN, KAFKA_SECRET_KEY_ARN, Synth
from tests.infra.helpers import arn_of, as_list, iam_statements, inline_statements, ref, resources_for

pytestmark = pytest.mark.infra

GUARDED_SERVICES = ("kafka-cluster", "kafka", "sqs", "sns", "kms", "secretsmanager")
# Lambda validates the mapping's network-interface permissions on "*" (see bridge_function.py).
UNSCOPABLE_EC2_ACTIONS = {"ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces",
                          "ec2:DescribeVpcs", "ec2:DescribeSubnets", "ec2:DescribeSecurityGroups"}
XRAY_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}


def producer_role_id(synth: Synth, producer: Producer) -> str:
    return synth.logical_id("AWS::IAM::Role",
                            Description=f"Kafka bridge producer {producer.name} of {synth.config.name}")


def bridge_role_id(synth: Synth) -> str:
    return synth.logical_id("AWS::IAM::Role", Description=f"Kafka bridge {synth.config.name}")


def queue_id(synth: Synth, name: str) -> str:
    return synth.logical_id("AWS::SQS::Queue", QueueName=synth.config.destination(name).physical_name(
        synth.config.prefix))


def test_aws_principal_producer_trusts_exactly_that_principal(dev: Synth) -> None:
    # given a producer identified by an IAM role ARN
    producer = dev.config.producer("order-service")
    assert producer is not None
    # then its role trusts that ARN and nothing else
    trust = dev.data["Resources"][producer_role_id(dev, producer)]["Properties"]["AssumeRolePolicyDocument"]
    assert trust["Statement"] == [{"Action": "sts:AssumeRole", "Effect": "Allow",
                                   "Principal": {"AWS": producer.aws_principal}}]


@pytest.mark.parametrize("variant", ["dev", "provisioned"])
def test_oidc_producer_trusts_exact_audience_and_subject(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(variant)
    producer = synth.config.producer("payment-service")
    assert producer is not None
    assert producer.oidc is not None
    host = producer.oidc.issuer_host
    (statement,) = synth.data["Resources"][producer_role_id(synth, producer)]["Properties"][
        "AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {"StringEquals": {f"{host}:aud": producer.oidc.audience,
                                                       f"{host}:sub": producer.oidc.subject}}
    federated = statement["Principal"]["Federated"]
    if producer.oidc.provider_arn:  # an existing provider is used as given
        assert federated == producer.oidc.provider_arn
    else:  # otherwise the provider of this issuer in the deploying account
        assert federated["Fn::Join"][1][-1] == f":oidc-provider/{host}"


@pytest.mark.parametrize("variant", ["dev", "provisioned"])
def test_a_producers_role_can_write_only_its_own_topics(variant: str, request: pytest.FixtureRequest) -> None:
    synth: Synth = request.getfixturevalue(variant)
    msk = MskArns(synth.config.source)
    for producer in synth.config.producers:
        statements = inline_statements(synth.data, producer_role_id(synth, producer))
        own_topics = sorted(msk.topic(t) for t in producer.topics)
        assert sorted(resources_for(statements, "kafka-cluster:WriteData")) == own_topics, producer.name
        assert sorted(resources_for(statements, "kafka-cluster:DescribeTopic")) == own_topics, producer.name
        assert resources_for(statements, "kafka-cluster:Connect") == [msk.cluster], producer.name
        # no other Kafka permission reaches any other resource
        kafka_resources = {r for s in statements if any(a.startswith("kafka") for a in as_list(s["Action"]))
                           for r in as_list(s["Resource"])}
        assert kafka_resources == {msk.cluster, *own_topics}, producer.name


def test_signing_producer_reads_only_its_own_secret(dev: Synth) -> None:
    secrets = dev.resources("AWS::SecretsManager::Secret")
    for producer in dev.config.producers:
        statements = inline_statements(dev.data, producer_role_id(dev, producer))
        granted = resources_for(statements, "secretsmanager:GetSecretValue")
        if producer.signing:
            (secret_id,) = [k for k, r in secrets.items()
                            if r["Properties"]["Name"] == dev.config.signing_secret_name(producer.name)]
            assert granted == [ref(secret_id)]
            assert secrets[secret_id]["Properties"]["GenerateSecretString"]["PasswordLength"] == 64
            assert "KmsKeyId" in secrets[secret_id]["Properties"]
        else:
            assert granted == []


def test_direct_send_producer_may_send_only_to_its_queues(provisioned: Synth) -> None:
    producer = provisioned.config.producer("inventory-service")
    assert producer is not None
    statements = inline_statements(provisioned.data, producer_role_id(provisioned, producer))
    assert resources_for(statements, "sqs:SendMessage") == [arn_of(queue_id(provisioned, "stock-alerts"))]


def test_self_managed_producers_get_no_kafka_statements(self_managed: Synth) -> None:
    for producer in self_managed.config.producers:
        statements = inline_statements(self_managed.data, producer_role_id(self_managed, producer))
        assert not [s for s in statements if any(a.startswith("kafka") for a in as_list(s["Action"]))]


def test_no_wildcard_actions_or_resources_on_guarded_services(every_variant: Synth) -> None:
    """Walk every identity policy: no Allow with `service:*`-style actions or "*" resources on guarded services.
    The only "*" resources allowed are the ec2 network-interface statement and X-Ray, which has no resources."""
    checked = 0
    for logical_id, statement in iam_statements(every_variant.data):
        if statement["Effect"] != "Allow":
            continue
        checked += 1
        actions = as_list(statement["Action"])
        resources = as_list(statement["Resource"])
        for action in actions:
            service, _, name = action.partition(":")
            if service in GUARDED_SERVICES:
                assert "*" not in name, f"{logical_id}: wildcard action {action}"
        if "*" in resources:
            assert set(actions) <= UNSCOPABLE_EC2_ACTIONS or set(actions) <= XRAY_ACTIONS, (
                f"{logical_id}: Resource '*' with {actions}")
        for resource in resources:
            if isinstance(resource, str) and any(f":{s}:" in resource for s in GUARDED_SERVICES):
                assert "*" not in resource, f"{logical_id}: wildcard resource {resource}"
    assert checked > 10
    assert not every_variant.resources("AWS::IAM::ManagedPolicy")
    for role in every_variant.resources("AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"], "managed policies (e.g. AWSLambdaMSKExecutionRole)"


def test_bridge_role_sends_and_publishes_only_to_routed_destinations(every_variant: Synth) -> None:
    synth = every_variant
    statements = inline_statements(synth.data, bridge_role_id(synth))
    routed = synth.config.routed_destinations()
    bridge_dlq = synth.logical_id("AWS::SQS::Queue", QueueName=synth.config.bridge_dlq_name)
    audit_topic = synth.logical_id("AWS::SNS::Topic", TopicName=synth.config.audit_topic_name)

    def address(d: Any, attribute: str) -> Any:
        if d.arn:
            return d.arn
        cfn_type, name_prop = ("AWS::SQS::Queue", "QueueName") if d.type == "sqs" else ("AWS::SNS::Topic",
                                                                                         "TopicName")
        logical_id = synth.logical_id(cfn_type, **{name_prop: d.physical_name(synth.config.prefix)})
        return arn_of(logical_id) if attribute == "arn" else ref(logical_id)

    expected_queues = [address(d, "arn") for d in routed if d.type == "sqs"] + [arn_of(bridge_dlq)]
    expected_topics = [address(d, "ref") for d in routed if d.type == "sns"] + [ref(audit_topic)]
    assert resources_for(statements, "sqs:SendMessage") == expected_queues
    assert resources_for(statements, "sns:Publish") == expected_topics


def test_bridge_role_msk_permissions_are_scoped(dev: Synth) -> None:
    statements = inline_statements(dev.data, bridge_role_id(dev))
    msk = MskArns(dev.config.source)
    topics = dev.config.source.topics
    for action in ("kafka-cluster:Connect", "kafka-cluster:DescribeClusterDynamicConfiguration",
                   "kafka:DescribeClusterV2", "kafka:GetBootstrapBrokers"):
        assert resources_for(statements, action) == [msk.cluster], action
    for action in ("kafka-cluster:DescribeTopic", "kafka-cluster:ReadData"):
        assert resources_for(statements, action) == [msk.topic(t) for t in topics], action
    for action in ("kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup"):
        assert resources_for(statements, action) == [msk.group(dev.config.source.group_id_for(t))
                                                     for t in topics], action
    # secrets: only producers some destination accepts records from
    trusted = {p for d in dev.config.destinations for p in d.accept_from}
    secrets = dev.resources("AWS::SecretsManager::Secret")
    expected = [ref(k) for k, r in secrets.items()
                if any(r["Properties"]["Name"] == dev.config.signing_secret_name(p) for p in trusted)]
    assert resources_for(statements, "secretsmanager:GetSecretValue") == expected


def test_bridge_role_writes_only_parked_prefix_and_own_logs(dev: Synth) -> None:
    statements = inline_statements(dev.data, bridge_role_id(dev))
    bucket = next(iter(dev.resources("AWS::S3::Bucket")))
    put = resources_for(statements, "s3:PutObject")
    assert [r["Fn::Join"][1] for r in put] == [[arn_of(bucket), "/parked/*"], [arn_of(bucket), "/aws/lambda/*"]]
    log_group = next(iter(dev.resources("AWS::Logs::LogGroup")))
    assert resources_for(statements, "logs:PutLogEvents") == [arn_of(log_group)]


def test_self_managed_bridge_reads_the_kafka_credentials(self_managed: Synth) -> None:
    statements = inline_statements(self_managed.data, bridge_role_id(self_managed))
    assert self_managed.config.source.secret_arn in resources_for(statements, "secretsmanager:GetSecretValue")
    self_managed.template.has_resource_properties("AWS::IAM::Role", {
        "Description": f"Kafka bridge {self_managed.config.name}",
        "Policies": [{"PolicyDocument": {"Statement": Match.array_with([Match.object_like({
            "Action": Match.array_with(["ec2:CreateNetworkInterface"])})])}, "PolicyName": "bridge"}],
    })


def test_bridge_role_may_use_the_key_of_an_existing_encrypted_destination(provisioned: Synth) -> None:
    # given an existing queue (arn) encrypted with its own customer-managed key
    assert provisioned.config.destination("legacy-orders").kms_key_arn == EXISTING_QUEUE_KEY_ARN
    statements = inline_statements(provisioned.data, bridge_role_id(provisioned))
    # then the bridge may encrypt with exactly that key, beside the stack's own keys
    (existing,) = [s for s in statements if s.get("Sid") == "EncryptForExistingDestinations"]
    assert existing["Effect"] == "Allow"
    assert existing["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert existing["Resource"] == EXISTING_QUEUE_KEY_ARN
    assert EXISTING_QUEUE_KEY_ARN in resources_for(statements, "kms:GenerateDataKey")
    assert KAFKA_SECRET_KEY_ARN not in resources_for(statements, "kms:Decrypt")


def test_self_managed_bridge_decrypts_the_kafka_credentials_with_their_key(self_managed: Synth) -> None:
    statements = inline_statements(self_managed.data, bridge_role_id(self_managed))
    (decrypt,) = [s for s in statements if s.get("Sid") == "DecryptKafkaCredentials"]
    assert decrypt["Effect"] == "Allow"
    assert decrypt["Action"] == "kms:Decrypt"
    assert decrypt["Resource"] == KAFKA_SECRET_KEY_ARN
    # Decrypt only: the mapping reads the secret, it never encrypts with that key
    assert KAFKA_SECRET_KEY_ARN not in resources_for(statements, "kms:GenerateDataKey")
    assert not [s for s in statements if s.get("Sid") == "EncryptForExistingDestinations"]
