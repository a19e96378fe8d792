"""Park, fix the cause, `bridge redrive`: broker -> poller -> handler -> MiniStack, then the CLI on the bridge DLQ."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from bridge.config import SNS_DEFAULT_MAX_MESSAGE_BYTES, load_config_file

from bridge_local.events import PlainRecord
from bridge_local.poller import Poller, PollerSettings, load_real_handler
from bridge_local.producer import produce
from bridge_local.provision import signing_key
from tests.e2e.conftest import CONFIG_PATH, ROOT, Drainer, E2EStack, body_json

pytestmark = pytest.mark.e2e

# Over the too-tight limit the first config gives order-events (the bridge parks it as too_large),
# well under what SNS takes (MiniStack, like SNS, rejects a Publish over 256 KiB), so raising the
# config's limit back to SNS's is the fix.
TIGHT_SNS_LIMIT = 100_000
BIG_VALUE_BYTES = 150_000
assert TIGHT_SNS_LIMIT < BIG_VALUE_BYTES < SNS_DEFAULT_MAX_MESSAGE_BYTES - 10_000


def _big_order() -> PlainRecord:
    value = {"order_id": "order-redrive", "total": 10.0, "notes": ""}
    pad = BIG_VALUE_BYTES - len(json.dumps(value, separators=(",", ":")))
    value["notes"] = "x" * pad
    return PlainRecord("orders", b"order-redrive", json.dumps(value, separators=(",", ":")).encode(),
                       (("event-type", b"OrderPlaced"),), "order-service", sign=True)


def _shipped_order() -> PlainRecord:
    return PlainRecord("orders", b"order-shipped", b'{"order_id":"order-shipped","total":50.0}',
                       (("event-type", b"OrderShipped"),), "order-service", sign=True)


def _tight_config(tmp_path: Path) -> Path:
    """dev.yaml with order-events limited below what SNS takes: the mistake to fix."""
    doc: dict[str, Any] = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    for d in doc["destinations"]:
        if d["name"] == "order-events":
            d["max_message_bytes"] = TIGHT_SNS_LIMIT
    path = tmp_path / "tight.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _fixed_config(tmp_path: Path) -> Path:
    """dev.yaml (order-events at SNS's default limit again) with a route for shipped orders."""
    doc: dict[str, Any] = yaml.safe_load(CONFIG_PATH.read_text(encoding="utf-8"))
    doc["routes"].append({"name": "shipped-orders", "match": {"topic": "orders",
                                                              "headers": {"event-type": ["OrderShipped"]}},
                          "to": ["fraud-review"]})
    path = tmp_path / "fixed.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def _depth(stack: E2EStack, queue: str) -> int:
    attrs = stack.clients.sqs.get_queue_attributes(
        QueueUrl=stack.queue_url(queue),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_redrive_after_the_fix_delivers_only_what_was_missed_and_empties_the_dlq(
        clean: E2EStack, drainer_factory: Callable[..., Drainer], tmp_path: Path) -> None:
    # given: a big order parked for order-events (fulfilment got it) and an unroutable shipped order
    stack = clean
    config = stack.config
    queue = {name: config.destination(name).physical_name(config.prefix)
             for name in ("fulfilment", "analytics", "billing", "fraud-review")}
    drainer = drainer_factory([*queue.values(), config.audit_queue_name])
    produce(config, stack.state.bootstrap_servers, [_big_order(), _shipped_order()],
            lambda p: signing_key(config, p, stack.clients.secretsmanager))
    settings = PollerSettings.from_config(config, idle_seconds=2.0)
    tight = _tight_config(tmp_path)
    try:
        handler = load_real_handler(stack.state, load_config_file(tight), str(tight), log_level="ERROR")
        stats = Poller(config, stack.state.bootstrap_servers, handler, settings, stop_after_records=2).run()
    finally:  # the session's handler is dev.yaml's again for the tests after this one
        load_real_handler(stack.state, config, str(stack.config_path), log_level="ERROR")
    assert dict(stats.parked) == {"too_large": 1, "unroutable": 1}
    assert dict(stats.delivered) == {"fulfilment": 1}
    drainer.wait_until(lambda d: d.count(queue["fulfilment"]) == 1, 15, "the big order in fulfilment")
    assert _depth(stack, config.bridge_dlq_name) == 2

    # when / then: a misspelt --destination selects nothing, and the line says the name is not the config's
    typo = subprocess.run(
        [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(stack.state_dir), "redrive", "--dry-run",
         "--destination", "order-event"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert typo.returncode == 1
    (line,) = typo.stderr.strip().splitlines()
    assert "can be redriven with destination order-event" in line
    assert line.endswith(f"--destination order-event names no destination of orders-bridge "
                         f"({', '.join(d.name for d in config.destinations)}). "
                         "Fix: --destination with one of those names")

    # when: the cause is fixed (bigger SNS limit, a route for shipped orders) and the DLQ redriven
    proc = subprocess.run(
        [sys.executable, "-m", "bridge_local.cli", "--config", str(_fixed_config(tmp_path)), "--state-dir",
         str(stack.state_dir), "redrive", "--json"],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)

    # then: both records handed over, both DLQ messages deleted, nothing parked again
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["redriven"], out["events"], out["dlq_messages_deleted"]) == (2, 1, 2)
    assert out["delivered"] == {"order-events": 1, "fraud-review": 1}
    assert out["parked_again"] == {}
    assert _depth(stack, config.bridge_dlq_name) == 0
    # order-events got exactly the one record (its subscribers show it), the shipped order its new route
    drainer.wait_until(lambda d: d.count(queue["analytics"]) >= 1 and d.count(queue["billing"]) >= 1
                       and d.count(queue["fraud-review"]) >= 1
                       and any(body_json(m).get("redrive") for m in d.messages[config.audit_queue_name]),
                       15, "the redriven records and the redrive audit event")
    assert [drainer.count(queue[n]) for n in ("analytics", "billing", "fraud-review")] == [1, 1, 1]
    assert "order-redrive" in drainer.messages[queue["analytics"]][0].body
    assert body_json(drainer.messages[queue["fraud-review"]][0])["key"] == "order-shipped"
    # fulfilment got no duplicate: one message ever, nothing left in the queue or in flight
    assert drainer.count(queue["fulfilment"]) == 1
    assert _depth(stack, queue["fulfilment"]) == 0
    (audit,) = [body_json(m) for m in drainer.messages[config.audit_queue_name] if body_json(m).get("redrive")]
    assert (audit["records"], audit["delivered"], audit["parked"]) == (2, {"order-events": 1, "fraud-review": 1}, {})
    assert not drainer.errors
