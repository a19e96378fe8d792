"""Parking format and S3 overflow; audit truncation, counts and size."""

from __future__ import annotations

import hashlib
import json
import random
import re
import uuid
from collections.abc import Sequence
from itertools import groupby
from operator import attrgetter

import pytest
from bridge.audit import BATCH_NAMESPACE, BatchTally, audit_document, batch_id_for
from bridge.config import SNS_DEFAULT_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES
from bridge.delivery import BatchOutcome, Deliverer, SendCallError, Target
from bridge.envelope import OutgoingMessage
from bridge.parking import ObjectStoreError, Parking, ParkingFailedError, ParkRequest, park_id
from bridge.records import KafkaRecord, decode_event, decode_record

from tests.helpers import FakeSender, FakeStore, fixed_clock, kafka_record

DLQ = Target("b-dlq", "sqs", "https://sqs.us-east-1.amazonaws.com/123456789012/b-dlq", SQS_MAX_MESSAGE_BYTES)


def digest(raw: dict[str, object]) -> str:
    """The record digest in parking-bucket keys: sha256 of the canonical JSON, first 12 hex."""
    return hashlib.sha256(json.dumps(raw, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]


def parking(sender: FakeSender, store: FakeStore | None = None) -> Parking:
    deliverer = Deliverer({"sqs": sender, "sns": sender}, max_attempts=2, base_delay_ms=0, sleep=lambda s: None)
    return Parking(deliverer, DLQ, store or FakeStore(), fixed_clock)


def request(value: str = "v", reason: str = "unroutable") -> ParkRequest:
    return ParkRequest(decode_record(kafka_record(offset=5, value=value)), reason, "why", "cid-5", "rt", "dest",
                       "prod")


def test_parked_message_has_the_contract_fields_and_attributes() -> None:
    sender = FakeSender()

    parking(sender).park([request()], "arn:src")

    (m,) = sender.sent["b-dlq"]
    doc = json.loads(m.body)
    pid = park_id(request())
    assert re.fullmatch(r"[0-9a-f]{32}", doc.pop("parking_call"))
    assert doc == {"reason": "unroutable", "detail": "why", "route": "rt", "destination": "dest",
                   "correlation_id": "cid-5", "producer": "prod", "record_id": "orders-0-5", "park_id": pid,
                   "event_source_arn": "arn:src", "parked_at": "2026-01-01T00:00:00+00:00",
                   "record": kafka_record(offset=5, value="v")}
    assert dict(m.attributes) == {"reason": "unroutable", "correlation-id": "cid-5", "record-id": "orders-0-5",
                                  "park-id": pid}


class AnswerLostSender(FakeSender):
    """Stores every batch, then (for the first `lost` calls) fails the call as a timed-out request does:
    SQS has the messages, the caller cannot know."""

    def __init__(self, lost: int) -> None:
        super().__init__()
        self.lost = lost

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        outcome = super().send_batch(target, messages)
        if self.lost:
            self.lost -= 1
            raise SendCallError("ReadTimeoutError", "no answer within the read timeout")
        return outcome


def test_copies_left_by_retried_dlq_sends_carry_one_park_id_per_park() -> None:
    # given: a DLQ whose first answer is lost after it stored the batch (the retry stores it again)
    sender = AnswerLostSender(lost=1)
    requests = [request(), request(reason="too_large"), ParkRequest(request().record, "unroutable", "why", "cid-5",
                                                                    "rt", "other-dest", "prod")]

    # when: the records are parked (the retry succeeds)
    parking(sender).park(requests, None)

    # then: two copies of each park, recognisable as such; three different parks
    sent = sender.sent["b-dlq"]
    assert len(sent) == 6
    ids = [dict(m.attributes)["park-id"] for m in sent]
    assert ids[:3] == ids[3:]
    assert len(set(ids)) == 3
    assert [json.loads(m.body)["park_id"] for m in sent] == ids


def test_park_id_names_the_record_its_destination_and_reason_not_the_call() -> None:
    # the same park in a later invocation (the mapping's retry after ParkingFailedError) has the same id
    assert park_id(request()) == park_id(request())
    assert len(park_id(request())) == 32
    # records without a readable offset share a record id, never a park id
    a = ParkRequest(decode_record(kafka_record(offset=-1, value="a")), "undecodable", "x", "c")
    b = ParkRequest(decode_record(kafka_record(offset=-1, value="b")), "undecodable", "x", "c")
    assert a.record.record_id == b.record.record_id
    assert park_id(a) != park_id(b)


def test_document_over_the_sqs_limit_goes_to_s3_and_the_dlq_gets_a_pointer() -> None:
    sender, store = FakeSender(), FakeStore()

    parking(sender, store).park([request("x" * SQS_MAX_MESSAGE_BYTES, "too_large")], None)

    (m,) = sender.sent["b-dlq"]
    doc = json.loads(m.body)
    assert "record" not in doc
    key = f"parked/orders/0/5-dest-too_large-{digest(kafka_record(offset=5, value='x' * SQS_MAX_MESSAGE_BYTES))}.json"
    assert doc["record_s3_uri"] == f"s3://fake-bucket/{key}"
    assert json.loads(store.objects[key])["record"]["offset"] == 5


def test_undecodable_records_without_an_offset_get_one_s3_object_each() -> None:
    # given two different records too large for the DLQ, neither with an offset (both orders-0--1)
    sender, store = FakeSender(), FakeStore()
    raws = [{"topic": "orders", "partition": 0, "value": c * SQS_MAX_MESSAGE_BYTES} for c in "ab"]
    requests = [ParkRequest(decode_record(raw), "undecodable", "no offset", "cid") for raw in raws]

    # when
    parking(sender, store).park(requests, None)

    # then: two objects, each holding its own record
    uris = [json.loads(m.body)["record_s3_uri"] for m in sender.sent["b-dlq"]]
    assert len(set(uris)) == 2
    assert [json.loads(store.objects[u.removeprefix("s3://fake-bucket/")])["record"] for u in uris] == raws
    assert all(u.startswith("s3://fake-bucket/parked/orders/0/-1-none-undecodable-") for u in uris)


def test_parked_documents_are_packed_like_any_other_messages() -> None:
    sender = FakeSender()

    parking(sender).park([request("x" * 300_000) for _ in range(4)], None)  # ~400 KB each once base64

    assert [len(b) for b in sender.calls_to("b-dlq")] == [2, 2]


def test_dlq_refusal_after_retries_raises_parking_failed() -> None:
    sender = FakeSender(reject=lambda t, m: ("ServiceUnavailable", False))

    with pytest.raises(ParkingFailedError, match="ServiceUnavailable"):
        parking(sender).park([request()], None)
    assert len(sender.calls) == 2


def test_s3_refusal_raises_parking_failed() -> None:
    class BrokenStore:
        def put(self, key: str, body: bytes) -> str:
            raise ObjectStoreError("AccessDenied")

    with pytest.raises(ParkingFailedError, match="parking bucket"):
        Parking(Deliverer({"sqs": FakeSender(), "sns": FakeSender()}, max_attempts=1, base_delay_ms=0), DLQ,
                BrokenStore(), fixed_clock).park([request("x" * SQS_MAX_MESSAGE_BYTES)], None)


def tally_of(n: int, cid_len: int = 36) -> BatchTally:
    tally = BatchTally()
    for i in range(n):
        tally.see(decode_record(kafka_record(partition=i % 2, offset=i)), f"{i:0{cid_len}d}")
    return tally


def document(tally: BatchTally, cap: int, max_bytes: int = SNS_DEFAULT_MAX_MESSAGE_BYTES) -> dict[str, object]:
    body = audit_document(tally, batch_id="b1", event_source_arn="arn", started_at="s", finished_at="f",
                          max_correlation_ids=cap, max_bytes=max_bytes)
    assert len(body.encode()) <= max_bytes
    return json.loads(body)


def test_audit_counts_partitions_and_correlation_ids() -> None:
    tally = tally_of(5)
    tally.delivered["q"] += 4
    tally.parked["unroutable"] += 1

    doc = document(tally, cap=100)

    assert doc["type"] == "bridge.batch"
    assert doc["records"] == 5
    assert doc["delivered"] == {"q": 4}
    assert doc["parked"] == {"unroutable": 1}
    assert doc["skipped"] == 0
    assert doc["partitions"] == {"orders-0": [0, 4], "orders-1": [1, 3]}
    assert len(doc["correlation_ids"]) == 5
    assert doc["correlation_ids_truncated"] is False


def test_audit_caps_correlation_ids_at_the_setting() -> None:
    doc = document(tally_of(150), cap=100)

    assert len(doc["correlation_ids"]) == 100
    assert doc["correlation_ids_truncated"] is True


def test_audit_drops_more_ids_when_needed_to_fit_one_sns_message() -> None:
    doc = document(tally_of(1000, cid_len=256), cap=1000, max_bytes=200_000)  # all ids would be ~260 KB

    assert doc["correlation_ids_truncated"] is True
    assert 0 < len(doc["correlation_ids"]) < 1000


def test_batch_id_is_the_same_for_the_same_records() -> None:
    a = [decode_record(kafka_record(offset=i)) for i in range(3)]
    b = [decode_record(kafka_record(offset=i)) for i in range(3)]

    assert batch_id_for(a) == batch_id_for(b) != batch_id_for(a[:2])


def reference_batch_id(records: Sequence[KafkaRecord], *, redrive: bool = False) -> str:
    """The batch id as first defined: uuid5 of the sha256 of every record id, one per line (a redrive's
    text prefixed). A batch checkpointed or audited before an upgrade keeps its id after it."""
    text = "\n".join(f"{r.topic}-{r.partition}-{r.offset}" for r in records)
    digest = hashlib.sha256(("redrive\n" + text if redrive else text).encode("utf-8")).hexdigest()
    return str(uuid.uuid5(BATCH_NAMESPACE, digest))


@pytest.mark.parametrize("seed", range(40))
def test_batch_id_is_the_record_ids_digest_for_any_order_of_partitions(seed: int) -> None:
    # given: records of a few topics and partitions, in runs, interleaved or one by one, offsets from -1 up,
    # topic names with dashes and non-ASCII characters (batch_id_for formats each partition's run at once)
    rng = random.Random(seed)
    topics = ["orders", "a-b-1", "zé", "t"]
    records = [decode_record(kafka_record(rng.choice(topics), rng.randrange(3), rng.randrange(-1, 10**12)))
               for _ in range(rng.randrange(0, 5))]
    for _ in range(rng.randrange(0, 6)):
        topic, partition = rng.choice(topics), rng.randrange(-1, 100)
        records += [decode_record(kafka_record(topic, partition, o)) for o in range(rng.randrange(1, 30))]
    if seed % 3 == 0:
        rng.shuffle(records)

    # then
    assert batch_id_for(records) == reference_batch_id(records)
    assert batch_id_for(tuple(records), redrive=True) == reference_batch_id(records, redrive=True)


def groupby_batch_id(records: Sequence[KafkaRecord], *, redrive: bool = False) -> str:
    """batch_id_for as it was up to session 7 (groupby on (topic, partition), one run joined at a time)."""
    runs = []
    for (topic, partition), run in groupby(records, attrgetter("topic", "partition")):
        prefix = f"{topic}-{partition}-"
        runs.append(prefix + ("\n" + prefix).join(map(format, map(attrgetter("offset"), run))))
    text = "\n".join(runs)
    digest = hashlib.sha256(("redrive\n" + text if redrive else text).encode("utf-8")).hexdigest()
    return str(uuid.uuid5(BATCH_NAMESPACE, digest))


@pytest.mark.parametrize("seed", range(300))
def test_batch_id_is_the_same_as_before_for_any_batch(seed: int) -> None:
    # given: a batch as Lambda sends it (each partition's records together, in any order of partitions) or
    # not (shuffled, or one partition's records in several places), of one record up to a few hundred, with
    # gaps in the offsets, partitions and topics that differ only in one of the two, topics whose names look
    # like another topic's prefix ("a-1" partition 2 and "a" partition 12), lazy records from an event and
    # records built with their fields
    rng = random.Random(seed)
    topics = rng.sample(["orders", "a", "a-1", "zé", "t%d", "orders-0"], rng.randrange(1, 4))
    partitions = rng.sample([0, 1, 2, 12, 100, -1], rng.randrange(1, 4))
    event: dict[str, list[dict[str, object]]] = {}
    for _ in range(rng.choice([1, 1, 2, 3, 8])):
        topic, partition = rng.choice(topics), rng.choice(partitions)
        offset = rng.choice([0, rng.randrange(10**3), rng.randrange(10**12), 2**63 - 400])
        items = event.setdefault(f"{topic}-{partition}", [])
        for _ in range(rng.choice([1, 1, 2, rng.randrange(1, 50), rng.randrange(50, 300)])):
            items.append(kafka_record(topic, partition, offset))
            offset += rng.choice([1, 1, 1, 2, 7, 10**6])  # compacted topics and transaction markers leave gaps
    records = list(decode_event({"eventSource": "aws:kafka", "records": event}).records)
    if seed % 4 == 1:
        rng.shuffle(records)
    elif seed % 4 == 2:  # a partition's run cut in two by another's
        records = records[len(records) // 2:] + records[:len(records) // 2]
    elif seed % 4 == 3:  # built with their fields, not lazy
        records = [KafkaRecord(r.topic, r.partition, r.offset, 0, "CREATE_TIME", None, b"v", (), {}) for r in records]
    if seed % 7 == 0:
        records = records[:1]

    # then: the id is the one the bridge gave the same batch before (checkpoints and audit consumers keep it)
    for redrive in (False, True):
        expected = reference_batch_id(records, redrive=redrive)
        assert groupby_batch_id(records, redrive=redrive) == expected
        assert batch_id_for(records, redrive=redrive) == expected
        assert batch_id_for(tuple(records), redrive=redrive) == expected


def test_batch_id_of_a_known_batch_never_changes() -> None:
    records = [decode_record(kafka_record("orders", p, o)) for p in (2, 0) for o in (7, 8)]

    assert batch_id_for(records) == reference_batch_id(records) == "bf1b5cdb-9ba2-584c-b7fd-2211774387f3"
    assert batch_id_for([]) == reference_batch_id([])


def test_a_tally_keeps_only_the_correlation_ids_the_audit_event_can_list() -> None:
    # given: 150 records, the audit event lists at most 100 ids, and the tally is told so
    tally = BatchTally(max_correlation_ids=100)
    for i in range(150):
        tally.see(decode_record(kafka_record(offset=i)), f"cid-{i}")
    tally.see(decode_record(kafka_record(offset=0)), "cid-0")  # a repeat is not "more"

    doc = document(tally, cap=100)

    assert len(tally.correlation_ids) == 100
    assert doc["correlation_ids"] == [f"cid-{i}" for i in range(100)]
    assert doc["correlation_ids_truncated"] is True
    exactly = BatchTally(max_correlation_ids=3)
    for i in range(3):
        exactly.see(decode_record(kafka_record(offset=i)), f"cid-{i}")
    assert document(exactly, cap=3)["correlation_ids_truncated"] is False


@pytest.mark.parametrize("order", [("zeta", "alpha", "mid"), ("mid", "zeta", "alpha")])
def test_the_summary_lists_delivered_and_parked_counts_by_name_whatever_order_they_came_in(
        order: tuple[str, ...]) -> None:
    # send threads and the checkpoint writer count deliveries in the order requests finish; one batch, one body
    tally = BatchTally()
    for n, name in enumerate(order, start=1):
        tally.delivered[name] += n
        tally.parked[f"reason-{name}"] += n

    summary = tally.summary("b1", None)

    assert list(summary["delivered"]) == ["alpha", "mid", "zeta"]
    assert list(summary["parked"]) == ["reason-alpha", "reason-mid", "reason-zeta"]
    assert summary["delivered"] == {name: n for n, name in enumerate(order, start=1)}
