"""A plain record gets no KafkaRecord (bridge.records.KafkaBatch.items, bridge.fast_path.plan_plain).

`decode_event` keeps a record whose dict has a well-typed position as that dict; the fast path plans and sends
it from the dict, and the messages' origin holds the dict. A KafkaRecord is made only where one is needed: for
the general path (`record_of`), for a message whose delivery failed (parked with its record), with checkpoints
on (`batch.records`). These tests hold the two paths to the same results where the entries differ from the
records they stand for: failed deliveries (parks), the checkpoint entries written, the batch id, and
`batch.records` against what decode_event made before; and count the KafkaRecords made.
"""

from __future__ import annotations

import gc
import json
import random
from typing import Any

import pytest
from bridge.audit import batch_id_for
from bridge.checkpoints import progress_entries
from bridge.delivery import Target
from bridge.envelope import OutgoingMessage
from bridge.records import KafkaRecord, decode_event, decode_record
from bridge.service import BatchReport, Bridge

from tests.helpers import (
    FakeCheckpoints,
    FakeKeys,
    FakeSender,
    FakeStore,
    fixed_clock,
    kafka_event,
    kafka_record,
    make_settings,
    no_sleep,
)
from tests.unit.test_fast_path import parked, plain_config, random_record, sent


def flaky(seed: int) -> FakeSender:
    """A sender that refuses some entries by a seeded plan: retryable codes (retried, then parked when they keep
    failing) and sender faults (parked at once)."""
    rng = random.Random(seed)

    def verdict(target: Target, _message: OutgoingMessage) -> tuple[str, bool] | None:
        if target.name.endswith(("-bridge-dlq", "-audit")):  # parks and the audit event go through
            return None
        roll = rng.random()
        if roll < 0.15:
            return ("ServiceUnavailable", False)
        if roll < 0.25:
            return ("InvalidParameterValue", True)
        return None

    return FakeSender(reject=verdict)


def run(event: dict[str, Any], *, fast_path: bool, checkpoints: bool, seed: int,
        done: list[Any] | None = None) -> tuple[BatchReport, FakeSender, FakeSender, FakeCheckpoints]:
    table = FakeCheckpoints()
    table.entries.extend(done or [])
    sqs, sns = flaky(seed), flaky(seed + 1000)
    bridge = Bridge(plain_config(checkpoints=checkpoints), make_settings(), sqs=sqs, sns=sns,
                    parking_store=FakeStore(), signing_keys=FakeKeys(), checkpoints=table, sleep=no_sleep,
                    clock=fixed_clock, fast_path=fast_path)
    bridge._deliverer._max_concurrency = 1  # one thread: the seeded refusals fall on the same messages
    return bridge.handle(json.loads(json.dumps(event))), sqs, sns, table


def written(table: FakeCheckpoints, done: int) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """The checkpoint entries the run wrote (after the `done` it was given), in a stable order."""
    return sorted((e.shard, e.kind, e.destination, tuple(sorted(e.tokens))) for e in table.entries[done:])


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("checkpoints", [False, True])
def test_failed_deliveries_of_plain_records_park_and_checkpoint_as_the_general_path_does(
        checkpoints: bool, seed: int) -> None:
    # given generated records (most of them plain) and senders that refuse some entries
    rng = random.Random(f"entries-{seed}")
    event = kafka_event([random_record(rng, offset, ["refunds", "nobody"]) for offset in range(200)])
    earlier = rng.sample(decode_event(json.loads(json.dumps(event))).records, 40) if checkpoints else []
    done = progress_entries("delivered", [(r, rng.choice(["out", "feed", "small"])) for r in earlier])

    # when one bridge plans them with the fast path and one without
    fast, fast_sqs, fast_sns, fast_table = run(event, fast_path=True, checkpoints=checkpoints, seed=seed, done=done)
    slow, slow_sqs, slow_sns, slow_table = run(event, fast_path=False, checkpoints=checkpoints, seed=seed,
                                               done=done)

    # then they deliver, park (each with its record: position, timestamp, raw dict) and checkpoint the same
    assert sent(fast_sqs) == sent(slow_sqs)
    assert sent(fast_sns) == sent(slow_sns)
    assert parked(fast) == parked(slow)
    assert [p.record for p in fast.parked] == [p.record for p in slow.parked]
    assert all(type(p.record) is KafkaRecord for p in fast.parked)
    assert json.dumps(fast.summary) == json.dumps(slow.summary)
    assert written(fast_table, len(done)) == written(slow_table, len(done))
    # and deliveries did fail, among them plain records' (the comparison would prove little otherwise)
    assert sum(1 for p in fast.parked if p.reason == "delivery_failed" and p.route == "orders") > 3
    if checkpoints:
        assert fast.summary["checkpoint"]["skipped"] > 0
        assert written(fast_table, len(done))


class Alive(FakeSender):
    """A sender that counts, at each request, the KafkaRecords alive of the event's records (gc.get_objects: a
    KafkaRecord is tracked; other tests' records, garbage not yet collected, are not counted)."""

    def __init__(self, event: dict[str, Any]) -> None:
        super().__init__()
        self.raws = {id(r) for rs in event["records"].values() for r in rs}
        self.alive: list[int] = []

    def send_batch(self, target: Target, messages: Any) -> Any:
        # getattr: another test's record may lack fields (made by __new__ alone), garbage not yet collected
        self.alive.append(sum(1 for o in gc.get_objects()
                              if type(o) is KafkaRecord and id(getattr(o, "raw", None)) in self.raws))
        return super().send_batch(target, messages)


def plain_event(n: int) -> dict[str, Any]:
    return kafka_event([kafka_record("orders", i % 3, i, key="k", value=f"v{i}", headers=[("correlation-id", f"c{i}")])
                        for i in range(n)])


def test_a_batch_of_plain_records_is_planned_and_sent_without_a_kafka_record() -> None:
    # given a batch of plain records and a destination that takes them all
    event = plain_event(30)
    sqs = Alive(event)
    bridge = Bridge(plain_config(), make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=FakeKeys(), sleep=no_sleep, clock=fixed_clock)

    # when the bridge handles it
    report = bridge.handle(event)

    # then every record was delivered and no KafkaRecord was alive while they were sent (main held one per record)
    assert report.summary["delivered"]["out"] == 30
    assert len(sqs.alive) >= 3
    assert set(sqs.alive) == {0}
    raws = {f"{r['topic']}-{r['partition']}-{r['offset']}": r for rs in event["records"].values() for r in rs}
    assert sorted(m.record_id for m in sqs.sent["out"]) == sorted(raws)
    assert all(m.origin[0] is raws[m.record_id] for m in sqs.sent["out"])  # the event's dict, no record


def test_a_plain_record_whose_delivery_failed_is_parked_with_the_record_decode_event_would_have_made() -> None:
    # given plain records of which the destination refuses two
    sqs = FakeSender(reject=lambda t, m: ("InvalidParameterValue", True)
                     if t.name == "out" and m.record_id in {"orders-1-4", "orders-0-9"} else None)
    bridge = Bridge(plain_config(), make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=FakeKeys(), sleep=no_sleep, clock=fixed_clock)
    event = plain_event(12)

    # when the bridge handles them
    report = bridge.handle(event)

    # then the two are parked with their records, equal to the lazy records decode_record makes of their dicts
    raws = {r["offset"]: r for rs in event["records"].values() for r in rs}
    assert sorted(((p.reason, p.record) for p in report.parked), key=lambda rp: rp[1].offset) == [
        ("delivery_failed", decode_record(raws[4])), ("delivery_failed", decode_record(raws[9]))]
    assert all(p.record.raw is raws[p.record.offset] and p.record.is_lazy for p in report.parked)


def test_entries_are_the_event_dicts_and_records_what_decode_record_makes_of_them() -> None:
    from bridge.audit import batch_id_of_runs  # noqa: PLC0415 - new here: the other tests run against main's too
    from bridge.records import record_of  # noqa: PLC0415

    # given an event with well-typed records, one without an offset, one whose timestamp is a string, one not a dict
    # (the KafkaRecords main's decode_event made: lazy records of the first, decode_record's of the others)
    good = [kafka_record("orders", p, o, value="x") for p, o in [(0, 1), (1, 2), (0, 3)]]
    no_offset = kafka_record("orders", 2, 4)
    del no_offset["offset"]
    odd_timestamp = {**kafka_record("orders", 0, 5), "timestamp": "1700000000000"}
    no_timestamp, no_type = kafka_record("orders", 1, 6), kafka_record("orders", 1, 7)
    del no_timestamp["timestamp"], no_type["timestampType"]
    odd_type = {**kafka_record("orders", 1, 8), "timestampType": 5, "timestamp": True}
    event = kafka_event([*good, no_offset, odd_timestamp, no_timestamp, no_type, odd_type])
    event["records"]["orders-9"] = ["not a record"]

    # when it is decoded
    batch = decode_event(event)
    keyed = [(key, r) for key, rs in event["records"].items() for r in rs]

    # then a well-typed dict is its own entry and the others are KafkaRecords; records are made once
    kept = [type(r) is dict and "offset" in r for _, r in keyed]
    assert kept.count(True) == 7  # the timestamp fields are read when a record is made, as decode_record does
    assert [type(e) is dict for e in batch.items] == kept
    assert all(e is r for e, (_, r) in zip(batch.items, keyed, strict=True) if type(e) is dict)
    assert batch.records is batch.records
    assert batch.records == tuple(decode_record(r, key) for key, r in keyed)
    assert [bool(r.undecodable) for r in batch.records] == [r == "not a record" or "offset" not in r for _, r in keyed]
    assert [record_of(e) for e in batch.items] == list(batch.records)
    made = {r.offset: r for r in batch.records}
    assert [(made[o].timestamp, made[o].timestamp_type) for o in (5, 6, 7, 8)] == [
        (0, "CREATE_TIME"), (0, "CREATE_TIME"), (made[7].timestamp, ""), (0, "5")]
    assert made[7].timestamp > 0
    # and the batch id of its runs is batch_id_for its records
    assert batch_id_of_runs(batch.runs) == batch_id_for(batch.records)
    assert batch_id_of_runs(batch.runs, redrive=True) == batch_id_for(batch.records, redrive=True)


def odd_item(rng: random.Random, topic: str, partition: int, offset: int) -> Any:
    """A record as an event may hold it, well-typed or not (decode_event keeps the first kind as its dict)."""
    item: Any = kafka_record(topic, partition, offset, value="v")
    roll = rng.random()
    if roll < 0.05:
        del item["offset"]
    elif roll < 0.08:
        item["partition"] = str(partition)
    elif roll < 0.11:
        item["timestamp"] = None
    elif roll < 0.13:
        del item["topic"]
    elif roll < 0.15:
        item = "not a record"
    elif roll < 0.17:
        item["offset"] = True  # a bool is not an offset
    return item


@pytest.mark.parametrize("seed", range(200))
def test_the_batch_id_of_decode_events_runs_is_batch_id_for_its_records(seed: int) -> None:
    # given an event of one to a few hundred records: several topics and partitions, a key's list holding
    # records of other partitions or topics (not what Lambda sends, but an event may), offsets with gaps and
    # out of order, records that are not well-typed or not records at all
    rng = random.Random(seed)
    grouped: dict[str, list[Any]] = {}
    for _ in range(rng.randrange(1, 6)):
        topic, partition = rng.choice(["orders", "orders-1", "pay"]), rng.randrange(4)
        key = f"{topic}-{partition}" if rng.random() < 0.8 else rng.choice(["orders-0", "pay-1", "x"])
        items = grouped.setdefault(key, [])
        start = rng.randrange(0, 10**rng.randrange(1, 12))
        for i in range(rng.randrange(1, 80)):
            t, p = (topic, partition) if rng.random() < 0.9 else (rng.choice(["orders", "pay"]), rng.randrange(3))
            items.append(odd_item(rng, t, p, start + i * rng.randrange(1, 3)))
        if rng.random() < 0.3:
            rng.shuffle(items)
    event = {"eventSource": "aws:kafka", "records": grouped}

    # when it is decoded
    batch = decode_event(event)

    from bridge.audit import batch_id_of_runs  # noqa: PLC0415 - new here

    # then its runs give the id batch_id_for gives its records (the definition), for a redrive too
    assert sum(len(offsets) for _, _, offsets in batch.runs) == len(batch.records)
    for redrive in (False, True):
        assert batch_id_of_runs(batch.runs, redrive=redrive) == batch_id_for(batch.records, redrive=redrive)
