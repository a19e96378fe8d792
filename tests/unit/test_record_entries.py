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
    """A sender that counts, at each request, the KafkaRecords alive (gc.get_objects: a KafkaRecord is tracked)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.alive: list[int] = []

    def send_batch(self, target: Target, messages: Any) -> Any:
        self.alive.append(sum(1 for o in gc.get_objects() if type(o) is KafkaRecord))
        return super().send_batch(target, messages)


def plain_event(n: int) -> dict[str, Any]:
    return kafka_event([kafka_record("orders", i % 3, i, key="k", value=f"v{i}", headers=[("correlation-id", f"c{i}")])
                        for i in range(n)])


def test_a_batch_of_plain_records_is_planned_and_sent_without_a_kafka_record() -> None:
    # given a batch of plain records and a destination that takes them all
    sqs = Alive()
    bridge = Bridge(plain_config(), make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=FakeKeys(), sleep=no_sleep, clock=fixed_clock)
    event = plain_event(30)

    # when the bridge handles it
    report = bridge.handle(event)

    # then every record was delivered and no KafkaRecord was alive while they were sent (main held one per record)
    assert report.summary["delivered"]["out"] == 30
    assert len(sqs.alive) >= 3
    assert set(sqs.alive) == {0}
    assert [m.origin[0] for m in sqs.sent["out"]] == [r for rs in event["records"].values() for r in rs]


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
    from bridge.records import record_of  # noqa: PLC0415 - new here: the other tests run against main's code too

    # given an event with well-typed records, one without an offset, one whose timestamp is a string, one not a dict
    good = [kafka_record("orders", p, o, value="x") for p, o in [(0, 1), (1, 2), (0, 3)]]
    no_offset = kafka_record("orders", 2, 4)
    del no_offset["offset"]
    odd_timestamp = {**kafka_record("orders", 0, 5), "timestamp": "1700000000000"}
    event = kafka_event([*good, no_offset, odd_timestamp])
    event["records"]["orders-9"] = ["not a record"]

    # when it is decoded
    batch = decode_event(event)
    keyed = [(key, r) for key, rs in event["records"].items() for r in rs]

    # then a well-typed dict is its own entry and the others are KafkaRecords; records are made once
    kept = [type(r) is dict and "offset" in r and type(r["timestamp"]) is int for _, r in keyed]
    assert kept.count(True) == 3
    assert [type(e) is dict for e in batch.items] == kept
    assert all(e is r for e, (_, r) in zip(batch.items, keyed, strict=True) if type(e) is dict)
    assert batch.records is batch.records
    assert batch.records == tuple(decode_record(r, key) for key, r in keyed)
    assert [bool(r.undecodable) for r in batch.records] == [r == "not a record" or "offset" not in r for _, r in keyed]
    assert [record_of(e) for e in batch.items] == list(batch.records)
    # and the batch id is the same over the entries, the records, and entries of one kind only
    assert batch_id_for(batch.items) == batch_id_for(batch.records) == batch_id_for(list(batch.records))
    assert batch_id_for(batch.items[:3]) == batch_id_for(batch.records[:3])
    assert batch_id_for(batch.items[3:], redrive=True) == batch_id_for(batch.records[3:], redrive=True)
