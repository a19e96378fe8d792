"""The planning fast path (bridge.fast_path) against the general path: the same messages, byte for byte.

Each case runs one event through two bridges over the same config, one with the fast path and one
without (`Bridge(fast_path=False)`), and compares everything they produce: every message sent (body,
attributes, ids, sizes, FIFO group and deduplication ids), every park (record, reason, detail,
destination, route, producer), the summary and the audit event. The records are generated to hit what
sends a record of a plain topic back to the general path: bytes that are not UTF-8 or not sendable,
empty and null values, oversize values, correlation ids that cannot be used, repeated headers, producer
claims, null, signed-Java and malformed header values, broken base64, records that are not objects.
plain_config has a single-destination topic with an inferred producer (returns) and the records include a
topic that is not ASCII, so both guards of fast_path's inline message build are exercised. Most cases compare
messages per destination sorted (send threads finish requests in any order); one sends from the planning
thread and compares the requests in the order they went out.
"""

from __future__ import annotations

import base64
import gc
import json
import random
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from bridge import fast_path as fast_path_module
from bridge.checkpoints import ProgressEntry, progress_entries
from bridge.config import BridgeConfig
from bridge.envelope import OutgoingMessage
from bridge.records import KafkaRecord, decode_event
from bridge.service import BatchReport, Bridge

from tests.helpers import (
    MSK_ARN,
    PRODUCER_HEADER,
    FakeCheckpoints,
    FakeKeys,
    FakeSender,
    FakeStore,
    fixed_clock,
    kafka_event,
    kafka_record,
    make_config,
    make_settings,
    no_sleep,
)

PRINCIPAL = "arn:aws:iam::123456789012:role/p"
PRODUCERS = [  # orders has one producer (records without a claim are attributed to it), payments two
    {"name": "billing", "topics": ["orders", "payments"], "aws_principal": PRINCIPAL},
    {"name": "refunds", "topics": ["payments"], "aws_principal": PRINCIPAL},
]
# plain_config's: returns has one producer too
PLAIN_PRODUCERS = [{**PRODUCERS[0], "topics": ["orders", "payments", "returns"]}, PRODUCERS[1]]
PLAIN_SOURCE = {"kind": "msk", "cluster_arn": MSK_ARN, "topics": ["orders", "payments", "inventory", "returns"],
                "consumer_group_id": "test-bridge"}


def plain_config(**settings: Any) -> BridgeConfig:
    """Topic-only routes: orders, payments and returns are plain, inventory (envelope, FIFO) is not; `settings`
    added. returns has one destination and one producer: the single-step build with a producer attribute."""
    return make_config(
        source=PLAIN_SOURCE,
        producers=PLAIN_PRODUCERS,
        destinations=[
            {"name": "out", "type": "sqs", "header_attributes": ["tenant", "other", "absent"]},
            {"name": "feed", "type": "sns", "header_attributes": ["tenant"]},
            {"name": "small", "type": "sqs", "max_message_bytes": 1024},
            {"name": "env", "type": "sqs", "body": "envelope"},
            {"name": "ordered", "type": "sqs", "fifo": True, "group_id": "key"},
        ],
        routes=[
            {"name": "orders", "match": {"topic": "orders"}, "to": ["out", "feed"]},
            {"name": "payments", "match": {"topic": {"prefix": "pay"}}, "to": ["small"]},
            {"name": "all-orders", "match": {"topic": {"any_of": ["orders", "inventory"]}}, "to": ["small", "out"]},
            {"name": "inventory", "match": {"topic": "inventory"}, "to": ["env", "ordered"]},
            {"name": "returns", "match": {"topic": "returns"}, "to": ["out"]},
        ],
        unmatched={"action": "route", "to": ["out"]},
        # the cap is reached early: the fast path notes the rest
        settings={"audit_max_correlation_ids": 5, **settings},
    )


def claim_check_config(**settings: Any) -> BridgeConfig:
    """An oversize message goes to the claim check: the fast path must hand such a record over."""
    return make_config(
        producers=PRODUCERS,
        destinations=[{"name": "big", "type": "sqs", "max_message_bytes": 1024, "oversize": "claim-check",
                       "header_attributes": ["tenant"]}],
        routes=[{"name": "all", "match": {}, "to": ["big"]}],
        unmatched={"action": "park"},
        settings=settings,
    )


def general_config() -> BridgeConfig:
    """A route on the key: no topic is plain, both bridges take the general path for every record."""
    return make_config(
        destinations=[{"name": "out", "type": "sqs", "header_attributes": ["tenant"]}],
        routes=[{"name": "keyed", "match": {"key": {"prefix": "cust"}}, "to": ["out"]}],
        unmatched={"action": "skip"},
    )


CONFIGS: dict[str, Callable[..., BridgeConfig]] = {
    "plain": plain_config, "claim-check": claim_check_config, "general": general_config}

VALUES: list[str | bytes | None] = [
    None, "", '{"n": 1}', "plain text", "tab\tand\nnewline\r", "control \x01 char", "nonchar \ufffe",
    b"\xff\x00binary", "unicode é ✓ 𝄞", "x" * 1500, b"\x80" * 1200, "   ",
]
# Header attribute values: sendable or not (empty, a control byte, not UTF-8, tab and newline, non-ASCII),
# one longer than the fast path remembers (HEADER_TEXT_BYTES), and some that differ only in a byte
ATTRIBUTE_VALUES: list[str | bytes] = ["acme", "", "x\x02y", b"\xc3\x28", "ok \u2713", "tab\tand\nnewline", "acme ",
                                       "Acme", "\u00e9" * 10, "a" * 300, "a" * 299 + "\x01", b"\xff\xfe", "x\ufffey"]
CORRELATION_IDS: list[str | bytes] = ["cid-1", "", "y" * 300, "bad\x01", b"\xff\xfe", "ünï", "tab\t"]


def random_record(rng: random.Random, offset: int, claims: list[str | bytes]) -> dict[str, Any]:
    # (a topic that is not ASCII: Kafka allows it not, but nothing here relies on that; its record ids are
    # sized in bytes, not characters)
    topic = rng.choice(["orders", "orders", "payments", "inventory", "unrouted", "returns", "rückgaben"])
    headers: list[tuple[str, str | bytes]] = []
    for _ in range(rng.randrange(4)):
        name = rng.choice(["correlation-id", "tenant", "tenant", "other", PRODUCER_HEADER])
        if name == "correlation-id":
            value: str | bytes = rng.choice(CORRELATION_IDS)
        elif name == PRODUCER_HEADER:
            value = rng.choice(claims)
        else:
            value = rng.choice(ATTRIBUTE_VALUES)
        headers.append((name, value))
    record = kafka_record(topic, rng.randrange(3), offset, key=rng.choice([None, "k", "cust-1", b"\xff", ""]),
                          value=rng.choice(VALUES), headers=headers)
    roll = rng.random()
    if roll < 0.03:
        record["key"] = "!not base64!"
    elif roll < 0.06:
        record["value"] = 12
    elif roll < 0.08:
        record["headers"].append({"nulled": None})  # a header with a null value decodes to b""
    elif roll < 0.10:
        record["headers"].append({"flag": [True, 0]})  # bools are not bytes: undecodable
    elif roll < 0.12:
        record["headers"] = "not a list"
    elif roll < 0.13:
        record["headers"].append({"big": [300]})
    elif roll < 0.14:
        record["key"] = ["not", "text"]
    elif roll < 0.15:
        del record["offset"]  # no position: flagged undecodable by decode_event, never lazy
    return record


def run(config: BridgeConfig, event: dict[str, Any], *, fast_path: bool,
        done: Sequence[ProgressEntry] = ()) -> tuple[BatchReport, FakeSender, FakeSender, FakeStore, int]:
    """One bridge over in-memory ports plans `event`; `done`: what a previous attempt at it recorded in the
    checkpoint table (with settings.checkpoints on)."""
    sqs, sns, claims = FakeSender(), FakeSender(), FakeStore()
    table = FakeCheckpoints()
    table.entries.extend(done)
    general_calls = 0

    class Counting(Bridge):
        def _plan(self, record: KafkaRecord, *args: Any, **kwargs: Any) -> None:
            nonlocal general_calls
            general_calls += 1
            super()._plan(record, *args, **kwargs)

    bridge = Counting(config, make_settings(), sqs=sqs, sns=sns, parking_store=FakeStore(), signing_keys=FakeKeys(),
                      claim_check_store=claims, checkpoints=table, sleep=no_sleep, clock=fixed_clock,
                      fast_path=fast_path)
    return bridge.handle(event), sqs, sns, claims, general_calls


def fields(m: OutgoingMessage) -> tuple[Any, ...]:
    body = m.body
    if m.destination.endswith("-bridge-dlq"):  # a park names its parking call, a random id per call
        doc = json.loads(body)
        doc["parking_call"] = "-" * len(doc["parking_call"])
        body = json.dumps(doc)
    return (m.destination, m.record_id, body, m.attributes, m.correlation_id, m.size, m.group_id, m.dedup_id,
            *(m.origin[1:] if m.origin is not None else (None, None)))


def sent(sender: FakeSender) -> dict[str, list[tuple[Any, ...]]]:
    """Every message per destination, by record id (send threads may finish batches in any order)."""
    return {name: sorted(fields(m) for m in messages) for name, messages in sorted(sender.sent.items())}


def parked(report: BatchReport) -> list[tuple[Any, ...]]:
    return [(p.record.record_id, p.record.raw, p.reason, p.detail, p.correlation_id, p.route, p.destination,
             p.producer) for p in report.parked]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_the_fast_path_produces_what_the_general_path_produces(config_name: str, seed: int) -> None:
    # given generated records, some plain and some that are not
    rng = random.Random(f"{config_name}-{seed}")
    # with no claim of billing, the only count of it is the fast path's (its place in the summary shows)
    claims: list[str | bytes] = ["billing", "refunds", "nobody", b"\xff"] if seed % 2 else ["refunds", "nobody"]
    event = kafka_event([random_record(rng, offset, claims) for offset in range(300)])
    if seed % 3 == 0:  # offsets out of order within a partition: the audit's offset spans still hold
        for records in event["records"].values():
            rng.shuffle(records)
    config = CONFIGS[config_name]()

    # when one bridge plans them with the fast path and one without
    fast, fast_sqs, fast_sns, fast_claims, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True)
    slow, slow_sqs, slow_sns, slow_claims, slow_general = run(config, json.loads(json.dumps(event)), fast_path=False)

    # then everything they produced is the same, byte for byte and in the same order where order is kept
    assert sent(fast_sqs) == sent(slow_sqs)
    assert sent(fast_sns) == sent(slow_sns)  # the audit event too: same body, same correlation ids, same order
    assert fast_claims.objects == slow_claims.objects
    assert parked(fast) == parked(slow)
    assert json.dumps(fast.summary) == json.dumps(slow.summary)  # key order included
    assert fast.batch_id == slow.batch_id
    # and the fast path did plan records itself (the comparison would prove nothing otherwise)
    assert slow_general == 300
    if config_name == "general":
        assert fast_general == 300
    else:
        assert fast_general < 200


def requests(sender: FakeSender) -> list[tuple[str, list[str]]]:
    """Every request in the order it was sent (target, record ids): one sending thread keeps that order."""
    return [(target.name, [m.record_id for m in batch]) for target, batch in sender.calls]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("config_name", ["plain", "claim-check"])
def test_the_fast_path_sends_the_same_requests_in_the_same_order_as_the_general_path(
        config_name: str, seed: int) -> None:
    # given generated records (producer claims and oversize values among plain ones), and a bridge that sends
    # from the planning thread (max_concurrency 1): the requests go out in the order the run was given them
    rng = random.Random(f"order-{config_name}-{seed}")
    claims: list[str | bytes] = ["billing", "refunds", "nobody", b"\xff"]
    event = kafka_event([random_record(rng, offset, claims) for offset in range(300)])
    config = CONFIGS[config_name](max_concurrency=1)

    # when one bridge plans them with the fast path and one without
    fast, fast_sqs, fast_sns, _, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True)
    slow, slow_sqs, slow_sns, _, _ = run(config, json.loads(json.dumps(event)), fast_path=False)

    # then they send the same requests, each with the same records, in the same order: a record that goes
    # to the general path between plain ones of its topic comes after the plain ones before it, not before
    assert requests(fast_sqs) == requests(slow_sqs)
    assert requests(fast_sns) == requests(slow_sns)
    assert parked(fast) == parked(slow)
    # (and both paths took turns within a run of one topic, or the order would prove nothing)
    assert 0 < fast_general < 200


def long_run(rng: random.Random, topic: str) -> list[dict[str, Any]]:
    """Two partitions of one plain topic, 300 records each, so that values are decoded ahead in many chunks:
    clean text mostly, with control bytes, noncharacters, large values (one past AHEAD_BYTES), tombstones,
    broken base64, claims and records without a position (never lazy) on and around the chunk edges."""
    edges = {0, 1, 62, 63, 64, 65, 127, 128, 129, 190, 255, 299}
    records = []
    for partition in range(2):
        for offset in range(300):
            value: str | bytes | None = json.dumps({"n": offset, "pad": "p" * rng.randrange(40)})
            headers: list[tuple[str, str | bytes]] = [("correlation-id", f"c-{partition}-{offset}"), ("tenant", "acme")]
            roll = rng.random()
            if offset in edges or roll < 0.1:
                value = rng.choice(["ctl \x01 here", "\x1f", b"\x00", "tab\tok", "nonchar \uffff",
                                    "big" * 22_000, "x" * 70_000, None, "", b"\xff\xfe"])
            elif roll < 0.13:
                headers.append((PRODUCER_HEADER, "refunds"))
            record = kafka_record(topic, partition, offset, value=value, headers=headers)
            if roll > 0.98:
                record["value"] = rng.choice(["!not base64!", 12])
            elif roll > 0.97:
                del record["offset"]
            records.append(record)
    return records


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("topic", ["orders", "payments"])  # three destinations; one (the single-step path)
def test_values_decoded_ahead_in_chunks_give_what_the_general_path_gives(topic: str, seed: int) -> None:
    # given long runs of one plain topic, with values SQS cannot take raw and values the general path must
    # have on and around the edges of the chunks the fast path decodes ahead (fast_path.AHEAD_RECORDS)
    rng = random.Random(f"ahead-{topic}-{seed}")
    event = kafka_event(long_run(rng, topic))

    # when one bridge plans them with the fast path and one without
    fast, fast_sqs, fast_sns, _, fast_general = run(plain_config(), json.loads(json.dumps(event)), fast_path=True)
    slow, slow_sqs, slow_sns, _, _ = run(plain_config(), json.loads(json.dumps(event)), fast_path=False)

    # then everything they produced is the same, and the fast path planned most records itself
    assert sent(fast_sqs) == sent(slow_sqs)
    assert sent(fast_sns) == sent(slow_sns)
    assert parked(fast) == parked(slow)
    assert json.dumps(fast.summary) == json.dumps(slow.summary)
    assert fast_general < 200
    bodies = [m.body for ms in fast_sqs.sent.values() for m in ms]
    assert "tab\tok" in bodies  # a raw body with a tab went out raw from a chunk...
    assert base64.b64encode(b"ctl \x01 here").decode() in bodies  # ...and one with a control byte as base64


@pytest.mark.parametrize("seed", range(3))
def test_with_checkpoints_on_the_fast_path_skips_what_a_previous_attempt_delivered_as_the_general_path_does(
        seed: int) -> None:
    # given checkpoints on, generated records, and a previous attempt at the batch that delivered or parked some
    # of them for some destinations (what a crash or an outage retry leaves in the checkpoint table)
    rng = random.Random(f"checkpoints-{seed}")
    config = plain_config(checkpoints=True)
    event = kafka_event([random_record(rng, offset, ["refunds", "nobody"]) for offset in range(300)])
    earlier = rng.sample(decode_event(json.loads(json.dumps(event))).records, 120)
    delivered = [(r, rng.choice(["out", "feed", "small"])) for r in earlier[:100]]
    done = [*progress_entries("delivered", delivered), *progress_entries("parked", [(r, None) for r in earlier[100:]])]

    # when one bridge plans them with the fast path and one without
    fast, fast_sqs, fast_sns, _, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True, done=done)
    slow, slow_sqs, slow_sns, _, _ = run(config, json.loads(json.dumps(event)), fast_path=False, done=done)

    # then they send, skip and park the same, and the fast path did plan records itself
    assert sent(fast_sqs) == sent(slow_sqs)
    assert sent(fast_sns) == sent(slow_sns)
    assert parked(fast) == parked(slow)
    assert json.dumps(fast.summary) == json.dumps(slow.summary)
    assert fast.summary["checkpoint"]["on"] is True
    assert fast.summary["checkpoint"]["skipped"] > 0
    assert fast_general < 200
    sent_now = {(m.record_id, name) for sender in (fast_sqs, fast_sns) for name, ms in sender.sent.items() for m in ms}
    assert not sent_now & {(r.record_id, name) for r, name in delivered}


def test_a_plain_record_sent_by_the_fast_path_is_parked_with_its_route_and_producer_when_delivery_fails() -> None:
    # given a plain topic whose destination refuses every entry
    config = make_config(producers=PRODUCERS[:1], destinations=[{"name": "out", "type": "sqs"}],
                         routes=[{"name": "orders", "match": {"topic": "orders"}, "to": ["out"]}])
    event = kafka_event([kafka_record(offset=i, headers=[("correlation-id", f"c{i}")]) for i in range(3)])
    reports = []
    for fast_path in (True, False):
        sqs = FakeSender(reject=lambda t, _m: ("InvalidParameterValue", True) if t.name == "out" else None)
        bridge = Bridge(config, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                        signing_keys=FakeKeys(), sleep=no_sleep, clock=fixed_clock, fast_path=fast_path)
        reports.append(bridge.handle(event))

    # then both park each record for that destination the same way
    fast, slow = reports
    assert parked(fast) == parked(slow)
    assert [(p.reason, p.route, p.destination, p.producer, p.correlation_id) for p in fast.parked] == [
        ("delivery_failed", "orders", "out", "billing", f"c{i}") for i in range(3)]


@pytest.mark.parametrize("seed", range(5))
def test_a_key_seen_before_in_the_batch_is_judged_as_the_first_time_good_or_broken(seed: int) -> None:
    # given a plain topic whose records share a few keys, valid base64 or not (the fast path checks a key
    # once per batch), the broken ones repeated and each between good ones, and keys that are not text
    rng = random.Random(f"keys-{seed}")
    config = make_config(destinations=[{"name": "out", "type": "sqs", "header_attributes": ["tenant"]}],
                         routes=[{"name": "all", "match": {"topic": "orders"}, "to": ["out"]}])
    records = []
    for offset in range(400):
        record = kafka_record(offset=offset, key=rng.choice(["a", "b", "cust-1", None, ""]),
                              headers=[("correlation-id", f"c{offset}"), ("tenant", "acme")])
        roll = rng.random()
        if roll < 0.1:
            record["key"] = rng.choice(["!not base64!", "YQ", "YQ==="])  # broken the same way each time
        elif roll < 0.12:
            record["key"] = rng.choice([["a"], {"k": 1}, 7])  # not hashable, or not text
        records.append(record)
    event = kafka_event(records)

    # when both paths plan them
    fast, fast_sqs, *_, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True)
    slow, slow_sqs, *_ = run(config, json.loads(json.dumps(event)), fast_path=False)

    # then every broken key is parked undecodable each time it comes, and the rest is sent, as the general
    # path does
    assert sent(fast_sqs) == sent(slow_sqs)
    assert parked(fast) == parked(slow)
    broken = sum(1 for r in records if r.get("key") not in (None, *(kafka_record(key=k)["key"]
                                                                   for k in ("a", "b", "cust-1", ""))))
    assert [p.reason for p in fast.parked] == ["undecodable"] * broken
    assert broken > 20
    assert fast_general == broken


@pytest.mark.parametrize("room", [1024, 3, 0])
@pytest.mark.parametrize("seed", range(4))
def test_a_header_attribute_value_seen_before_in_the_batch_gets_the_text_it_got_the_first_time(
        seed: int, room: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a plain topic whose records repeat a few header attribute values (the fast path finds a value's
    # text once per batch, for at most `room` values), sendable or not, a header repeated in a record (its
    # last value counts), and a run of values each seen once
    monkeypatch.setattr(fast_path_module, "HEADER_TEXTS", room)
    rng = random.Random(f"attributes-{seed}")
    config = make_config(destinations=[{"name": "out", "type": "sqs", "header_attributes": ["tenant", "region"]}],
                         routes=[{"name": "all", "match": {"topic": "orders"}, "to": ["out"]}])
    records = []
    for offset in range(400):
        headers: list[tuple[str, str | bytes]] = [("correlation-id", f"c{offset}")]
        for _ in range(rng.randrange(4)):
            value = rng.choice(["acme"] * 4 + ATTRIBUTE_VALUES) if offset % 100 < 70 else f"t{offset}"
            headers.append((rng.choice(["tenant", "tenant", "region", "other"]), value))
        records.append(kafka_record(offset=offset, headers=headers))
    event = kafka_event(records)

    # when both paths plan them
    fast, fast_sqs, *_, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True)
    slow, slow_sqs, *_ = run(config, json.loads(json.dumps(event)), fast_path=False)

    # then every message has the attributes the general path gives it, and the fast path planned them all
    assert sent(fast_sqs) == sent(slow_sqs)
    assert parked(fast) == parked(slow) == []
    assert fast_general == 0
    attributes = {m.record_id: dict(m.attributes) for m in fast_sqs.sent["out"]}
    assert sum(a.get("tenant") == "acme" for a in attributes.values()) > 20  # repeated values are covered
    with_tenant = {f"orders-0-{i}" for i, r in enumerate(records) if any("tenant" in h for h in r["headers"])}
    assert any("tenant" not in attributes[i] for i in with_tenant)  # and values that are not sent


def _header_texts_of_each_plan(config: BridgeConfig, event: dict[str, Any]) -> tuple[list[dict[bytes, str]], Any]:
    """Run the fast path and hand back the `header_texts` of each `plan_plain` call as it returned, read from the
    real function's frame (a profile hook on every thread: nothing is replaced)."""
    seen: list[dict[bytes, str]] = []

    def watch(frame: Any, event: str, arg: Any) -> None:
        if event == "return" and frame.f_code is fast_path_module.plan_plain.__code__:
            seen.append(dict(frame.f_locals["header_texts"]))

    earlier, earlier_threads = sys.getprofile(), threading.getprofile()
    threading.setprofile(watch)
    sys.setprofile(watch)
    try:
        result = run(config, event, fast_path=True)
    finally:
        sys.setprofile(earlier)  # a profiler or coverage tool's hook, if one was running, goes on after this
        threading.setprofile(earlier_threads)
    return seen, result


def test_reading_the_plans_gives_back_the_profile_hooks_it_found() -> None:
    # given profile hooks already set (a profiler's, on this thread and for new threads)
    def earlier(frame: Any, event: str, arg: Any) -> None:
        return None

    config = make_config(destinations=[{"name": "out", "type": "sqs", "header_attributes": ["tenant"]}],
                         routes=[{"name": "all", "match": {"topic": "orders"}, "to": ["out"]}])
    before = sys.getprofile(), threading.getprofile()
    sys.setprofile(earlier)
    threading.setprofile(earlier)
    try:
        # when the plans are read with the helper's own hook
        seen, _ = _header_texts_of_each_plan(config, kafka_event([kafka_record(offset=0, headers=[("tenant", "a")])]))
        after = sys.getprofile(), threading.getprofile()
    finally:
        sys.setprofile(before[0])
        threading.setprofile(before[1])

    # then it read them, and both hooks are the earlier ones again, not None
    assert seen
    assert after == (earlier, earlier)


def test_the_header_text_cache_holds_at_most_1024_values_of_at_most_256_bytes() -> None:
    # given a plain topic with a header attribute, whose records carry 200 distinct sendable values of 257-300
    # bytes, then 1,500 distinct ones of 10-256 bytes (docs/decisions.md: at most 1,024 values of at most 256
    # bytes each, 256 KiB, whatever the batch holds)
    config = make_config(destinations=[{"name": "out", "type": "sqs", "header_attributes": ["tenant"]}],
                         routes=[{"name": "all", "match": {"topic": "orders"}, "to": ["out"]}])
    long = [f"L{i:04d}".ljust(257 + i % 44, "x") for i in range(200)]
    short = [f"S{i:04d}".ljust(10 + i % 247, "y") for i in range(1500)]
    event = kafka_event([kafka_record(offset=offset, headers=[("correlation-id", f"c{offset}"), ("tenant", value)])
                         for offset, value in enumerate(long + short)])

    # when the fast path plans them
    caches, (_, fast_sqs, *_, fast_general) = _header_texts_of_each_plan(config, json.loads(json.dumps(event)))

    # then it remembered the first 1,024 short values and no long one: the bound, not the batch, stopped it
    assert len(caches) == 1
    cache = caches[0]
    assert len(cache) <= 1024
    assert max(len(value) for value in cache) <= 256
    assert sum(len(value) for value in cache) <= 1024 * 256
    assert sorted(cache) == sorted(v.encode() for v in short[:1024])
    # and every record was sent, by the fast path, with its value
    assert fast_general == 0
    assert sorted(dict(m.attributes)["tenant"] for m in fast_sqs.sent["out"]) == sorted(long + short)


@pytest.mark.parametrize("spare", [0, 1, -1])
def test_a_message_at_its_destination_limit_is_sent_and_one_byte_over_goes_the_general_way(spare: int) -> None:
    # given a plain topic whose destination takes 1,024 bytes, and a record whose message is that, or one
    # byte more or less
    config = make_config(destinations=[{"name": "small", "type": "sqs", "max_message_bytes": 1024}],
                         routes=[{"name": "all", "match": {"topic": "orders"}, "to": ["small"]}])
    probe = run(config, kafka_event([kafka_record(value="", headers=[("correlation-id", "c")])]),
                fast_path=True)[1].sent["small"][0]
    value = "v" * (1024 - (probe.size - 4) - spare)  # "" goes as the 4-byte body "null" with an encoding
    overhead = len("content-encoding") + len("String") + len("empty")
    value += "v" * overhead
    event = kafka_event([kafka_record(value=value, headers=[("correlation-id", "c")])])

    # when both paths plan it
    fast, fast_sqs, *_, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True)
    slow, slow_sqs, *_ = run(config, json.loads(json.dumps(event)), fast_path=False)

    # then they agree: sent at the limit and under it (by the fast path), parked too_large over it
    assert sent(fast_sqs) == sent(slow_sqs)
    assert parked(fast) == parked(slow)
    if spare >= 0:
        assert fast_sqs.sent["small"][0].size == 1024 - spare
        assert fast_general == 0
    else:
        assert [p.reason for p in fast.parked] == ["too_large"]
        assert fast_general == 1


def test_the_audit_counts_keep_the_general_paths_order_when_the_two_paths_take_turns() -> None:
    # given plain records (orders, attributed to billing) and records the general path takes (a claim of
    # refunds on payments), taking turns; offsets out of order; more correlation ids than the audit keeps
    config = make_config(
        producers=PRODUCERS, destinations=[{"name": "out", "type": "sqs"}],
        routes=[{"name": "orders", "match": {"topic": "orders"}, "to": ["out"]},
                {"name": "payments", "match": {"topic": "payments"}, "to": ["out"]}],
        settings={"audit_max_correlation_ids": 3})
    event = kafka_event([
        kafka_record("orders", 0, 7, headers=[("correlation-id", "a")]),
        kafka_record("payments", 0, 1, headers=[(PRODUCER_HEADER, "refunds"), ("correlation-id", "b")]),
        kafka_record("orders", 1, 5, headers=[("correlation-id", "c")]),
        kafka_record("orders", 1, 9, headers=[("correlation-id", "d")]),
        kafka_record("orders", 1, 3, headers=[("correlation-id", "a")]),
    ])

    # when both paths plan them
    fast, _, fast_sns, _, fast_general = run(config, json.loads(json.dumps(event)), fast_path=True)
    slow, _, slow_sns, _, _ = run(config, json.loads(json.dumps(event)), fast_path=False)

    # then the summary and the audit event are the same, key order included
    assert fast_general == 1
    assert json.dumps(fast.summary) == json.dumps(slow.summary)
    assert list(fast.summary["producers_unverified"]) == ["billing", "refunds"]
    assert list(fast.summary["routes"]) == ["orders", "payments"]
    assert fast.summary["partitions"] == {"orders-0": [7, 7], "payments-0": [1, 1], "orders-1": [3, 9]}
    assert sent(fast_sns) == sent(slow_sns)
    audit = json.loads(fast_sns.sent["test-bridge-dev-audit"][0].body)
    assert audit["correlation_ids"] == ["a", "b", "c"]
    assert audit["correlation_ids_truncated"] is True


class GcWatchingSender(FakeSender):
    """Notes whether the cyclic GC was on at each send; raises `fail` from every send when set."""

    def __init__(self, fail: BaseException | None = None) -> None:
        super().__init__()
        self.gc_on: list[bool] = []
        self.fail = fail

    def send_batch(self, target: Any, messages: Any) -> Any:
        self.gc_on.append(gc.isenabled())
        if self.fail is not None and not target.name.endswith("audit"):
            raise self.fail
        return super().send_batch(target, messages)


def gc_bridge(sqs: FakeSender, sns: FakeSender) -> Bridge:
    return Bridge(make_config(settings={"max_concurrency": 1}), make_settings(), sqs=sqs, sns=sns,
                  parking_store=FakeStore(), signing_keys=FakeKeys(), sleep=no_sleep, clock=fixed_clock)


def test_the_cyclic_gc_is_off_while_a_batch_is_planned_and_sent_and_on_again_after() -> None:
    sqs, sns = GcWatchingSender(), GcWatchingSender()
    assert gc.isenabled()

    gc_bridge(sqs, sns).handle(kafka_event([kafka_record(offset=i) for i in range(25)]))

    assert sqs.gc_on == [False, False, False]  # the three requests of 25 records
    assert sns.gc_on == [False]  # the audit event
    assert gc.isenabled()


def test_the_cyclic_gc_is_on_again_after_a_batch_that_failed() -> None:
    sqs = GcWatchingSender(fail=RuntimeError("the sender broke"))

    with pytest.raises(RuntimeError, match="the sender broke"):
        gc_bridge(sqs, FakeSender()).handle(kafka_event([kafka_record(offset=i) for i in range(25)]))

    assert sqs.gc_on[0] is False
    assert gc.isenabled()


def test_a_bridge_leaves_the_cyclic_gc_off_when_it_found_it_off() -> None:
    gc.disable()
    try:
        gc_bridge(FakeSender(), FakeSender()).handle(kafka_event([kafka_record()]))
        assert not gc.isenabled()
    finally:
        gc.enable()
