"""Dead-letter queues: nobody but their source may write them, and no other queue may use them."""

from __future__ import annotations

from typing import Any

import pytest

from infra.constructs.messaging import CONSUMER_ACTIONS
from infra.constructs.operator_access import DLQ_ACTIONS
from tests.infra.conftest import Synth
from tests.security.policy import ADMIN_LIKE, PolicyWorld, insider

SNS = "service:sns.amazonaws.com"


def dead_letter_queues(w: PolicyWorld) -> dict[str, str]:
    """DLQ logical id -> the ARN of its source (a queue by RedrivePolicy, a topic by subscription), or ''."""
    out: dict[str, str] = {}
    r = w.resolver
    for k in w.ids("AWS::SQS::Queue"):
        target = w.resources[k]["Properties"].get("RedrivePolicy", {}).get("deadLetterTargetArn")
        if target is not None:
            out[target["Fn::GetAtt"][0]] = r.arn(k)
    for k in w.ids("AWS::SNS::Subscription"):
        props = w.resources[k]["Properties"]
        target = props.get("RedrivePolicy", {}).get("deadLetterTargetArn")
        if target is not None:
            out[target["Fn::GetAtt"][0]] = r.resolve(props["TopicArn"])
    return out


@pytest.mark.attack("insider with sqs:* on * writes into a dead-letter queue (to have it redriven)",
                    outcome="denied by policy", how="queue policy of every DLQ evaluated")
def test_nobody_writes_a_dlq_directly(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    dlqs = dead_letter_queues(w)
    assert len(dlqs) >= 4
    for dlq in dlqs:
        decision = w.decide(insider(), "sqs:SendMessage", w.arn(dlq), identity=ADMIN_LIKE)
        assert decision.why.startswith("explicit deny"), f"{dlq}: {decision.why}"


@pytest.mark.attack("another topic delivers into a subscription's dead-letter queue", outcome="denied by policy",
                    how="queue policy evaluated with aws:SourceArn")
def test_only_the_subscribed_topic_writes_its_dlq(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    checked = 0
    for dlq, source in dead_letter_queues(w).items():
        if ":sns:" not in source:
            continue
        assert w.decide(SNS, "sqs:SendMessage", w.arn(dlq), context={"aws:SourceArn": source}), dlq
        assert not w.decide(SNS, "sqs:SendMessage", w.arn(dlq), context={"aws:SourceArn": source + "-other"}), dlq
        checked += 1
    assert checked >= 1


def _allow_policy(w: PolicyWorld, logical_id: str) -> dict[str, Any]:
    policy = w.resources[logical_id]["Properties"].get("RedriveAllowPolicy")
    assert policy is not None, f"{logical_id} has no RedriveAllowPolicy (allowAll by default)"
    resolved: dict[str, Any] = w.resolver.resolve(policy)
    return resolved


@pytest.mark.attack("another queue of the account names a DLQ as its own dead-letter queue",
                    outcome="denied by policy", how="RedriveAllowPolicy of every DLQ read (byQueue / denyAll)")
def test_only_the_source_queue_may_redrive_into_a_dlq(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    for dlq, source in dead_letter_queues(w).items():
        policy = _allow_policy(w, dlq)
        if ":sqs:" in source:
            assert policy == {"redrivePermission": "byQueue", "sourceQueueArns": [source]}, dlq
        else:
            assert policy == {"redrivePermission": "denyAll"}, dlq
    bridge_dlq = w.by_name("AWS::SQS::Queue", every_variant.config.bridge_dlq_name)
    assert _allow_policy(w, bridge_dlq) == {"redrivePermission": "denyAll"}


@pytest.mark.attack("a producer role (or the bridge role, or any role of the account) with sqs:* on * receives, "
                    "deletes, hides or purges the parked records in the bridge DLQ",
                    outcome="denied by policy: only settings.operator_role_arns take messages off the bridge DLQ",
                    how="bridge DLQ policy evaluated for each producer role's own policies plus sqs:* on *")
def test_only_the_operators_take_parked_records_off_the_bridge_dlq(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    dlq = w.arn(w.by_name("AWS::SQS::Queue", every_variant.config.bridge_dlq_name))
    producers = [w.role_arn(k) for k in w.ids("AWS::IAM::Role")
                 if "Kafka bridge producer" in str(w.resources[k]["Properties"].get("Description", ""))]
    bridge = w.role_arn(w.role_id_by_description(f"Kafka bridge {every_variant.config.name}"))
    assert producers
    wide = [{"Effect": "Allow", "Action": "sqs:*", "Resource": "*"}]
    for role in [*producers, bridge, insider()]:
        for action in CONSUMER_ACTIONS:
            decision = w.decide(role, action, dlq, identity=w.identity_statements(role) + wide)
            assert decision.why.startswith("explicit deny"), f"{role} {action}: {decision.why}"
    for operator in every_variant.config.settings.operator_role_arns:  # with no identity policy of their own
        for action in DLQ_ACTIONS:
            assert w.decide(operator, action, dlq, identity=[]), f"{operator} {action}"
