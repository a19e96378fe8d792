"""Topics accept subscriptions from the configured queues only; queues with named consumers are read by
them only; the function's logs are under a customer-managed key; retention is what the config says."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synth
from tests.security.conftest import LEDGER_CONSUMER
from tests.security.policy import ADMIN_LIKE, PolicyWorld, insider

ATTACKER_QUEUE = "arn:aws:sqs:us-east-1:123456789012:someone-elses-queue"


@pytest.mark.attack("insider subscribes an endpoint of their own to a destination or the audit topic",
                    outcome="denied by policy", how="topic policy evaluated with sns:Endpoint")
def test_only_configured_queues_subscribe(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    cfg = every_variant.config
    # the topics that carry records (the alarm topic carries alarms, and operators subscribe their pagers)
    carrying = [d.physical_name(cfg.prefix) for d in cfg.destinations if d.type == "sns" and d.created]
    for name in [*carrying, cfg.audit_topic_name]:
        topic = w.arn(w.by_name("AWS::SNS::Topic", name))
        configured = [w.resolver.resolve(r["Properties"]["Endpoint"])
                      for r in every_variant.resources("AWS::SNS::Subscription").values()
                      if w.resolver.resolve(r["Properties"]["TopicArn"]) == topic]
        for endpoint in configured:
            assert w.decide(insider(), "sns:Subscribe", topic, identity=ADMIN_LIKE,
                            context={"sns:Endpoint": endpoint, "sns:Protocol": "sqs"}), endpoint
        for endpoint in (ATTACKER_QUEUE, "https://attacker.example/hook"):
            decision = w.decide(insider(), "sns:Subscribe", topic, identity=ADMIN_LIKE,
                                context={"sns:Endpoint": endpoint})
            assert decision.why.startswith("explicit deny"), f"{cfg.name} {topic}: {decision.why}"


@pytest.mark.attack("insider with sqs:* on * receives, deletes or purges a queue with named consumers",
                    outcome="denied by policy", how="queue policy evaluated")
def test_only_named_consumers_read_a_queue(hardened: Synth) -> None:
    w = PolicyWorld(hardened.data)
    cfg = hardened.config
    ledger = w.arn(w.by_name("AWS::SQS::Queue", cfg.destination("payments-ledger").physical_name(cfg.prefix)))
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:PurgeQueue", "sqs:ChangeMessageVisibility"):
        assert w.decide(LEDGER_CONSUMER, action, ledger, identity=ADMIN_LIKE), action
        assert w.decide(insider(), action, ledger, identity=ADMIN_LIKE).why.startswith("explicit deny"), action


def test_function_logs_use_a_customer_managed_key_only_logs_may_use(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    groups = every_variant.resources("AWS::Logs::LogGroup")
    assert groups
    for logical_id, group in groups.items():
        key_ref = group["Properties"].get("KmsKeyId")
        assert key_ref is not None, f"{logical_id} is not encrypted with a customer-managed key"
        key = w.arn(key_ref["Fn::GetAtt"][0])
        name = group["Properties"]["LogGroupName"]
        ours = f"arn:aws:logs:us-east-1:123456789012:log-group:{name}"
        logs = "service:logs.us-east-1.amazonaws.com"
        assert w.decide(logs, "kms:GenerateDataKey", key, context={"kms:EncryptionContext:aws:logs:arn": ours})
        assert not w.decide(logs, "kms:GenerateDataKey", key, context={
            "kms:EncryptionContext:aws:logs:arn": "arn:aws:logs:us-east-1:123456789012:log-group:other"})


def test_queue_retention_is_configurable_and_dlqs_keep_fourteen_days(hardened: Synth) -> None:
    queues = {r["Properties"]["QueueName"]: r["Properties"] for r in hardened.resources("AWS::SQS::Queue").values()}
    cfg = hardened.config

    assert queues[cfg.destination("analytics").physical_name(cfg.prefix)]["MessageRetentionPeriod"] == 86_400
    for name, props in queues.items():
        if name.endswith(("-dlq", "-dlq.fifo")):
            assert props["MessageRetentionPeriod"] == 1_209_600, name
