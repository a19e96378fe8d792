"""Parked payloads are as protected as delivered ones: a customer-managed key, a bucket policy that
keeps the account's other principals out, an expiry, and a redrive that replays only what was parked."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import SQS_MAX_MESSAGE_BYTES
from bridge.service import Bridge

from bridge_local import redrive as redrive_tool
from tests.helpers import FakeSender, FakeStore, kafka_event, kafka_record, make_config
from tests.infra.conftest import Synth
from tests.security.conftest import OPERATOR_ROLE
from tests.security.policy import ADMIN_LIKE, PolicyWorld, insider

PARKED_OBJECT = "parked/orders/0/1-out-too_large-0123456789ab.json"


def bucket(w: PolicyWorld) -> tuple[str, str]:
    """The parking bucket (the stack output names it; a claim-check bucket may exist too)."""
    logical_id = w.template["Outputs"]["ParkingBucketName"]["Value"]["Ref"]
    return logical_id, w.arn(logical_id)


def bridge_role(w: PolicyWorld, synth: Synth) -> str:
    return w.role_arn(w.role_id_by_description(f"Kafka bridge {synth.config.name}"))


@pytest.mark.attack("insider with s3:* on * overwrites or plants a parked record", outcome="denied by policy",
                    how="bucket policy evaluated")
def test_only_the_bridge_writes_parked_records(every_variant: Synth) -> None:
    w = PolicyWorld(every_variant.data)
    _, arn = bucket(w)
    obj = f"{arn}/{PARKED_OBJECT}"

    assert w.decide(bridge_role(w, every_variant), "s3:PutObject", obj)
    assert w.decide(insider(), "s3:PutObject", obj, identity=ADMIN_LIKE).why.startswith("explicit deny")


@pytest.mark.attack("insider with s3:* on * reads parked payloads", outcome="denied by policy",
                    how="bucket policy evaluated (the operators' role may)")
def test_only_the_bridge_and_operators_read_parked_records(hardened: Synth) -> None:
    w = PolicyWorld(hardened.data)
    _, arn = bucket(w)
    obj = f"{arn}/{PARKED_OBJECT}"

    assert w.decide(OPERATOR_ROLE, "s3:GetObject", obj, identity=ADMIN_LIKE)
    for action in ("s3:GetObject", "s3:GetObjectVersion"):
        assert w.decide(insider(), action, obj, identity=ADMIN_LIKE).why.startswith("explicit deny")


def test_parked_records_are_under_a_customer_managed_key_and_expire(dev: Synth) -> None:
    w = PolicyWorld(dev.data)
    logical_id, _ = bucket(w)
    props = dev.data["Resources"][logical_id]["Properties"]
    (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    default = rule["ServerSideEncryptionByDefault"]

    assert default["SSEAlgorithm"] == "aws:kms"
    assert dev.data["Resources"][default["KMSMasterKeyID"]["Fn::GetAtt"][0]]["Type"] == "AWS::KMS::Key"
    (lifecycle,) = props["LifecycleConfiguration"]["Rules"]
    days = dev.config.settings.parking_retention_days
    assert (lifecycle["ExpirationInDays"], lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"]) == (days, days)


@pytest.mark.attack("parking-bucket object replaced before a redrive", outcome="refused at runtime: digest mismatch",
                    how="runtime: Bridge -> in-memory bucket -> bridge redrive")
def test_replaced_object_is_not_redriven(make_bridge: Callable[..., Bridge], sqs: FakeSender,
                                         store: FakeStore) -> None:
    cfg = make_config(destinations=[{"name": "out", "type": "sqs", "max_message_bytes": 1024},
                                    {"name": "big", "type": "sqs"}],
                      routes=[{"name": "all", "match": {}, "to": ["out"]}])
    bridge = make_bridge(cfg)
    # given a record too large for the DLQ, so its parked document goes to the bucket
    bridge.handle(kafka_event([kafka_record(offset=1, value="x" * (SQS_MAX_MESSAGE_BYTES + 10))]))
    (dlq_message,) = sqs.sent[bridge.dlq.name]
    (key,) = store.objects
    # when someone who could write the bucket replaces the object with a record of their choosing
    doc = json.loads(store.objects[key])
    doc["record"]["value"] = "eyJhdHRhY2tlciI6IHRydWV9"  # {"attacker": true}, small enough to deliver
    store.objects[key] = json.dumps(doc).encode()
    sqs.sent.clear()

    class Dlq:
        name = bridge.dlq.name
        pending = [{"MessageId": "m0", "ReceiptHandle": "r0", "Body": dlq_message.body}]

        def receive(self, visibility_seconds: int) -> list[dict[str, Any]]:
            out, self.pending = self.pending, []
            return out

        def hold(self, receipt_handles: Any, visibility_seconds: int) -> None:
            return None

        def delete(self, receipt_handles: Any) -> int:
            raise AssertionError("a message whose object was replaced must stay in the DLQ")

    with pytest.raises(redrive_tool.RedriveError, match="1 skipped; all left in the DLQ"):
        redrive_tool.redrive(Dlq(), lambda uri: json.loads(store.objects[uri.split("/", 3)[3]]),
                             lambda event: bridge.handle(event).result(),
                             redrive_tool.RedriveOptions(batch_size=10, visibility_seconds=60))

    # then nothing is replayed
    assert sqs.sent.get("out", []) == []
