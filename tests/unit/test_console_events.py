"""Console test events: which ship, and that every shipped one does in the deployed stack what it promises."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest
from bridge.config import load_config_file
from bridge.records import ForeignEventError
from bridge.service import Bridge

from infra.console_events import SCHEMA_CONTENT_MAX, StageSource, schema_content, select_console_events
from tests.helpers import (
    ROOT,
    FakeCheckpoints,
    FakeKeys,
    FakeSender,
    FakeStore,
    dev_config,
    fixed_clock,
    make_settings,
    no_sleep,
)

EVENTS_DIR = ROOT / "events"


def _events() -> dict[str, Any]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(EVENTS_DIR.glob("*.json"))
            if p.name != "manifest.json"}


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS_DIR / "manifest.json").read_text(encoding="utf-8"))
    return data


def test_schema_content_limit_comes_from_botocore() -> None:
    assert SCHEMA_CONTENT_MAX == 100_000


def test_dev_ships_what_fits_and_works_and_says_why_for_the_rest() -> None:
    selection = select_console_events(_events(), _manifest(), production=False)
    assert len(schema_content(selection.shipped)) <= SCHEMA_CONTENT_MAX
    # fail-untrusted-producer ships: accept_from is checked before the signature, so no real key is needed
    assert set(selection.omitted) == {"fail-too-large", "route-payments"}
    assert "EventSchemas allows" in selection.omitted["fail-too-large"]
    assert "payment-service's key" in selection.omitted["route-payments"]
    print("\n" + "\n".join(f"  omitted {n}: {why}" for n, why in selection.omitted.items()))


def test_production_ships_no_event_that_delivers() -> None:
    manifest = _manifest()
    selection = select_console_events(_events(), manifest, production=True)
    assert selection.shipped
    assert all(not manifest[f"{name}.json"]["delivered"] for name in selection.shipped)
    assert selection.omitted["route-order-lifecycle"] == "production stage: it delivers to fulfilment, order-events"


def test_production_leaves_out_an_event_the_manifest_does_not_describe() -> None:
    selection = select_console_events({"handmade": {"records": {}}}, {}, production=True)
    assert selection.shipped == {}
    assert "no manifest entry" in selection.omitted["handmade"]


def test_events_are_added_in_name_order_until_the_limit() -> None:
    events = {"a": {"pad": "x" * 300}, "b": {"pad": "y" * 300}, "c": {"pad": "z" * 10}}
    size_ab = len(schema_content({"a": events["a"], "b": events["b"]}))
    selection = select_console_events(events, {}, production=False, max_content=size_ab - 1)
    assert list(selection.shipped) == ["a", "c"]
    assert list(selection.omitted) == ["b"]


@pytest.mark.parametrize("name", sorted(select_console_events(_events(), _manifest(), production=False).shipped))
def test_every_shipped_event_gives_its_promised_outcome_with_the_deployed_keys(name: str) -> None:
    """Keys the deploy creates are random: an event that needed the generator's placeholder key fails here."""
    # given: the deployed stack's keys, which no event file can know
    config = dev_config()
    keys = FakeKeys({p.name: secrets.token_bytes(32) for p in config.producers if p.signing})
    sqs, sns = FakeSender(), FakeSender()
    bridge = Bridge(config, make_settings(), sqs=sqs, sns=sns, parking_store=FakeStore(), signing_keys=keys,
                    sleep=no_sleep, rand=lambda lo, hi: hi, clock=fixed_clock)

    # when
    summary = bridge.handle(_events()[name]).summary

    # then
    expected = _manifest()[f"{name}.json"]
    assert summary["delivered"] == expected["delivered"]
    assert summary["parked"] == expected["parked"]


@pytest.mark.parametrize(("name", "instead"), [("route-payments", "invalid_signature")])
def test_left_out_signed_events_would_park_for_the_wrong_reason_in_the_deployed_stack(name: str,
                                                                                       instead: str) -> None:
    config = dev_config()
    keys = FakeKeys({p.name: secrets.token_bytes(32) for p in config.producers if p.signing})
    bridge = Bridge(config, make_settings(), sqs=FakeSender(), sns=FakeSender(), parking_store=FakeStore(),
                    signing_keys=keys, sleep=no_sleep, rand=lambda lo, hi: hi, clock=fixed_clock)
    summary = bridge.handle(_events()[name]).summary
    assert summary["parked"] == {instead: 1}
    assert summary["parked"] != _manifest()[f"{name}.json"]["parked"]


def _prod_selection() -> Any:
    prod = load_config_file(ROOT / "config" / "prod.yaml")
    source = StageSource(prod.source.kind, prod.source.cluster_arn, tuple(prod.source.bootstrap_servers))
    return prod, select_console_events(_events(), _manifest(), production=True, source=source)


def test_prod_events_are_retargeted_to_the_prod_cluster() -> None:
    prod, selection = _prod_selection()
    assert selection.shipped
    assert {e["eventSourceArn"] for e in selection.shipped.values()} == {prod.source.cluster_arn}
    assert dev_config().source.cluster_arn != prod.source.cluster_arn  # events/ carries the dev cluster
    # without the retargeting, the prod bridge refuses them
    bridge = Bridge(prod, make_settings(checkpoint_table=prod.checkpoint_table_name), sqs=FakeSender(),
                    sns=FakeSender(), parking_store=FakeStore(), signing_keys=FakeKeys(), checkpoints=FakeCheckpoints(),
                    sleep=no_sleep)
    with pytest.raises(ForeignEventError):
        bridge.handle(_events()[next(iter(selection.shipped))])


@pytest.mark.parametrize("name", sorted(_prod_selection()[1].shipped))
def test_every_prod_console_event_gives_its_promised_outcome_in_the_prod_stack(name: str) -> None:
    prod, selection = _prod_selection()
    keys = FakeKeys({p.name: secrets.token_bytes(32) for p in prod.producers if p.signing})
    bridge = Bridge(prod, make_settings(checkpoint_table=prod.checkpoint_table_name), sqs=FakeSender(),
                    sns=FakeSender(), parking_store=FakeStore(), signing_keys=keys, checkpoints=FakeCheckpoints(),
                    sleep=no_sleep, rand=lambda lo, hi: hi, clock=fixed_clock)
    summary = bridge.handle(selection.shipped[name]).summary
    expected = _manifest()[f"{name}.json"]
    assert summary["delivered"] == expected["delivered"]
    assert summary["parked"] == expected["parked"]


def test_an_event_of_the_other_source_kind_is_left_out() -> None:
    selection = select_console_events({"sm": {"eventSource": "SelfManagedKafka", "records": {}}}, {},
                                      production=False, source=StageSource("msk", "arn:aws:kafka:x"))
    assert selection.omitted == {"sm": "a SelfManagedKafka event; this stage's bridge reads the MSK cluster only"}
