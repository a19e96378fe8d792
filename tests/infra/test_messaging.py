"""Queues, topics, subscriptions and the audit fan-out carry the secure defaults."""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk.assertions import Match
from bridge.config import SQS_MAX_MESSAGE_BYTES

from tests.infra.conftest import Synth
from tests.infra.helpers import arn_of, as_list, ref

pytestmark = pytest.mark.infra


def _policy_statements(synth: Synth, policy_type: str, target_key: str, target: Any) -> list[dict[str, Any]]:
    return [s for r in synth.resources(policy_type).values() if target in r["Properties"][target_key]
            for s in as_list(r["Properties"]["PolicyDocument"]["Statement"])]


def test_every_created_destination_queue_redrives_to_its_dlq(every_variant: Synth) -> None:
    synth = every_variant
    for d in synth.config.destinations:
        if d.type != "sqs" or not d.created:
            continue
        queue = synth.resources("AWS::SQS::Queue")[synth.logical_id(
            "AWS::SQS::Queue", QueueName=d.physical_name(synth.config.prefix))]["Properties"]
        dlq_id = synth.logical_id("AWS::SQS::Queue", QueueName=d.dlq_physical_name(synth.config.prefix))
        assert queue["RedrivePolicy"] == {"deadLetterTargetArn": arn_of(dlq_id),
                                          "maxReceiveCount": d.max_receive_count}, d.name


def test_every_queue_is_kms_encrypted_with_the_queue_key(every_variant: Synth) -> None:
    keys = {k for k, r in every_variant.resources("AWS::KMS::Key").items()
            if r["Properties"]["Description"].endswith("SQS queues")}
    for name, queue in every_variant.resources("AWS::SQS::Queue").items():
        key = queue["Properties"]["KmsMasterKeyId"]
        assert key["Fn::GetAtt"][0] in keys, name


def test_every_queue_states_its_maximum_message_size(every_variant: Synth) -> None:
    # given every queue the stack creates: destinations, their DLQs, bridge DLQ, audit and subscription DLQs
    synth = every_variant
    lowered = {d.physical_name(synth.config.prefix): d.max_message_bytes for d in synth.config.destinations
               if d.type == "sqs" and d.created and d.max_message_bytes is not None}
    # then none relies on the default: 1 MiB, or the destination's own lower limit
    for logical_id, queue in synth.resources("AWS::SQS::Queue").items():
        props = queue["Properties"]
        expected = lowered.get(props.get("QueueName"), SQS_MAX_MESSAGE_BYTES)
        assert props.get("MaximumMessageSize") == expected, (logical_id, props.get("QueueName"))


def test_a_destinations_lower_limit_applies_to_its_queue_not_its_dlq(provisioned: Synth) -> None:
    config = provisioned.config
    fraud = config.destination("fraud-review")
    assert fraud.max_message_bytes == 524_288
    provisioned.template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": fraud.physical_name(config.prefix), "MaximumMessageSize": 524_288})
    provisioned.template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": fraud.dlq_physical_name(config.prefix), "MaximumMessageSize": SQS_MAX_MESSAGE_BYTES})


def test_fifo_queues_use_high_throughput_and_no_content_dedup(dev: Synth) -> None:
    dev.template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": "orders-bridge-dev-fulfilment.fifo",
        "FifoQueue": True,
        "ContentBasedDeduplication": False,
        "DeduplicationScope": "messageGroup",
        "FifoThroughputLimit": "perMessageGroupId",
        "RedrivePolicy": Match.object_like({"maxReceiveCount": 5}),
    })
    dev.template.has_resource_properties("AWS::SQS::Queue", {
        "QueueName": "orders-bridge-dev-fulfilment-dlq.fifo", "FifoQueue": True})


def test_every_queue_and_topic_denies_insecure_transport(every_variant: Synth) -> None:
    synth = every_variant
    ssl_deny = {"Action": "sqs:*", "Effect": "Deny", "Principal": {"AWS": "*"},
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
    for queue_id in synth.resources("AWS::SQS::Queue"):
        statements = _policy_statements(synth, "AWS::SQS::QueuePolicy", "Queues", ref(queue_id))
        assert any(ssl_deny.items() <= s.items() for s in statements), queue_id
    for topic_id in synth.resources("AWS::SNS::Topic"):
        statements = _policy_statements(synth, "AWS::SNS::TopicPolicy", "Topics", ref(topic_id))
        assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
                   for s in statements), topic_id


def _sender_deny(synth: Synth, queue_name: str) -> dict[str, Any]:
    queue_id = synth.logical_id("AWS::SQS::Queue", QueueName=queue_name)
    (deny,) = [s for s in _policy_statements(synth, "AWS::SQS::QueuePolicy", "Queues", ref(queue_id))
               if s.get("Sid") == "OnlyTheBridgeAndNamedProducersSend"]
    return deny


def test_queue_policy_denies_every_other_sender(provisioned: Synth) -> None:
    synth = provisioned
    bridge_role = synth.logical_id("AWS::IAM::Role", Description=f"Kafka bridge {synth.config.name}")
    inventory_role = synth.logical_id(
        "AWS::IAM::Role", Description=f"Kafka bridge producer inventory-service of {synth.config.name}")
    # a routed queue: only the bridge may send; only SendMessage is denied, so admins keep managing it
    # ... and the operators, who send what `bridge replay` takes from the queue's DLQs
    operators = list(synth.config.settings.operator_role_arns)
    assert operators
    deny = _sender_deny(synth, "orders-bridge-dev-fraud-review")
    assert deny["Effect"] == "Deny"
    assert deny["Action"] == "sqs:SendMessage"
    assert deny["Principal"] == {"AWS": "*"}
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [arn_of(bridge_role), *operators]}}
    # a routed queue a producer may also write directly
    assert _sender_deny(synth, "orders-bridge-dev-stock-alerts")["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": [arn_of(bridge_role), arn_of(inventory_role), *operators]}}
    # a routed queue that a topic also delivers into keeps the topic's right via aws:SourceArn
    stream = synth.logical_id("AWS::SNS::Topic", TopicName="orders-bridge-dev-order-stream.fifo")
    assert _sender_deny(synth, "orders-bridge-dev-fulfilment.fifo")["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": [arn_of(bridge_role), *operators], "aws:SourceArn": [ref(stream)]}}
    # a queue that takes only signed records: the bridge only, never the operators
    assert _sender_deny(synth, "orders-bridge-dev-payments-ledger.fifo")["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": [arn_of(bridge_role)]}}
    # the bridge DLQ: the bridge only
    assert _sender_deny(synth, synth.config.bridge_dlq_name)["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": [arn_of(bridge_role)]}}


def _publisher_deny(synth: Synth, topic_name: str) -> dict[str, Any]:
    topic_id = synth.logical_id("AWS::SNS::Topic", TopicName=topic_name)
    (deny,) = [s for s in _policy_statements(synth, "AWS::SNS::TopicPolicy", "Topics", ref(topic_id))
               if s.get("Sid") == "OnlyTheBridgePublishes"]
    return deny


def test_topic_policy_denies_every_other_publisher(every_variant: Synth) -> None:
    # given every topic the stack creates (routed destinations and the audit topic)
    synth = every_variant
    bridge_role = synth.logical_id("AWS::IAM::Role", Description=f"Kafka bridge {synth.config.name}")
    routed = {d.name for d in synth.config.routed_destinations()}
    topics = {d.physical_name(synth.config.prefix): d.name in routed for d in synth.config.destinations
              if d.type == "sns" and d.created}
    topics[synth.config.audit_topic_name] = True
    # plus the alarm topic, which only the stack's alarms publish to (tests/infra/test_alarms.py)
    alarm_topics = 0 if synth.config.alarms.topic_arn else 1
    assert len(synth.resources("AWS::SNS::Topic")) == len(topics) + alarm_topics
    for name, bridge_publishes in topics.items():
        deny = _publisher_deny(synth, name)
        # then only the bridge role may publish; only Publish is denied, so admins keep managing the topic
        assert deny["Effect"] == "Deny", name
        assert deny["Action"] == "sns:Publish", name
        assert deny["Principal"] == {"AWS": "*"}, name
        assert deny["Resource"] == ref(synth.logical_id("AWS::SNS::Topic", TopicName=name)), name
        if bridge_publishes:
            assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": [arn_of(bridge_role)]}}, name
        else:
            assert "Condition" not in deny, name


def test_topics_are_encrypted_and_named_from_config(provisioned: Synth) -> None:
    provisioned.template.has_resource_properties("AWS::SNS::Topic", {
        "TopicName": "orders-bridge-dev-order-events", "KmsMasterKeyId": Match.any_value()})
    provisioned.template.has_resource_properties("AWS::SNS::Topic", {
        "TopicName": "orders-bridge-dev-order-stream.fifo", "FifoTopic": True, "ContentBasedDeduplication": False,
        "MaximumMessageSize": 1_048_576, "KmsMasterKeyId": Match.any_value()})


def test_subscription_raw_delivery_filter_policy_and_own_dlq(dev: Synth) -> None:
    topic = dev.logical_id("AWS::SNS::Topic", TopicName="orders-bridge-dev-order-events")
    billing = dev.logical_id("AWS::SQS::Queue", QueueName="orders-bridge-dev-billing")
    dlq = dev.template.find_resources("AWS::SNS::Subscription", {"Properties": {"Endpoint": arn_of(billing)}})
    (subscription,) = dlq.values()
    props = subscription["Properties"]
    assert props["TopicArn"] == ref(topic)
    assert props["RawMessageDelivery"] is True
    assert props["FilterPolicy"] == {"event-type": ["OrderPlaced"]}
    dlq_id = props["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    # named by the config model, as the local stack names it
    assert dev.data["Resources"][dlq_id]["Properties"]["QueueName"] == dev.config.subscription_dlq_name(
        dev.config.destination("order-events"), "billing") == "orders-bridge-dev-order-events-to-billing-dlq"
    # the subscription DLQ lets only this topic send into it
    statements = _policy_statements(dev, "AWS::SQS::QueuePolicy", "Queues", ref(dlq_id))
    assert {"Action": "sqs:SendMessage", "Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
            "Condition": {"ArnEquals": {"aws:SourceArn": ref(topic)}},
            "Resource": arn_of(dlq_id)} in statements


def test_fifo_topic_subscription_dlq_is_fifo(provisioned: Synth) -> None:
    stream = provisioned.logical_id("AWS::SNS::Topic", TopicName="orders-bridge-dev-order-stream.fifo")
    (subscription,) = provisioned.template.find_resources(
        "AWS::SNS::Subscription", {"Properties": {"TopicArn": ref(stream)}}).values()
    dlq_id = subscription["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert provisioned.data["Resources"][dlq_id]["Properties"]["FifoQueue"] is True
    assert provisioned.data["Resources"][dlq_id]["Properties"]["QueueName"].endswith("-dlq.fifo")


def test_queue_key_lets_only_the_bridge_topics_deliver(dev: Synth) -> None:
    (key,) = [r for r in dev.resources("AWS::KMS::Key").values()
              if r["Properties"]["Description"].endswith("SQS queues")]
    (statement,) = [s for s in key["Properties"]["KeyPolicy"]["Statement"]
                    if s.get("Sid") == "AllowTheBridgeTopicsToDeliver"]
    assert statement["Principal"] == {"Service": "sns.amazonaws.com"}
    sources = statement["Condition"]["ArnLike"]["aws:SourceArn"]
    assert [s["Fn::Join"][1][-1] for s in sources] == [":orders-bridge-dev-order-events", ":orders-bridge-dev-audit"]
    assert all(s["Principal"] != {"Service": "sns.amazonaws.com"} or "Condition" in s
               for s in key["Properties"]["KeyPolicy"]["Statement"])


def test_audit_topic_fans_out_raw_to_monitoring_queue_with_dlqs(dev: Synth) -> None:
    config = dev.config
    topic = dev.logical_id("AWS::SNS::Topic", TopicName=config.audit_topic_name)
    queue = dev.logical_id("AWS::SQS::Queue", QueueName=config.audit_queue_name)
    queue_dlq = dev.logical_id("AWS::SQS::Queue", QueueName=config.audit_queue_dlq_name)
    assert dev.data["Resources"][queue]["Properties"]["RedrivePolicy"]["deadLetterTargetArn"] == arn_of(queue_dlq)
    dev.template.has_resource_properties("AWS::SNS::Subscription", {
        "TopicArn": ref(topic), "Endpoint": arn_of(queue), "Protocol": "sqs", "RawMessageDelivery": True,
        "RedrivePolicy": {"deadLetterTargetArn": Match.any_value()}})
    assert _sender_deny(dev, config.audit_queue_name)["Condition"] == {
        "ArnNotEquals": {"aws:SourceArn": [ref(topic)]}}


def test_existing_destination_is_not_created(provisioned: Synth) -> None:
    names = [r["Properties"].get("QueueName") for r in provisioned.resources("AWS::SQS::Queue").values()]
    assert "legacy-orders" not in names
    assert not [n for n in names if n and "legacy" in n]


def test_parking_bucket_is_private_versioned_encrypted(dev: Synth) -> None:
    dev.template.has_resource_properties("AWS::S3::Bucket", {
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": Match.object_like({"ServerSideEncryptionConfiguration": Match.any_value()}),
    })
    dev.template.has_resource_properties("AWS::S3::BucketPolicy", {"PolicyDocument": {"Statement": Match.array_with(
        [Match.object_like({"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}})
