"""Checkpointed batches: a redelivered batch sends and parks only what the last attempt did not."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from bridge.checkpoints import MAX_TOKENS_PER_ENTRY, SHARD_OFFSETS, BatchProgress, progress_entries
from bridge.config import BridgeConfig, ConfigError
from bridge.parking import ParkingFailedError
from bridge.records import REDRIVE_KEY, decode_event
from bridge.service import Bridge, OutageRetryError

from tests.helpers import (
    FakeCheckpoints,
    FakeKeys,
    FakeSender,
    FakeStore,
    kafka_event,
    kafka_record,
    make_config,
    make_settings,
    no_sleep,
    signed_record,
)

DLQ = "test-bridge-dev-bridge-dlq"


def two_queue_config(**settings: Any) -> BridgeConfig:
    return make_config(
        destinations=[{"name": "out", "type": "sqs"}, {"name": "flaky", "type": "sqs"}],
        routes=[{"name": "all", "match": {}, "to": ["out", "flaky"]}],
        settings={"checkpoints": "on", **settings},
    )


def records(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [kafka_record("orders", 0, start + i, value=json.dumps({"n": start + i})) for i in range(n)]


class Switch:
    """Rejects entries to one target while `on` (an outage of that queue)."""

    def __init__(self, target: str, code: str = "InternalError") -> None:
        self.target = target
        self.code = code
        self.on = True

    def __call__(self, target: Any, _message: Any) -> tuple[str, bool] | None:
        return (self.code, False) if self.on and target.name == self.target else None


def bridge_with(config: BridgeConfig, sqs: FakeSender, checkpoints: FakeCheckpoints | None,
                keys: FakeKeys | None = None, clock: Any = None) -> Bridge:
    extra: dict[str, Any] = {"clock": clock} if clock else {}
    return Bridge(config, make_settings(), sqs=sqs, sns=FakeSender(), parking_store=FakeStore(),
                  signing_keys=keys or FakeKeys(), checkpoints=checkpoints, sleep=no_sleep, **extra)


def test_batch_retried_after_parking_failed_does_not_send_again_what_it_delivered() -> None:
    # given: "flaky" rejects everything and the bridge DLQ is down, so the first attempt raises
    flaky = Switch("flaky")
    dlq_down = Switch(DLQ)
    sqs = FakeSender(reject=lambda t, m: flaky(t, m) or dlq_down(t, m))
    bridge = bridge_with(two_queue_config(), sqs, FakeCheckpoints())
    event = kafka_event(records(25))
    with pytest.raises(ParkingFailedError):
        bridge.handle(event)
    assert len(sqs.sent["out"]) == 25

    # when: the DLQ is back and the mapping retries the same batch
    dlq_down.on = False
    report = bridge.handle(event)

    # then: "out" got each record once, and the records "flaky" missed are parked once
    assert len(sqs.sent["out"]) == 25
    assert len(sqs.sent[DLQ]) == 25
    assert report.summary["checkpoint"] == {"on": True, "skipped": 25, "errors": 0}


def test_without_checkpoints_the_same_retry_sends_everything_again() -> None:
    # the behaviour checkpoints: off keeps (and what main did): at least once, duplicates on retry
    flaky, dlq_down = Switch("flaky"), Switch(DLQ)
    sqs = FakeSender(reject=lambda t, m: flaky(t, m) or dlq_down(t, m))
    bridge = bridge_with(two_queue_config(checkpoints="off"), sqs, None)
    event = kafka_event(records(25))
    with pytest.raises(ParkingFailedError):
        bridge.handle(event)
    dlq_down.on = False
    bridge.handle(event)
    assert len(sqs.sent["out"]) == 50


def test_redelivered_batch_with_another_cut_of_the_offsets_skips_what_was_delivered() -> None:
    # given: offsets 0-29 delivered by one batch
    sqs = FakeSender()
    store = FakeCheckpoints()
    bridge = bridge_with(two_queue_config(), sqs, store)
    bridge.handle(kafka_event(records(30)))

    # when: the mapping hands over 20-39 (progress is kept per partition shard, not per batch)
    bridge.handle(kafka_event(records(20, start=20)))

    # then: only 30-39 are new
    assert len(sqs.sent["out"]) == 40
    offsets = [json.loads(m.body)["n"] for m in sqs.sent["out"]]
    assert sorted(offsets) == list(range(40))


def test_a_few_writes_per_batch_not_one_per_record() -> None:
    sqs = FakeSender()
    store = FakeCheckpoints()
    bridge = bridge_with(two_queue_config(), sqs, store)
    bridge.handle(kafka_event(records(100)))
    # one read, one write per send request (settings.checkpoint_request_entries: 4 messages to a standard
    # queue): 2 destinations x 25 requests
    assert store.reads == 1
    assert store.writes == 50


def test_a_recreated_topic_with_the_same_offsets_is_not_taken_for_delivered() -> None:
    sqs = FakeSender()
    bridge = bridge_with(two_queue_config(), sqs, FakeCheckpoints())
    bridge.handle(kafka_event(records(5)))
    newer = records(5)
    for r in newer:
        r["timestamp"] += 1
    bridge.handle(kafka_event(newer))
    assert len(sqs.sent["out"]) == 10


def test_checkpoint_store_down_delivers_the_whole_batch_and_counts_the_errors() -> None:
    sqs = FakeSender()
    store = FakeCheckpoints()
    store.fail = True
    report = bridge_with(two_queue_config(), sqs, store).handle(kafka_event(records(10)))
    assert len(sqs.sent["out"]) == 10
    assert report.summary["checkpoint"]["errors"] >= 1


def test_redrive_skips_delivered_destinations_but_parks_again_what_was_parked() -> None:
    # given: a record delivered to "out" and parked for "flaky"
    flaky = Switch("flaky")
    sqs = FakeSender(reject=flaky)
    store = FakeCheckpoints()
    bridge = bridge_with(two_queue_config(), sqs, store)
    (record,) = records(1)
    bridge.handle(kafka_event([record]))
    assert len(sqs.sent[DLQ]) == 1

    # when: redriven twice for both destinations while "flaky" is still down, as a second copy of a
    # parked message would be (bridge redrive deletes each DLQ message it replays)
    event = kafka_event([record])
    event[REDRIVE_KEY] = {"orders-0-0": ["out", "flaky"]}
    bridge.handle(event)
    bridge.handle(event)

    # then: "out" never gets it twice; each redrive parks it again for "flaky" (its DLQ copy is deleted)
    assert len(sqs.sent["out"]) == 1
    assert len(sqs.sent[DLQ]) == 3


def test_parked_records_are_not_parked_again_on_redelivery() -> None:
    sqs = FakeSender()
    bridge = bridge_with(make_config(settings={"checkpoints": True}, unmatched={"action": "park"},
                                     routes=[{"name": "none", "match": {"key": "nothing"}, "to": ["out"]}]),
                         sqs, FakeCheckpoints())
    event = kafka_event(records(3))
    bridge.handle(event)
    bridge.handle(event)
    assert len(sqs.sent[DLQ]) == 3


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_outage_fails_the_batch_back_within_the_window_then_parks() -> None:
    # given: "flaky" is down and outages are retried by the mapping for up to 60 s
    flaky = Switch("flaky", "ServiceUnavailable")
    sqs = FakeSender(reject=flaky)
    clock = Clock()
    bridge = bridge_with(two_queue_config(outage_retry_seconds=60), sqs, FakeCheckpoints(), clock=clock)
    event = kafka_event(records(10))

    # when / then: inside the window the invocation fails and nothing is parked yet
    with pytest.raises(OutageRetryError, match="outage_retry_seconds=60"):
        bridge.handle(event)
    clock.now += timedelta(seconds=30)
    with pytest.raises(OutageRetryError):
        bridge.handle(event)
    assert sqs.sent[DLQ] == []
    assert len(sqs.sent["out"]) == 10  # delivered once, skipped by the retries

    # when the window has passed, the records are parked, once
    clock.now += timedelta(seconds=31)
    report = bridge.handle(event)
    assert report.summary["parked"] == {"delivery_failed": 10}
    assert len(sqs.sent["out"]) == 10


def test_outage_that_ends_inside_the_window_parks_nothing() -> None:
    flaky = Switch("flaky", "ServiceUnavailable")
    sqs = FakeSender(reject=flaky)
    bridge = bridge_with(two_queue_config(outage_retry_seconds=60), sqs, FakeCheckpoints(), clock=Clock())
    event = kafka_event(records(10))
    with pytest.raises(OutageRetryError):
        bridge.handle(event)
    flaky.on = False
    report = bridge.handle(event)
    assert report.summary["parked"] == {}
    assert len(sqs.sent["out"]) == 10
    assert len(sqs.sent["flaky"]) == 10


def test_secrets_manager_outage_fails_the_batch_back_too() -> None:
    keys = FakeKeys({"order-service": b"k" * 32})
    keys.fail = True
    config = make_config(
        producers=[{"name": "order-service", "topics": ["orders"], "signing": True,
                    "aws_principal": "arn:aws:iam::123456789012:role/order-service"}],
        destinations=[{"name": "out", "type": "sqs", "accept_from": ["order-service"]}],
        settings={"checkpoints": "on", "outage_retry_seconds": 60})
    sqs = FakeSender()
    bridge = bridge_with(config, sqs, FakeCheckpoints(), keys=keys, clock=Clock())
    event = kafka_event([signed_record(b"k" * 32, "order-service")])
    with pytest.raises(OutageRetryError, match="outage"):
        bridge.handle(event)
    assert sqs.sent[DLQ] == []


def test_progress_entries_group_by_shard_and_destination_and_stay_small() -> None:
    batch = decode_event(kafka_event(records(MAX_TOKENS_PER_ENTRY + 5) + records(1, start=SHARD_OFFSETS)))
    entries = progress_entries("delivered", [(r, "out") for r in batch.records])
    assert [(e.shard, len(e.tokens)) for e in entries] == [
        ("orders-0/0", MAX_TOKENS_PER_ENTRY), ("orders-0/0", 5), ("orders-0/1", 1)]
    progress = BatchProgress(None, batch.records, redrive=False)
    assert not progress.enabled
    assert not progress.delivered(batch.records[0], "out")


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("on", True), ("off", False), (True, True)])
def test_checkpoints_setting_reads_on_and_off(value: Any, expected: bool) -> None:
    settings = {} if value is None else {"checkpoints": value}
    assert make_config(settings=settings).settings.checkpoints is expected


def test_checkpoints_default_on_in_production_stages() -> None:
    assert make_config(environment="prod").settings.checkpoints is True
    assert make_config(environment="prod", settings={"checkpoints": "off"}).settings.checkpoints is False


def test_outage_retries_need_checkpoints() -> None:
    with pytest.raises(ConfigError, match=r"settings.outage_retry_seconds.*checkpoints: on"):
        make_config(settings={"outage_retry_seconds": 30})


def test_checkpoints_on_without_a_table_says_which_variable_to_set() -> None:
    from bridge.settings import SettingsError  # noqa: PLC0415

    with pytest.raises(SettingsError, match="BRIDGE_CHECKPOINT_TABLE"):
        Bridge(make_config(settings={"checkpoints": "on"}), make_settings(), sqs=FakeSender(), sns=FakeSender(),
               parking_store=FakeStore(), signing_keys=FakeKeys())
