"""`bridge inspect` and the demo summary print parked records the same way: a table by reason, not a dict."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from bridge.config import load_config_file

from bridge_local import report

DEV = Path(__file__).resolve().parents[2] / "config" / "dev.yaml"


def _snapshot(parked: dict[str, int]) -> report.StackSnapshot:
    return report.StackSnapshot(queues=[], parked_by_reason=Counter(parked),
                                parked_examples={r: f"detail of {r}" for r in parked}, audit_events=3,
                                audit_records=40, on_failure_objects=1)


def test_parked_records_are_a_table_by_reason_with_an_example_each() -> None:
    config = load_config_file(DEV)
    out = report.render_parked(config, _snapshot({"unroutable": 2, "signature-invalid": 5}), bucket="b")
    lines = out.splitlines()
    assert lines[0] == f"Bridge DLQ ({config.bridge_dlq_name}): 7 parked"
    assert lines[1].split() == ["reason", "parked", "example", "detail"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:5]}
    assert rows == {"signature-invalid": ["5", "detail", "of", "signature-invalid"],
                    "unroutable": ["2", "detail", "of", "unroutable"]}
    assert f"Audit queue ({config.audit_queue_name}): 3 batch events covering 40 records" in lines
    assert "On-failure batches in s3://b/on-failure/: 1" in lines
    assert "{" not in out
    assert "Counter(" not in out


def test_nothing_parked_says_so_without_an_empty_table() -> None:
    config = load_config_file(DEV)
    out = report.render_parked(config, _snapshot({}), bucket="b")
    assert out.splitlines()[0] == f"Bridge DLQ ({config.bridge_dlq_name}): 0 parked"
    assert "reason" not in out


def test_the_demo_summary_ends_with_the_same_parked_section() -> None:
    config = load_config_file(DEV)
    snap = _snapshot({"unroutable": 2})
    summary = report.render_summary(config, snap, delivered={}, bucket="b")
    assert summary.endswith(report.render_parked(config, snap, bucket="b"))
