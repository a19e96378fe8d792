"""Broker -> local poller -> real handler -> MiniStack, over the demo scenario and the generated events."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bridge_local.poller import Poller, PollerSettings, s3_on_failure
from bridge_local.producer import ScenarioRecord, demo_scenario, expected_outcomes, produce
from bridge_local.provision import signing_key
from tests.e2e.conftest import ROOT, Drainer, E2EStack, body_json, record_id_of

pytestmark = pytest.mark.e2e


def _headers(s: ScenarioRecord) -> dict[str, str]:
    return {k: (v or b"").decode() for k, v in s.record.headers}


def _expected_destinations(scenario: list[ScenarioRecord]) -> Counter[str]:
    """What dev.yaml's routes should deliver for the demo scenario, derived from the records."""
    c: Counter[str] = Counter()
    for s in scenario:
        h = _headers(s)
        if s.record.topic == "orders" and h.get("event-type") in ("OrderPlaced", "OrderCancelled"):
            c["fulfilment"] += 1
            if s.expect != "too_large":
                c["analytics"] += 1
                c["billing"] += h["event-type"] == "OrderPlaced"
        if s.record.topic == "orders" and s.record.value and json.loads(s.record.value).get("total", 0) >= 1000:
            c["fraud-review"] += 1
        if s.record.topic == "payments" and s.expect == "deliver":
            c["payments-ledger"] += 1
        if s.record.topic == "inventory" and s.expect == "deliver":
            c["stock-alerts"] += 1
    return c


def _poll(stack: E2EStack, handler: Any = None, stop_after: int | None = None, idle: float = 2.0) -> Any:
    settings = PollerSettings.from_config(stack.config, idle_seconds=idle)
    return Poller(stack.config, stack.state.bootstrap_servers, handler or stack.handler, settings,
                  s3_on_failure(stack.state, stack.config), stop_after_records=stop_after).run()


def _queue(stack: E2EStack, dest: str) -> str:
    return stack.config.destination(dest).physical_name(stack.config.prefix)


def test_demo_scenario_delivers_exact_counts_parks_with_reasons_and_audits(
        clean: E2EStack, drainer_factory: Callable[..., Drainer]) -> None:
    # given
    stack = clean
    scenario = demo_scenario(stack.config, count=24)
    drainer = drainer_factory()
    expected = _expected_destinations(scenario)
    parked_expected = {k: n for k, n in expected_outcomes(scenario).items() if k != "deliver"}

    # when
    produce(stack.config, stack.state.bootstrap_servers, [s.record for s in scenario],
            lambda p: signing_key(stack.config, p, stack.clients.secretsmanager))
    stats = _poll(stack, stop_after=len(scenario))

    # then: every destination queue got exactly the expected messages
    total = sum(expected.values()) + sum(parked_expected.values())
    drainer.wait_until(lambda d: sum(d.count(_queue(stack, k)) for k in expected)
                       + d.count(stack.config.bridge_dlq_name) >= total
                       and d.count(stack.config.audit_queue_name) >= stats.batches, 30, "all messages")
    assert not drainer.errors
    got = {dest: drainer.count(_queue(stack, dest)) for dest in expected}
    assert got == dict(expected)
    parked = Counter(m.attributes["reason"] for m in drainer.messages[stack.config.bridge_dlq_name])
    assert dict(parked) == parked_expected
    # the parked document keeps the record as Lambda delivered it (or points at S3)
    for m in drainer.messages[stack.config.bridge_dlq_name]:
        doc = body_json(m)
        assert doc["reason"] == m.attributes["reason"]
        assert "record" in doc or doc["record_s3_uri"].startswith("s3://")
    # audit: one event per batch, counts consistent with what was handled
    audits = [body_json(m) for m in drainer.messages[stack.config.audit_queue_name]]
    assert len(audits) == stats.batches
    assert sum(a["records"] for a in audits) == len(scenario)
    assert sum(sum(a["parked"].values()) for a in audits) == sum(parked_expected.values())
    delivered_by_audit: Counter[str] = Counter()
    for a in audits:
        delivered_by_audit.update(a["delivered"])
    assert delivered_by_audit["fulfilment"] == expected["fulfilment"]
    assert delivered_by_audit["payments-ledger"] == expected["payments-ledger"]
    # FIFO: messages of one key arrive in the order they were produced
    _assert_fifo_order(drainer.messages[_queue(stack, "fulfilment")])
    # destination DLQs stay empty
    dlqs = [stack.config.destination(d).dlq_physical_name(stack.config.prefix) for d in expected]
    assert all(drainer.count(q) == 0 for q in dlqs)


def _assert_fifo_order(messages: list[Any]) -> int:
    """Per message group, Kafka offsets rise in the order the queue hands messages out."""
    by_group: dict[str, list[int]] = defaultdict(list)
    for m in messages:  # receive order, one drainer thread per queue
        _, _, offset = record_id_of(m).rpartition("-")
        by_group[m.group_id or ""].append(int(offset))
    violations = 0
    for offsets in by_group.values():
        violations += sum(1 for a, b in itertools.pairwise(offsets) if b < a)
    assert violations == 0
    return violations


class PollerCrash(BaseException):
    """Stands for the poller dying: not an Exception, so the poller does not retry it."""


def test_poller_killed_after_delivery_before_commit_resumes_without_loss(
        clean: E2EStack, drainer_factory: Callable[..., Drainer]) -> None:
    # given: the handler delivers the third batch, then the poller dies before committing it
    stack = clean
    scenario = [s for s in demo_scenario(stack.config, count=60) if s.expect == "deliver"]
    drainer = drainer_factory()
    produce(stack.config, stack.state.bootstrap_servers, [s.record for s in scenario],
            lambda p: signing_key(stack.config, p, stack.clients.secretsmanager))
    calls = {"n": 0, "records_in_flight": 0}

    def crash_after_third(event: dict[str, Any], context: Any) -> Any:
        result = stack.handler(event, context)
        calls["n"] += 1
        if calls["n"] == 3:
            calls["records_in_flight"] = sum(len(v) for v in event["records"].values())
            raise PollerCrash
        return result

    settings = PollerSettings.from_config(stack.config, idle_seconds=2.0, batch_size=20)
    with pytest.raises(PollerCrash):
        Poller(stack.config, stack.state.bootstrap_servers, crash_after_third, settings).run()

    # when: a new poller starts from the committed offsets
    settings = PollerSettings.from_config(stack.config, idle_seconds=2.0, batch_size=20)
    stats = Poller(stack.config, stack.state.bootstrap_servers, stack.handler, settings).run()

    # then: nothing lost; the re-read batch is the only source of duplicates
    expected = _expected_destinations(scenario)
    drainer.wait_until(lambda d: all(d.count(_queue(stack, k)) >= n for k, n in expected.items()), 30,
                       "every expected message")
    ids_by_dest = {k: [record_id_of(m) for m in drainer.messages[_queue(stack, k)]] for k in expected}
    for dest, n in expected.items():
        assert len(set(ids_by_dest[dest])) == n, dest  # every record arrived
    duplicates = {k: len(v) - len(set(v)) for k, v in ids_by_dest.items()}
    # FIFO queues drop the re-sends (same dedup id within 5 minutes, even though the drainer deleted
    # the first copy); standard queues and the SNS fan-out may see the batch in flight twice.
    assert duplicates["fulfilment"] == duplicates["payments-ledger"] == 0
    assert sum(duplicates.values()) <= calls["records_in_flight"] * 3
    assert stats.records >= sum(1 for _ in scenario) - 60 - calls["records_in_flight"]
    _assert_fifo_order(drainer.messages[_queue(stack, "fulfilment")])


def test_handler_exception_retries_then_sends_batch_to_s3_on_failure(clean: E2EStack) -> None:
    # given: a handler that always fails
    stack = clean
    scenario = demo_scenario(stack.config, count=2)[:3]
    produce(stack.config, stack.state.bootstrap_servers, [s.record for s in scenario],
            lambda p: signing_key(stack.config, p, stack.clients.secretsmanager))
    attempts = {"n": 0}

    def always_fails(event: dict[str, Any], context: Any) -> Any:
        attempts["n"] += 1
        raise RuntimeError("downstream unavailable")

    # when
    settings = PollerSettings.from_config(stack.config, idle_seconds=1.5, max_retries=2, retry_delay_seconds=0.01)
    stats = Poller(stack.config, stack.state.bootstrap_servers, always_fails, settings,
                   s3_on_failure(stack.state, stack.config), stop_after_records=len(scenario)).run()

    # then: each batch tried 3 times, then stored with its records; offsets committed (no re-read)
    assert stats.records == len(scenario)
    assert stats.failed_batches == stats.batches
    assert attempts["n"] == 3 * stats.batches
    stored = 0
    for uri in stats.on_failure:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        doc = json.loads(stack.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        assert doc["requestContext"]["condition"] == "RetryAttemptsExhausted"
        assert "downstream unavailable" in doc["error"]
        stored += sum(len(v) for v in doc["payload"]["records"].values())
    assert stored == len(scenario)
    assert _poll(stack, idle=1.0).records == 0


def _manifest() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((ROOT / "events" / "manifest.json").read_text())
    return data


@pytest.mark.parametrize("event_file", sorted(_manifest()))
def test_bridge_invoke_json_on_each_shipped_event_gives_its_promised_outcome_without_flags(
        clean: E2EStack, event_file: str) -> None:
    # given
    stack = clean
    expected = _manifest()[event_file]

    # when
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_local.cli", "--config", str(stack.config_path), "--state-dir",
         str(stack.state_dir), "invoke", "--event", str(ROOT / "events" / event_file), "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)

    # then
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    summary = out["result"]["summary"]
    assert summary["delivered"] == expected["delivered"]
    assert summary["parked"] == expected["parked"]
    assert sorted(p["reason"] for p in out["parked"]) == sorted(
        r for r, n in expected["parked"].items() for _ in range(n))


def test_bridge_invoke_reports_a_malformed_event_file_in_one_line(stack: E2EStack, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"eventSource": "aws:kafka", "records": {"orders-0": [{"topic": "orders"}]}}')
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_local.cli", "--config", str(stack.config_path), "--state-dir",
         str(stack.state_dir), "invoke", "--event", str(bad)],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "records['orders-0'][0]" in proc.stderr
    assert 'missing "partition"' in proc.stderr
