"""`bridge invoke` at scale and under interruption, through the real console entry point.

A 10,000-record event whose records all park (unsigned records for the signed-only payments
ledger: one bad producer deploy) must finish, be counted exactly, warn that Lambda itself would
refuse a payload that large, and stop on the first Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge_local import events as ev
from bridge_local.invoke import LAMBDA_SYNC_PAYLOAD_BYTES, dlq_depth
from tests.e2e.conftest import ROOT, E2EStack

pytestmark = pytest.mark.e2e

RECORDS = 10_000
PAD = 500  # bytes of padding per value: the event ends up over Lambda's 6 MiB invoke limit


def _all_park_event(tmp_path: Path, cluster_arn: str, records: int = RECORDS) -> Path:
    """`records` unsigned payments from the stack's cluster (the bridge refuses events from any other)."""
    plain = [ev.PlainRecord("payments", f"acct-{i % 100}".encode(),
                            json.dumps({"payment_id": f"p-{i}", "amount": 5.0, "currency": "EUR",
                                        "pad": "x" * PAD}).encode(),
                            (("event-type", b"PaymentCaptured"), ("currency", b"EUR")), None, False)
             for i in range(records)]
    event = ev.build_event(ev.to_kafka_records(plain), cluster_arn, "b-1.local:9098", "aws:kafka")
    path = tmp_path / "all-park.json"
    path.write_text(json.dumps(event), encoding="utf-8")
    return path


def _invoke_argv(stack: E2EStack, event: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bridge_local.cli", "--state-dir", str(stack.state_dir), "invoke", "--event",
            str(event), *extra]


def test_invoke_parks_10000_records_counts_them_exactly_and_warns_over_the_invoke_limit(
        clean: E2EStack, tmp_path: Path) -> None:
    # given: 10,000 unsigned records for the signed-only ledger, over 6 MiB as an event
    stack = clean
    event = _all_park_event(tmp_path, stack.config.source.cluster_arn or '')
    dlq = stack.queue_url(stack.config.bridge_dlq_name)
    before = dlq_depth(stack.clients, dlq)

    # when
    started = time.monotonic()
    proc = subprocess.run(_invoke_argv(stack, event, "--json"), capture_output=True, text=True, timeout=300,
                          cwd=ROOT, check=False)
    seconds = time.monotonic() - started

    # then: every record parked, once, and the user told that Lambda would refuse this payload
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["result"]["summary"]["parked"] == {"unsigned": RECORDS}
    assert out["payload_bytes"] > LAMBDA_SYNC_PAYLOAD_BYTES
    assert out["over_invoke_limit"] is True
    assert "over Lambda's 6 MiB synchronous invoke limit" in proc.stderr
    assert dlq_depth(stack.clients, dlq) - before == RECORDS
    print(f"\n10,000 parked records: bridge invoke took {seconds:.1f} s wall, the handler {out['seconds']:.1f} s")


def test_first_ctrl_c_stops_a_long_invoke_and_the_next_command_works(clean: E2EStack, tmp_path: Path) -> None:
    # given: a long invoke under way (long enough to be interrupted whatever the machine's load)
    stack = clean
    event = _all_park_event(tmp_path, stack.config.source.cluster_arn or '', 5 * RECORDS)
    proc = subprocess.Popen(_invoke_argv(stack, event), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        # the size warning, the start line, then a progress line: the handler is running
        lines = [proc.stdout.readline() for _ in range(3)]
        assert lines[0].startswith("warning: the event is"), lines
        assert lines[1].startswith("invoking the handler in-process"), lines
        assert "still running" in lines[2], lines

        # when: one Ctrl-C
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # then: it stops at once, says what that means, and the stack is fine for the next command
    assert proc.returncode == 130
    assert "interrupted after" in err
    assert "cut short" in err
    status = subprocess.run([sys.executable, "-m", "bridge_local.cli", "--state-dir", str(stack.state_dir),
                             "status"], capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)
    assert status.returncode == 0, status.stderr


def test_invoke_reports_only_what_this_invocation_parked(clean: E2EStack) -> None:
    # given: the same event invoked before, so the DLQ already holds a message for its record id
    stack = clean
    event = ROOT / "events" / "fail-unroutable.json"
    first = subprocess.run(_invoke_argv(stack, event, "--json"), capture_output=True, text=True, timeout=60,
                           cwd=ROOT, check=False)
    assert first.returncode == 0, first.stderr

    # when
    second = subprocess.run(_invoke_argv(stack, event, "--json"), capture_output=True, text=True, timeout=60,
                            cwd=ROOT, check=False)

    # then: one parked record reported, the one this invocation parked
    assert second.returncode == 0, second.stderr
    out = json.loads(second.stdout)
    assert [p["reason"] for p in out["parked"]] == ["unroutable"]
    assert dlq_depth(stack.clients, stack.queue_url(stack.config.bridge_dlq_name)) == 2
