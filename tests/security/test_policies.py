"""Who may write, read and use the stack's resources, decided from the synthesized policy documents
(tests.security.policy evaluates action, resource and conditions the way IAM does)."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synth
from tests.security.policy import ADMIN_LIKE, PolicyWorld, insider

SNS = "service:sns.amazonaws.com"


def world(synth: Synth) -> PolicyWorld:
    return PolicyWorld(synth.data)


def bridge_role(w: PolicyWorld, synth: Synth) -> str:
    return w.role_arn(w.role_id_by_description(f"Kafka bridge {synth.config.name}"))


def producer_role(w: PolicyWorld, synth: Synth, producer: str) -> str:
    return w.role_arn(w.role_id_by_description(f"Kafka bridge producer {producer} of {synth.config.name}"))


def created_queue_names(synth: Synth) -> list[str]:
    return [r["Properties"]["QueueName"] for r in synth.resources("AWS::SQS::Queue").values()]


def created_topic_names(synth: Synth) -> list[str]:
    return [r["Properties"]["TopicName"] for r in synth.resources("AWS::SNS::Topic").values()]


def routed_queue_names(synth: Synth) -> list[str]:
    cfg = synth.config
    return [d.physical_name(cfg.prefix) for d in cfg.routed_destinations() if d.type == "sqs" and d.created]


def test_the_bridge_role_may_send_where_it_routes(every_variant: Synth) -> None:
    # the control case: the policies that deny the others must leave the bridge its job
    w = world(every_variant)
    bridge = bridge_role(w, every_variant)
    for name in [*routed_queue_names(every_variant), every_variant.config.bridge_dlq_name]:
        decision = w.decide(bridge, "sqs:SendMessage", w.arn(w.by_name("AWS::SQS::Queue", name)))
        assert decision, f"{name}: {decision.why}"


@pytest.mark.attack("insider with sqs:* on * sends to a destination queue", outcome="denied by policy",
                    how="queue policy evaluated: explicit deny")
def test_insider_cannot_send_to_destination_queues(every_variant: Synth) -> None:
    w = world(every_variant)
    for name in [*routed_queue_names(every_variant), every_variant.config.bridge_dlq_name]:
        decision = w.decide(insider(), "sqs:SendMessage", w.arn(w.by_name("AWS::SQS::Queue", name)),
                            identity=ADMIN_LIKE)
        assert decision.why.startswith("explicit deny"), f"{name}: {decision.why}"


@pytest.mark.attack("insider with sns:* on * publishes to a destination or the audit topic",
                    outcome="denied by policy", how="topic policy evaluated: explicit deny")
def test_insider_cannot_publish(every_variant: Synth) -> None:
    w = world(every_variant)
    for name in created_topic_names(every_variant):
        decision = w.decide(insider(), "sns:Publish", w.arn(w.by_name("AWS::SNS::Topic", name)), identity=ADMIN_LIKE)
        assert decision.why.startswith("explicit deny"), f"{name}: {decision.why}"


@pytest.mark.attack("producer role sends straight to a signed-only queue", outcome="denied by policy",
                    how="queue policy + role policy evaluated")
def test_producer_cannot_bypass_the_bridge(dev: Synth) -> None:
    w = world(dev)
    ledger = w.arn(w.by_name("AWS::SQS::Queue", dev.config.destination("payments-ledger").physical_name(
        dev.config.prefix)))
    for p in dev.config.producers:
        role = producer_role(w, dev, p.name)
        assert not w.decide(role, "sqs:SendMessage", ledger), p.name
        assert not w.decide(role, "sqs:SendMessage", ledger, identity=ADMIN_LIKE), p.name


@pytest.mark.attack("another topic of the account delivers into a subscribed queue", outcome="denied by policy",
                    how="queue policy evaluated with aws:SourceArn")
def test_only_the_subscribed_topic_delivers(dev: Synth) -> None:
    w = world(dev)
    cfg = dev.config
    topic = cfg.destination("order-events")
    topic_arn = w.arn(w.by_name("AWS::SNS::Topic", topic.physical_name(cfg.prefix)))
    analytics = w.arn(w.by_name("AWS::SQS::Queue", cfg.destination("analytics").physical_name(cfg.prefix)))
    other_topic = topic_arn.rsplit(":", 1)[0] + ":someone-elses-topic"

    assert w.decide(SNS, "sqs:SendMessage", analytics, context={"aws:SourceArn": topic_arn})
    assert not w.decide(SNS, "sqs:SendMessage", analytics, context={"aws:SourceArn": other_topic})
