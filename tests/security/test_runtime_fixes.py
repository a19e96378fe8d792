"""Attacks that got through before issue 6, run through the whole Bridge over in-memory ports: replays
(FIFO deduplication, the signed message id, the freshness window), the order of the checks, null
keys and values, unverified attributions, events from another cluster and undecodable header names."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from bridge.delivery import BatchOutcome, Target
from bridge.envelope import OutgoingMessage
from bridge.records import ForeignEventError
from bridge.service import Bridge

from tests.helpers import FakeKeys, FakeSender, kafka_event, kafka_record, make_config, signed_record
from tests.security.test_runtime_attacks import KEYS, LEDGER, genuine, reasons, trust_config


class FifoQueues(FakeSender):
    """SQS as FIFO queues see it: a message whose MessageDeduplicationId was accepted before (within the
    5-minute window, which every test here fits in) is acknowledged and dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        fresh = []
        for m in messages:
            if m.dedup_id is not None and (target.name, m.dedup_id) in self.seen:
                continue  # acknowledged by SQS, never delivered
            if m.dedup_id is not None:
                self.seen.add((target.name, m.dedup_id))
            fresh.append(m)
        super().send_batch(target, fresh)
        return BatchOutcome(())


@pytest.fixture
def fifo_bridge(make_bridge: Callable[..., Bridge], keys: FakeKeys) -> tuple[Bridge, FifoQueues]:
    keys.keys.update(KEYS)
    queues = FifoQueues()
    return make_bridge(trust_config(), sqs=queues), queues


def attr(message: OutgoingMessage, name: str) -> str | None:
    return dict(message.attributes).get(name)


def parked(bridge: Bridge, sqs: FakeSender) -> list[dict[str, Any]]:
    return [json.loads(m.body) for m in sqs.sent.get(bridge.dlq.name, [])]


@pytest.mark.attack("old signed record replayed at the position a genuine one will take (FIFO)",
                    outcome="deduplicated: the genuine record is kept",
                    how="runtime: Bridge over FIFO-deduplicating in-memory SQS")
def test_replay_at_a_genuine_records_position_does_not_suppress_it(fifo_bridge: tuple[Bridge, FifoQueues]) -> None:
    bridge, queues = fifo_bridge
    # given an old signed record copied to offset 5 (a redrive event, or a recreated topic, lets anyone
    # who can invoke or produce choose the position)
    old = genuine(offset=1, message_id="m-old")
    old["offset"] = 5
    bridge.handle(kafka_event([old]))
    # when the genuine record at offset 5 arrives
    bridge.handle(kafka_event([genuine(offset=5, message_id="m-new")]))

    # then both reached the queue: SQS did not drop the genuine one as a duplicate
    assert [attr(m, "message-id") for m in queues.sent[LEDGER]] == ["payer:m-old", "payer:m-new"]


@pytest.mark.attack("unsigned records at one position with different content (FIFO)",
                    outcome="deduplicated: by content, both kept",
                    how="runtime: Bridge over FIFO-deduplicating in-memory SQS")
def test_unverified_records_dedup_on_their_content(make_bridge: Callable[..., Bridge]) -> None:
    queues = FifoQueues()
    bridge = make_bridge(make_config(destinations=[{"name": "out", "type": "sqs", "fifo": True}]), sqs=queues)

    bridge.handle(kafka_event([kafka_record(offset=5, value='{"n": 1}')]))
    bridge.handle(kafka_event([kafka_record(offset=5, value='{"n": 2}')]))

    assert [m.body for m in queues.sent["out"]] == ['{"n": 1}', '{"n": 2}']


@pytest.mark.attack("verbatim copy of a signed record at another offset", outcome="deduplicated: by signed message id",
                    how="runtime: Bridge over FIFO-deduplicating in-memory SQS")
def test_replayed_signed_record_is_a_duplicate(fifo_bridge: tuple[Bridge, FifoQueues], sqs: FakeSender) -> None:
    bridge, queues = fifo_bridge
    first = genuine(offset=1)
    copy = json.loads(json.dumps(first))
    copy["offset"], copy["partition"] = 77, 2

    bridge.handle(kafka_event([first]))
    bridge.handle(kafka_event([copy]))

    assert len(queues.sent[LEDGER]) == 1
    assert attr(queues.sent[LEDGER][0], "message-id") == "payer:m-1"
    # the open queue (standard) gets both, with the same message-id to deduplicate on
    assert [attr(m, "message-id") for m in queues.sent["open"]] == ["payer:m-1", "payer:m-1"]


@pytest.mark.attack("signed record without a message id", outcome="parked: missing_message_id",
                    how="runtime: Bridge over in-memory ports")
def test_signed_record_without_message_id(make_bridge: Callable[..., Bridge], keys: FakeKeys,
                                          sqs: FakeSender) -> None:
    keys.keys.update(KEYS)
    bridge = make_bridge(trust_config())

    bridge.handle(kafka_event([signed_record(KEYS["payer"], "payer", "payments", message_id=None)]))

    assert sqs.sent.get(LEDGER, []) == []
    assert reasons(parked(bridge, sqs)) == ["missing_message_id"]


@pytest.mark.attack("signed record replayed after the producer's freshness window", outcome="parked: stale",
                    how="runtime: Bridge over in-memory ports, fixed clock")
def test_stale_replay(make_bridge: Callable[..., Bridge], keys: FakeKeys, sqs: FakeSender) -> None:
    keys.keys.update(KEYS)
    doc = trust_config()
    payer = doc.producer("payer")
    assert payer is not None
    # the bridge's clock says 2026-01-01T00:00:00Z; the record was signed an hour before
    producers = [{"name": p.name, "topics": list(p.topics), "aws_principal": p.aws_principal, "signing": True,
                  **({"max_age_seconds": 600} if p.name == "payer" else {})} for p in doc.producers]
    bridge = make_bridge(make_config(producers=producers,
                                     destinations=[{"name": LEDGER, "type": "sqs", "accept_from": ["payer"]}],
                                     routes=[{"name": "all", "match": {"topic": "payments"}, "to": [LEDGER]}]))
    old = signed_record(KEYS["payer"], "payer", "payments", timestamp=1767225600000 - 3_600_000)
    fresh = signed_record(KEYS["payer"], "payer", "payments", offset=1, timestamp=1767225600000 - 60_000)

    bridge.handle(kafka_event([old, fresh]))

    assert [attr(m, "record-id") for m in sqs.sent[LEDGER]] == ["payments-0-1"]
    assert reasons(parked(bridge, sqs)) == ["stale"]


@pytest.mark.attack("record of an untrusted producer whose key the bridge may not read",
                    outcome="parked: untrusted_producer", how="runtime: Bridge over in-memory ports, key read denied")
def test_accept_from_is_checked_before_the_key_is_read(make_bridge: Callable[..., Bridge], keys: FakeKeys,
                                                       sqs: FakeSender) -> None:
    # on AWS the bridge role reads only the keys of producers some accept_from lists
    keys.keys.update({"payer": KEYS["payer"]})
    bridge = make_bridge(trust_config())

    bridge.handle(kafka_event([genuine("refunder")]))

    assert reasons(parked(bridge, sqs)) == ["untrusted_producer"]  # not signing_key_unavailable: no redrive loop
    assert "refunder" not in keys.fetched


def _sign_then_null(field: str) -> dict[str, Any]:
    """A record signed over an empty key/value, delivered with a null one instead."""
    rec = signed_record(KEYS["payer"], "payer", "payments", key="" if field == "key" else "k",
                        value="" if field == "value" else "{}")
    if field == "key":
        del rec["key"]
    else:
        rec["value"] = None
    return rec


@pytest.mark.attack("empty key or value replaced by null (a tombstone)", outcome="parked: invalid_signature",
                    how="runtime: Bridge over in-memory ports")
@pytest.mark.parametrize("field", ["key", "value"])
def test_null_is_not_empty(make_bridge: Callable[..., Bridge], keys: FakeKeys, sqs: FakeSender, field: str) -> None:
    keys.keys.update(KEYS)
    bridge = make_bridge(trust_config())

    bridge.handle(kafka_event([_sign_then_null(field)]))

    assert sqs.sent.get(LEDGER, []) == []
    assert reasons(parked(bridge, sqs)) == ["invalid_signature"]


@pytest.mark.attack("unverified producer claim presented to consumers", outcome="marked unverified",
                    how="runtime: Bridge over in-memory ports")
def test_unverified_claims_never_look_verified(make_bridge: Callable[..., Bridge], keys: FakeKeys,
                                               sqs: FakeSender, sns: FakeSender) -> None:
    keys.keys.update(KEYS)
    cfg = make_config(
        producers=[{"name": "payer", "topics": ["payments"], "aws_principal": "arn:aws:iam::123456789012:role/p",
                    "signing": True}],
        destinations=[{"name": LEDGER, "type": "sqs", "accept_from": ["payer"]},
                      {"name": "open", "type": "sqs", "body": "envelope"}],
        routes=[{"name": "all", "match": {}, "to": [LEDGER, "open"]}])
    bridge = make_bridge(cfg)
    claimed = kafka_record(topic="payments", headers=[("x-bridge-producer", "payer")])  # unsigned claim

    report = bridge.handle(kafka_event([signed_record(KEYS["payer"], "payer", "payments"),
                                        {**claimed, "offset": 1}]))

    verified, unverified = sqs.sent["open"]
    assert (attr(verified, "producer"), attr(verified, "producer-unverified")) == ("payer", None)
    assert (attr(unverified, "producer"), attr(unverified, "producer-unverified")) == (None, "payer")
    assert json.loads(verified.body)["producer_verified"] is True
    assert json.loads(unverified.body)["producer_verified"] is False
    assert (report.summary["producers"], report.summary["producers_unverified"]) == ({"payer": 1}, {"payer": 1})


@pytest.mark.attack("event naming another cluster handed to the function", outcome="refused at runtime",
                    how="runtime: Bridge over in-memory ports (redrive events exempt)")
def test_event_from_another_cluster_is_refused(make_bridge: Callable[..., Bridge], keys: FakeKeys,
                                               sqs: FakeSender) -> None:
    keys.keys.update(KEYS)
    bridge = make_bridge(trust_config())
    event = kafka_event([genuine()])
    event["eventSourceArn"] = event["eventSourceArn"].replace("0b1c2d3e", "ffffffff")

    with pytest.raises(ForeignEventError, match=r"source\.cluster_arn"):
        bridge.handle(event)
    assert sqs.sent == {}

    event["bridgeRedrive"] = {"payments-0-0": None}
    bridge.handle(event)  # a parked record from a cluster the bridge read before
    assert len(sqs.sent[LEDGER]) == 1


@pytest.mark.attack("self-managed event naming other brokers", outcome="refused at runtime",
                    how="runtime: Bridge over in-memory ports")
def test_event_from_other_brokers_is_refused(make_bridge: Callable[..., Bridge], sqs: FakeSender) -> None:
    source = {"kind": "self-managed", "topics": ["orders"], "consumer_group_id": "g", "auth": "sasl_scram_512",
              "bootstrap_servers": ["k1.internal:9096", "k2.internal:9096"],
              "secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:kafka-AbCdEf",
              "network": {"vpc_id": "vpc-0abc"}}
    bridge = make_bridge(make_config(source=source))
    event = kafka_event([kafka_record()], source="SelfManagedKafka")

    event["bootstrapServers"] = "evil.example:9092"
    with pytest.raises(ForeignEventError, match=r"source\.bootstrap_servers"):
        bridge.handle(event)
    event["bootstrapServers"] = "k2.internal:9096,k1.internal:9096"
    bridge.handle(event)
    assert len(sqs.sent["out"]) == 1


@pytest.mark.attack("header name that is not valid UTF-8 (lone surrogate)", outcome="parked: undecodable",
                    how="runtime: Bridge over in-memory ports, the batch goes on")
def test_header_name_that_is_not_utf8(make_bridge: Callable[..., Bridge], keys: FakeKeys, sqs: FakeSender) -> None:
    keys.keys.update(KEYS)
    bridge = make_bridge(trust_config())
    bad = genuine(offset=1)
    bad["headers"].append({"\ud800": [1]})
    event = json.loads(json.dumps(kafka_event([genuine(), bad])))  # as Lambda's JSON would carry it

    bridge.handle(event)

    assert [attr(m, "record-id") for m in sqs.sent[LEDGER]] == ["payments-0-0"]
    assert reasons(parked(bridge, sqs), None) == ["undecodable"]
    assert base64.b64decode(bad["value"])  # the parked record keeps its bytes
