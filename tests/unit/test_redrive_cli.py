"""`bridge redrive` without a stack: parked documents -> merged entries -> redrive events -> the run."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from bridge.parking import ParkRequest, document_digest, parked_document
from bridge.records import REDRIVE_KEY, decode_record
from bridge.service import Bridge

from bridge_local.redrive import (
    DocumentUnavailableError,
    InvokeError,
    ParkedMessage,
    RedriveError,
    RedriveOptions,
    build_events,
    lambda_transport,
    merge_parked,
    park_mismatch,
    parse_parked,
    redrive,
    resolve_records,
    s3_fetcher,
    select,
    verified_park_id,
)
from tests.helpers import (
    MSK_ARN,
    FakeCheckpoints,
    FakeKeys,
    FakeSender,
    FakeStore,
    MemoryLedger,
    fixed_clock,
    kafka_event,
    kafka_record,
    make_config,
    make_settings,
    no_sleep,
    parked_docs,
)


def parked(record: dict[str, Any], reason: str, destination: str | None = None,
           arn: str | None = MSK_ARN, s3_uri: str | None = None) -> dict[str, Any]:
    """A parked-record document exactly as bridge.parking writes it (or its S3-pointer form)."""
    doc = parked_document(ParkRequest(decode_record(record), reason, f"{reason} detail", "corr",
                                      "route" if destination else None, destination), arn, "2026-01-01T00:00:00")
    if s3_uri:
        digest = document_digest(doc)
        del doc["record"]
        doc["record_s3_uri"], doc["record_s3_sha256"] = s3_uri, digest
    return doc


def sqs_message(n: int, doc: Mapping[str, Any] | str) -> dict[str, Any]:
    return {"MessageId": f"m{n}", "ReceiptHandle": f"h{n}", "Body": doc if isinstance(doc, str) else json.dumps(doc)}


def messages(*docs: Mapping[str, Any]) -> list[ParkedMessage]:
    out = [parse_parked(sqs_message(i, d)) for i, d in enumerate(docs)]
    assert all(isinstance(m, ParkedMessage) for m in out)
    return [m for m in out if isinstance(m, ParkedMessage)]


class FakeQueue:
    """In-memory bridge DLQ with SQS's visibility semantics (no clock: hidden until held at 0 or deleted)."""

    name = "orders-bridge-dev-bridge-dlq"

    def __init__(self, bodies: Sequence[Mapping[str, Any] | str]) -> None:
        self.messages = {f"h{i}": sqs_message(i, b) for i, b in enumerate(bodies)}
        self.visible = list(self.messages)
        self.deleted: list[str] = []
        self.receives = 0

    def receive(self, visibility_seconds: int) -> list[Mapping[str, Any]]:
        self.receives += 1
        taken, self.visible = self.visible[:10], self.visible[10:]
        return [self.messages[h] for h in taken]

    def hold(self, receipt_handles: Sequence[str], visibility_seconds: int) -> None:
        if visibility_seconds == 0:
            self.visible += [h for h in receipt_handles if h not in self.visible and h not in self.deleted]

    def delete(self, receipt_handles: Sequence[str]) -> int:
        self.deleted += receipt_handles
        return len(receipt_handles)


def options(**overrides: Any) -> RedriveOptions:
    values: dict[str, Any] = {"batch_size": 500, "visibility_seconds": 180}
    values.update(overrides)
    return RedriveOptions(**values)


def no_fetch(uri: str) -> Mapping[str, Any]:
    raise DocumentUnavailableError(f"S3 object {uri} cannot be read (NoSuchKey)")


# --- merging and event building ----------------------------------------------------------------


def test_a_record_parked_for_two_destinations_becomes_one_entry_with_both() -> None:
    rec = kafka_record(offset=5)
    ms = messages(parked(rec, "too_large", "order-events"), parked(rec, "delivery_failed", "fraud-review"))

    (entry,) = merge_parked(resolve_records(ms, no_fetch)[0])

    assert (entry.record_id, entry.topic_partition, entry.offset) == ("orders-0-5", "orders-0", 5)
    assert entry.destinations == ("order-events", "fraud-review")
    assert entry.record == rec
    assert [m.message_id for m in entry.messages] == ["m0", "m1"]


def test_a_message_parked_without_destination_makes_the_record_route_normally() -> None:
    rec = kafka_record(offset=5)
    ms = messages(parked(rec, "too_large", "order-events"), parked(rec, "unroutable"))

    (entry,) = merge_parked(resolve_records(ms, no_fetch)[0])

    assert entry.destinations is None


def offsetless(n: int) -> dict[str, Any]:
    """A record Lambda could not have meant: no offset, so the bridge parks it as `orders-0--1`."""
    return {"topic": "orders", "partition": 0, "timestamp": 1767225600000, "value": f"broken-{n}"}


def test_undecodable_records_without_an_offset_stay_separate_entries() -> None:
    # given: three different records parked as undecodable, all with record id orders-0--1
    ms = messages(*[parked(offsetless(n), "undecodable") for n in range(3)])
    assert {m.record_id for m in ms} == {"orders-0--1"}

    # when
    entries = merge_parked(resolve_records(ms, no_fetch)[0])

    # then: one entry per DLQ message, each with its own record
    assert [(e.topic_partition, e.offset, e.destinations) for e in entries] == [("orders-0", -1, None)] * 3
    assert [e.record for e in entries] == [offsetless(n) for n in range(3)]
    assert [[m.message_id for m in e.messages] for e in entries] == [["m0"], ["m1"], ["m2"]]


def test_run_redrives_every_undecodable_record_without_an_offset_before_deleting_its_message() -> None:
    queue = FakeQueue([parked(offsetless(n), "undecodable") for n in range(3)])
    events: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        events.append(event)
        return {"batchItemFailures": [], "summary": {"delivered": {}, "parked": {"undecodable": 1}}}

    report = redrive(queue, no_fetch, invoke, options())

    handed_over = [r for e in events for rs in e["records"].values() for r in rs]
    assert sorted(r["value"] for r in handed_over) == ["broken-0", "broken-1", "broken-2"]
    assert all(e[REDRIVE_KEY] == {"orders-0--1": None} for e in events)  # one listing per event
    assert sorted(queue.deleted) == ["h0", "h1", "h2"]
    assert (report.records, report.redriven) == (3, 3)


def test_events_group_by_topic_partition_in_offset_order_within_the_batch_size() -> None:
    # given: parked out of order over two partitions
    recs = [kafka_record(partition=p, offset=o) for p, o in [(1, 9), (0, 4), (1, 2), (0, 3), (0, 8)]]
    entries = merge_parked(resolve_records(messages(*[parked(r, "unroutable") for r in recs]), no_fetch)[0])

    # when
    batches = build_events(entries, batch_size=3)

    # then
    assert [[[r["offset"] for r in rs] for rs in b.event["records"].values()] for b in batches] == [
        [[3, 4, 8]], [[2, 9]]]
    assert list(batches[1].event["records"]) == ["orders-1"]
    first = batches[0].event
    assert first["eventSource"] == "aws:kafka"
    assert first["eventSourceArn"] == MSK_ARN
    assert first[REDRIVE_KEY] == {"orders-0-3": None, "orders-0-4": None, "orders-0-8": None}
    assert batches[0].receipt_handles == ["h3", "h1", "h4"]


def test_self_managed_records_get_a_self_managed_event_and_listed_destinations() -> None:
    rec = kafka_record(offset=1)
    entries = merge_parked(resolve_records(messages(parked(rec, "too_large", "t", arn=None)), no_fetch)[0])

    (batch,) = build_events(entries, batch_size=10)

    assert batch.event["eventSource"] == "SelfManagedKafka"
    assert "eventSourceArn" not in batch.event
    assert batch.event[REDRIVE_KEY] == {"orders-0-1": ["t"]}


def test_events_stay_under_the_invoke_payload_limit() -> None:
    recs = [kafka_record(offset=i, value="x" * 3000) for i in range(6)]
    entries = merge_parked(resolve_records(messages(*[parked(r, "unroutable") for r in recs]), no_fetch)[0])

    batches = build_events(entries, batch_size=500, max_event_bytes=9000)

    assert [len(b.entries) for b in batches] == [2, 2, 2]
    assert all(len(json.dumps(b.event)) < 9000 + 200 for b in batches)


def test_select_filters_by_reason_and_destination_and_counts_records_for_max() -> None:
    a, b, c = (kafka_record(offset=i) for i in range(3))
    ms = messages(parked(a, "too_large", "t"), parked(a, "too_large", "q"), parked(b, "unroutable"),
                  parked(c, "too_large", "t"))

    assert [m.message_id for m in select(ms, reasons=["too_large"])[0]] == ["m0", "m1", "m3"]
    assert [m.message_id for m in select(ms, destination="t")[0]] == ["m0", "m3"]
    chosen, rest = select(ms, max_records=1)
    assert [m.message_id for m in chosen] == ["m0", "m1"]  # both messages of the one record
    assert [m.message_id for m in rest] == ["m2", "m3"]


def test_documents_in_the_parking_bucket_are_fetched_and_missing_ones_skipped() -> None:
    a, b = kafka_record(offset=1), kafka_record(offset=2)
    store = {"s3://bucket/a.json": parked(a, "too_large", "t")}
    ms = messages(parked(a, "too_large", "t", s3_uri="s3://bucket/a.json"),
                  parked(b, "too_large", "t", s3_uri="s3://bucket/b.json"))

    def fetch(uri: str) -> Mapping[str, Any]:
        if uri not in store:
            raise DocumentUnavailableError(f"S3 object {uri} cannot be read (NoSuchKey)")
        return store[uri]

    resolved, skipped = resolve_records(ms, fetch)

    assert [(m.record_id, r) for m, r in resolved] == [("orders-0-1", a)]
    assert [(s.record_id, s.why) for s in skipped] == [("orders-0-2", "S3 object s3://bucket/b.json cannot be read "
                                                                      "(NoSuchKey)")]


def test_a_parking_bucket_object_replaced_since_it_was_parked_is_not_redriven() -> None:
    a = kafka_record(offset=1)
    replaced = parked(kafka_record(offset=1, value='{"total": 99999}'), "too_large", "t")
    ms = messages(parked(a, "too_large", "t", s3_uri="s3://bucket/a.json"))

    resolved, skipped = resolve_records(ms, lambda uri: replaced)

    assert resolved == []
    assert "does not have the digest recorded when it was parked" in skipped[0].why


def test_s3_fetcher_reports_a_missing_object_in_one_line() -> None:
    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(s3) as stub:
        stub.add_client_error("get_object", service_error_code="NoSuchKey", http_status_code=404,
                              expected_params={"Bucket": "parking", "Key": "parked/orders/0/1-t-too_large.json"})
        with pytest.raises(DocumentUnavailableError, match=r"^S3 object s3://parking/parked/.* \(NoSuchKey\)$"):
            s3_fetcher(s3)("s3://parking/parked/orders/0/1-t-too_large.json")


# --- the run over in-memory ports ---------------------------------------------------------------


def test_run_deletes_exactly_the_messages_of_accepted_events_and_releases_the_rest() -> None:
    # given: three partitions' worth of parked records, one S3 pointer that is gone, one non-document
    recs = [kafka_record(partition=p, offset=1) for p in range(3)]
    queue = FakeQueue([parked(recs[0], "too_large", "t"), parked(recs[0], "too_large", "u"),
                       parked(recs[1], "unroutable"), parked(recs[2], "unroutable", s3_uri="s3://gone/x.json"),
                       "not json", parked(recs[1], "unsigned")])
    events: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        events.append(event)
        if "orders-1" in event["records"]:
            raise InvokeError("orders-bridge failed (Unhandled): ParkingFailedError: ...")
        return {"batchItemFailures": [], "summary": {"delivered": {"t": 1, "u": 1}, "parked": {}}}

    # when
    report = redrive(queue, no_fetch, invoke, options(batch_size=1))

    # then: the accepted event's two messages are deleted; everything else is visible again
    assert [e[REDRIVE_KEY] for e in events] == [{"orders-0-1": ["t", "u"]}, {"orders-1-1": None}]
    assert sorted(queue.deleted) == ["h0", "h1"]
    assert sorted(queue.visible) == ["h2", "h3", "h4", "h5"]
    assert (report.records, report.events, report.redriven, report.deleted) == (2, 2, 1, 2)
    assert dict(report.delivered) == {"t": 1, "u": 1}
    assert [(f.records, f.messages) for f in report.failed] == [(1, 2)]
    assert sorted(s.why.split(" (")[0] for s in report.skipped) == [
        "S3 object s3://gone/x.json cannot be read", "body is not JSON: not a parked-record document"]


def test_dry_run_invokes_nothing_deletes_nothing_and_releases_everything() -> None:
    queue = FakeQueue([parked(kafka_record(offset=1), "too_large", "t")])

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        raise AssertionError("a dry run must not invoke")

    report = redrive(queue, no_fetch, invoke, options(dry_run=True))

    assert queue.deleted == []
    assert queue.visible == ["h0"]
    assert [(m.record_id, m.reason, m.destination) for m in report.planned] == [("orders-0-1", "too_large", "t")]


def test_copies_of_one_park_are_planned_once_replayed_once_and_all_deleted() -> None:
    # given: one park stored three times (DLQ sends retried after lost answers), and another park
    rec, other = kafka_record(offset=1), kafka_record(offset=2)
    copy = parked(rec, "delivery_failed", "t")
    queue = FakeQueue([copy, dict(copy, parked_at="2026-01-01T00:00:01"), copy, parked(other, "unroutable")])
    events: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        events.append(event)
        return {"summary": {}}

    # when
    report = redrive(queue, no_fetch, invoke, options())

    # then: one planned row per park; the record is in one event once; every copy is deleted
    assert [(m.record_id, m.reason) for m in report.planned] == [("orders-0-1", "delivery_failed"),
                                                                ("orders-0-2", "unroutable")]
    assert report.copies == 2
    assert [e[REDRIVE_KEY] for e in events] == [{"orders-0-1": ["t"], "orders-0-2": None}]
    assert sorted(queue.deleted) == ["h0", "h1", "h2", "h3"]
    assert report.to_json()["copies"] == 2


def test_two_parks_of_one_record_id_with_different_bytes_are_never_merged() -> None:
    # given: orders-0-1 parked twice with different bytes (a topic re-created under the same name)
    old, new = kafka_record(offset=1, value='{"v": 1}'), kafka_record(offset=1, value='{"v": 2}')
    new["timestamp"] += 86_400_000
    queue = FakeQueue([parked(old, "delivery_failed", "t"), parked(new, "delivery_failed", "t")])
    events: list[dict[str, Any]] = []

    def invoke(event: dict[str, Any]) -> Mapping[str, Any]:
        events.append(event)
        return {"summary": {}}

    # when
    report = redrive(queue, no_fetch, invoke, options())

    # then: two parks, each record in an event of its own, and the conflict reported
    assert (len(report.planned), report.copies, report.conflicts) == (2, 0, ["orders-0-1"])
    assert [e["records"]["orders-0"] for e in events] == [[old], [new]]
    assert report.to_json()["conflicts"] == ["orders-0-1"]


def test_parks_of_one_position_and_timestamp_with_different_bytes_are_all_left_in_the_dlq() -> None:
    # given: orders-0-1 parked with two contents the checkpoints cannot tell apart, and another record
    a, b = kafka_record(offset=1, value='{"v": 1}'), kafka_record(offset=1, value='{"v": 2}')
    queue = FakeQueue([parked(a, "delivery_failed", "t"), parked(b, "delivery_failed", "t"),
                       parked(kafka_record(offset=2), "delivery_failed", "t")])
    events: list[dict[str, Any]] = []

    # when
    report = redrive(queue, no_fetch, lambda event: events.append(event) or {"summary": {}}, options())

    # then: only the other record is replayed; both versions stay, each reported with what to do
    assert [e[REDRIVE_KEY] for e in events] == [{"orders-0-2": ["t"]}]
    assert sorted(queue.deleted) == ["h2"]
    assert [(s.message_id, s.why.split(":")[0]) for s in report.skipped] == [
        ("m0", "parked with different contents at the same position and timestamp (a planted or corrupted message)"),
        ("m1", "parked with different contents at the same position and timestamp (a planted or corrupted message)")]
    assert [m.record_id for m in report.planned] == ["orders-0-2"]


def test_a_park_id_is_trusted_only_when_it_is_the_documents_own() -> None:
    # given: a genuine park whose document went to the parking bucket, and a copy whose park_id was altered
    rec = kafka_record(offset=1)
    full = parked(rec, "too_large", "t")
    pointer = parked(rec, "too_large", "t", s3_uri="s3://bucket/a.json")
    ms = messages(pointer, dict(pointer), dict(pointer, park_id="0" * 32))

    resolved, skipped = resolve_records(ms, lambda uri: full)

    # then: the two genuine copies verify (recomputed from the fetched record) and merge; the altered one
    # is a park of its own
    assert skipped == []
    assert [verified_park_id(m, r) for m, r in resolved] == [full["park_id"], full["park_id"], None]
    assert [park_mismatch(m, r) is None for m, r in resolved] == [True, True, False]
    assert [[m.message_id for m in e.messages] for e in merge_parked(resolved)] == [["m0", "m1"], ["m2"]]


def test_a_document_whose_record_id_names_another_record_is_skipped() -> None:
    (m,) = messages(dict(parked(kafka_record(offset=2), "unroutable"), record_id="orders-0-1"))

    resolved, skipped = resolve_records([m], no_fetch)

    assert resolved == []
    assert skipped[0].why.startswith("record_id does not name the record the document carries (orders-0-2)")


def test_empty_dlq_and_nothing_selected_are_one_line_errors() -> None:
    with pytest.raises(RedriveError, match="is empty: nothing to redrive"):
        redrive(FakeQueue([]), no_fetch, lambda e: {}, options())
    queue = FakeQueue([parked(kafka_record(offset=1), "too_large", "t")])
    with pytest.raises(RedriveError, match="with reason unsigned: 1 message"):
        redrive(queue, no_fetch, lambda e: {}, options(reasons=("unsigned",)))
    assert queue.visible == ["h0"]


def test_receive_loop_is_bounded_by_max_messages() -> None:
    queue = FakeQueue([parked(kafka_record(offset=i), "unroutable") for i in range(50)])

    report = redrive(queue, no_fetch, lambda e: {"summary": {}}, options(max_messages=20))

    assert report.records == 20
    assert queue.receives == 2


def test_lambda_transport_raises_on_function_error_and_returns_the_result_otherwise() -> None:
    class FakeLambda:
        def __init__(self, response: dict[str, Any]) -> None:
            self.response = response
            self.calls: list[dict[str, Any]] = []

        def invoke(self, **kwargs: Any) -> dict[str, Any]:
            self.calls.append(kwargs)
            return self.response

    failing = FakeLambda({"FunctionError": "Unhandled", "Payload": io.BytesIO(
        b'{"errorType": "InvalidRedriveError", "errorMessage": "bridgeRedrive must be an object"}')})
    with pytest.raises(InvokeError, match=r"^fn failed \(Unhandled\): InvalidRedriveError: bridgeRedrive must"):
        lambda_transport(failing, "fn")({"records": {}})
    assert failing.calls[0]["InvocationType"] == "RequestResponse"

    ok = FakeLambda({"Payload": io.BytesIO(b'{"batchItemFailures": [], "summary": {"records": 1}}')})
    assert lambda_transport(ok, "fn")({})["summary"] == {"records": 1}


# --- round trip: what the bridge parks, redriven into the bridge with a fixed config --------------


def test_parked_by_the_bridge_then_redriven_reaches_only_the_destination_it_missed() -> None:
    # given: a 2 KB record too large for the topic (1 KiB) but not for the queue
    def config(sns_limit: int) -> Any:
        return make_config(destinations=[{"name": "queue", "type": "sqs"},
                                         {"name": "topic", "type": "sns", "max_message_bytes": sns_limit}],
                           routes=[{"name": "all", "match": {}, "to": ["queue", "topic"]}])

    def bridge(sns_limit: int, sqs: FakeSender, sns: FakeSender) -> Bridge:
        return Bridge(config(sns_limit), make_settings(), sqs=sqs, sns=sns, parking_store=FakeStore(),
                      signing_keys=FakeKeys(), sleep=no_sleep, clock=fixed_clock)

    first_sqs, first_sns = FakeSender(), FakeSender()
    bridge(1024, first_sqs, first_sns).handle(kafka_event([kafka_record(offset=3, value="y" * 2000)]))
    dlq = parked_docs(first_sqs, "test-bridge-dev-bridge-dlq")
    assert [(d["reason"], d["destination"]) for d in dlq] == [("too_large", "topic")]

    # when: the topic's limit is raised and the parked record redriven
    sqs, sns = FakeSender(), FakeSender()
    fixed = bridge(262_144, sqs, sns)
    report = redrive(FakeQueue(dlq), no_fetch, lambda event: fixed.handle(event).result(), options())

    # then
    assert (report.redriven, report.deleted, dict(report.delivered)) == (1, 1, {"topic": 1})
    assert [m.record_id for m in sns.sent["topic"]] == ["orders-0-3"]
    assert sqs.calls_to("queue") == []


@pytest.mark.parametrize(("checkpoints", "deliveries"), [(True, 1), (False, 2)], ids=["checkpoints-on", "off"])
def test_a_copy_left_for_a_later_run_delivers_nothing_again_with_checkpoints(checkpoints: bool,
                                                                             deliveries: int) -> None:
    # given: a record parked for a queue that was down, its park stored twice (the DLQ's first answer
    # was lost), and a later redrive run that finds only the second copy (the first run took the first)
    cfg = make_config(destinations=[{"name": "queue", "type": "sqs"}],
                      routes=[{"name": "all", "match": {}, "to": ["queue"]}],
                      settings={"checkpoints": "on" if checkpoints else "off"})
    store = FakeCheckpoints() if checkpoints else None
    down = FakeSender(reject=lambda target, m: ("ServiceUnavailable", False) if target.name != "test-bridge-dev-"
                      "bridge-dlq" else None)
    Bridge(cfg, make_settings(), sqs=down, sns=FakeSender(), parking_store=FakeStore(), signing_keys=FakeKeys(),
           checkpoints=store, sleep=no_sleep, clock=fixed_clock).handle(kafka_event([kafka_record(offset=3)]))
    (doc,) = parked_docs(down, "test-bridge-dev-bridge-dlq")
    sqs = FakeSender()
    fixed = Bridge(cfg, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                   signing_keys=FakeKeys(), checkpoints=store, sleep=no_sleep, clock=fixed_clock)

    # when: two runs, one copy each
    for copy in (doc, dict(doc)):
        redrive(FakeQueue([copy]), no_fetch, lambda event: fixed.handle(event).result(), options())

    # then: with checkpoints the second copy reaches nothing again; without, the queue gets it twice
    assert [m.record_id for m in sqs.sent["queue"]] == ["orders-0-3"] * deliveries


# --- the ledger: copies an earlier run replayed ---------------------------------------------------


def parked_while_down(store: FakeCheckpoints) -> tuple[Any, dict[str, Any]]:
    """A config with one queue, and the DLQ document of a record parked while that queue was down."""
    cfg = make_config(destinations=[{"name": "queue", "type": "sqs"}],
                      routes=[{"name": "all", "match": {}, "to": ["queue"]}], settings={"checkpoints": "on"})
    down = FakeSender(reject=lambda target, m: ("ServiceUnavailable", False) if target.name == "queue" else None)
    Bridge(cfg, make_settings(), sqs=down, sns=FakeSender(), parking_store=FakeStore(), signing_keys=FakeKeys(),
           checkpoints=store, sleep=no_sleep, clock=fixed_clock).handle(kafka_event([kafka_record(offset=3)]))
    (doc,) = parked_docs(down, "test-bridge-dev-bridge-dlq")
    return cfg, doc


@pytest.mark.parametrize(("ledger", "deliveries"), [(True, 1), (False, 2)], ids=["ledger", "without-ledger"])
def test_a_copy_a_later_run_receives_after_the_checkpoints_expired_is_not_delivered_again(ledger: bool,
                                                                                         deliveries: int) -> None:
    # given: a park stored twice (the DLQ's first answer was lost); the first run replays one copy
    store = FakeCheckpoints()
    cfg, doc = parked_while_down(store)
    sqs = FakeSender()
    fixed = Bridge(cfg, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                   signing_keys=FakeKeys(), checkpoints=store, sleep=no_sleep, clock=fixed_clock)
    book = MemoryLedger() if ledger else None
    redrive(FakeQueue([doc]), no_fetch, lambda event: fixed.handle(event).result(), options(), book)
    # when: the second copy is redriven after the checkpoint items expired (their TTL is the mapping's
    # maximum record age plus a day; the DLQ keeps a message 14 days)
    store.entries.clear()
    queue = FakeQueue([dict(doc)])
    report = redrive(queue, no_fetch, lambda event: fixed.handle(event).result(), options(), book)

    # then: with the ledger the copy is deleted without a replay; without it the queue gets the record twice
    assert [m.record_id for m in sqs.sent["queue"]] == ["orders-0-3"] * deliveries
    assert queue.deleted == ["h0"]
    assert (len(report.replayed_before), report.events) == ((1, 0) if ledger else (0, 1))


def test_a_record_parked_again_by_its_replay_is_not_taken_for_a_copy() -> None:
    # given: a park replayed while its queue is still down, so the replay parks the record again
    store = FakeCheckpoints()
    cfg, doc = parked_while_down(store)
    clock = fixed_clock  # the same parked_at for the park and its re-park: only parking_call tells them apart
    book = MemoryLedger()
    down = FakeSender(reject=lambda target, m: ("ServiceUnavailable", False) if target.name == "queue" else None)
    still_down = Bridge(cfg, make_settings(), sqs=down, sns=FakeSender(), parking_store=FakeStore(),
                        signing_keys=FakeKeys(), checkpoints=store, sleep=no_sleep, clock=clock)
    redrive(FakeQueue([doc]), no_fetch, lambda event: still_down.handle(event).result(), options(), book)
    (again,) = parked_docs(down, "test-bridge-dev-bridge-dlq")
    assert again["park_id"] == doc["park_id"]
    # when: the queue is back and the new park is redriven
    sqs = FakeSender()
    fixed = Bridge(cfg, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                   signing_keys=FakeKeys(), checkpoints=store, sleep=no_sleep, clock=clock)
    report = redrive(FakeQueue([again]), no_fetch, lambda event: fixed.handle(event).result(), options(), book)

    # then: it is replayed and delivered (same park id, but a parking of its own)
    assert [m.record_id for m in sqs.sent["queue"]] == ["orders-0-3"]
    assert report.replayed_before == []


def test_a_run_killed_between_the_replay_and_the_delete_leaves_copies_the_next_run_deletes() -> None:
    # given: a run whose process dies right after the bridge took the event (before the DLQ delete)
    doc = parked(kafka_record(offset=1), "delivery_failed", "t")
    book = MemoryLedger()
    invoked: list[dict[str, Any]] = []

    class DiesOnDelete(FakeQueue):
        def delete(self, receipt_handles: Sequence[str]) -> int:
            raise KeyboardInterrupt

    queue = DiesOnDelete([doc, dict(doc)])
    with pytest.raises(KeyboardInterrupt):
        redrive(queue, no_fetch, lambda event: invoked.append(event) or {"summary": {}}, options(), book)
    assert sorted(queue.visible) == ["h0", "h1"]  # released at once, not at the end of the visibility timeout

    # when: the next run receives them
    nxt = FakeQueue([doc, dict(doc)])
    report = redrive(nxt, no_fetch, lambda event: invoked.append(event) or {"summary": {}}, options(), book)

    # then: deleted without a second replay, and said so
    assert len(invoked) == 1
    assert sorted(nxt.deleted) == ["h0", "h1"]
    assert report.to_json()["already_replayed"] == 2


def test_an_unusable_ledger_is_reported_and_the_run_replays_as_without_one() -> None:
    book = MemoryLedger()
    book.fail = True
    queue = FakeQueue([parked(kafka_record(offset=1), "delivery_failed", "t")])

    report = redrive(queue, no_fetch, lambda event: {"summary": {}}, options(), book)

    assert (report.redriven, queue.deleted) == (1, ["h0"])
    assert report.ledger_error == "memory: replayed refused (ProvisionedThroughputExceededException)"


def test_a_dry_run_says_which_copies_were_replayed_before_and_deletes_nothing() -> None:
    doc = parked(kafka_record(offset=1), "delivery_failed", "t")
    book = MemoryLedger()
    book.digests.add(document_digest(doc))
    queue = FakeQueue([doc, parked(kafka_record(offset=2), "delivery_failed", "t")])

    report = redrive(queue, no_fetch, lambda event: {"summary": {}}, options(dry_run=True), book)

    assert [m.record_id for m in report.replayed_before] == ["orders-0-1"]
    assert [m.record_id for m in report.planned] == ["orders-0-2"]
    assert queue.deleted == []
