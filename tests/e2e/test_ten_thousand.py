"""10,000 records: broker -> poller (a real subprocess, SIGKILLed mid-stream and restarted) -> handler -> MiniStack.

Asserts zero lost records and per-key order on the FIFO destinations, and reports the duplicates the
restart caused. Why duplicates can appear: offsets are committed only after the handler returns, so
the batch in flight when the poller dies is read again. On AWS, FIFO destinations drop the re-sends
(the deduplication id is derived from topic/partition/offset/destination, and the window is 5
minutes; MiniStack keeps that window too, even after the message is deleted); standard queues and the
SNS fan-out may receive them twice (bounded by one batch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bridge_local.producer import produce
from bridge_local.provision import signing_key
from bridge_local.soak import workload
from tests.e2e.conftest import ROOT, Drainer, E2EStack, record_id_of

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TOTAL = 10_000
KILL_AFTER_MESSAGES = 6_000  # delivered messages seen before the poller is killed
BATCH_SIZE = 500  # dev.yaml's source.batch_size: the poller batches as the deployed mapping would


_SEQ_CACHE: dict[str, str] = {}


def _seq(msg: Any) -> str:
    """topic/seq of a delivered message: topic from the record id, seq from the body (raw or envelope)."""
    if msg.message_id not in _SEQ_CACHE:
        topic = record_id_of(msg).rsplit("-", 2)[0]
        body = json.loads(msg.body)
        value = body["value"] if "value" in body and "offset" in body else body
        _SEQ_CACHE[msg.message_id] = f"{topic}/{value['seq']}"
    return _SEQ_CACHE[msg.message_id]


def _start_poller(stack: E2EStack) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge_local.cli", "--config", str(stack.config_path), "--state-dir",
         str(stack.state_dir), "poll", "--quiet", "--idle-seconds", "3", "--batch-size", str(BATCH_SIZE)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())


def test_ten_thousand_records_survive_a_poller_kill_with_order_kept(
        clean: E2EStack, drainer_factory: Callable[..., Drainer]) -> None:
    stack = clean
    records, expect = workload(TOTAL)
    queues = {d: stack.config.destination(d).physical_name(stack.config.prefix) for d in expect}
    drainer = drainer_factory()
    started = time.monotonic()

    # given: 10,000 records on the broker
    produce(stack.config, stack.state.bootstrap_servers, records,
            lambda p: signing_key(stack.config, p, stack.clients.secretsmanager))
    produced_at = time.monotonic()

    # when: the poller runs, is SIGKILLed mid-stream, and is started again until drained
    first = _start_poller(stack)
    try:
        drainer.wait_until(lambda d: sum(d.count(q) for q in queues.values()) >= KILL_AFTER_MESSAGES, 120,
                           f"{KILL_AFTER_MESSAGES} delivered messages before the kill")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at_messages = sum(drainer.count(q) for q in queues.values())
    second = _start_poller(stack)
    try:
        _, err = second.communicate(timeout=180)
    finally:
        if second.poll() is None:
            second.kill()
            second.wait(timeout=10)
    assert second.returncode == 0, err.decode()[-2000:]
    wanted = sum(len(v) for v in expect.values())
    drainer.wait_until(lambda d: sum(d.count(q) for q in queues.values()) >= wanted
                       and sum(len({_seq(m) for m in d.messages[q]}) for q in queues.values()) >= wanted, 120,
                       "every expected message")
    finished = time.monotonic()

    # then: nothing lost, FIFO order per key kept, duplicates only where the protocol allows them
    assert not drainer.errors
    lost = {d: len(expect[d] - {_seq(m) for m in drainer.messages[q]}) for d, q in queues.items()}
    duplicates = {d: len(drainer.messages[q]) - len({_seq(m) for m in drainer.messages[q]}) for d, q in queues.items()}
    violations = 0
    for d in ("fulfilment", "payments-ledger"):
        last: dict[str, int] = {}
        seen: set[str] = set()
        for m in drainer.messages[queues[d]]:  # receive order; a re-sent duplicate is not an order violation
            key = _seq(m)
            if key in seen:
                continue
            seen.add(key)
            seq = int(key.rsplit("/", 1)[1])
            if seq < last.get(m.group_id or "", -1):
                violations += 1
            last[m.group_id or ""] = max(seq, last.get(m.group_id or "", -1))
    parked = Counter(m.attributes.get("reason") for m in drainer.messages[stack.config.bridge_dlq_name])
    seconds = finished - started
    figures = {"records": TOTAL, "messages_expected": wanted, "lost": lost, "order_violations": violations,
               "duplicates": duplicates, "killed_after_messages": killed_at_messages, "parked": dict(parked),
               "produce_seconds": round(produced_at - started, 1), "wall_seconds": round(seconds, 1),
               "records_per_second": round(TOTAL / seconds)}
    print("\n10k figures: " + json.dumps(figures))
    (stack.state_dir / "ten-thousand.json").write_text(json.dumps(figures, indent=2))
    assert sum(lost.values()) == 0
    assert violations == 0
    # At most the batch in flight at the kill is re-sent per destination; the FIFO queues drop those
    # re-sends (same deduplication id within 5 minutes, though the drainer deleted the first copy).
    assert all(n <= BATCH_SIZE for n in duplicates.values())
    assert duplicates["fulfilment"] == duplicates["payments-ledger"] == 0
    assert not parked
