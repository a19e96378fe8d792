"""`bridge invoke`: one event through the bridge, with the checks and feedback a long one needs.

- The payload is measured against Lambda's synchronous invocation limit before anything runs: an
  event over it runs locally but would be refused by Lambda's Invoke API (and by the console).
- The call runs on a daemon thread while the main thread prints progress (time, and what the bridge
  DLQ holds) and stays interruptible: the first Ctrl-C stops the command at once, as a Lambda
  timeout would cut an invocation short.
- What this invocation parked is read back from the bridge DLQ by record id **and** park time, so
  messages an earlier invocation parked for the same record ids are not reported again.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge_local import report
from bridge_local.provision import LocalClients

# Lambda's request payload limit for synchronous invocation (RequestResponse): 6 MB.
LAMBDA_SYNC_PAYLOAD_BYTES = 6 * 1024 * 1024
PROGRESS_INTERVAL_SECONDS = 2.0
PARKED_SCAN_LIMIT = 200  # DLQ messages read back to list examples; the handler's summary has the totals


def payload_bytes(event: Any) -> int:
    """The event's size as Lambda counts it: the JSON request body."""
    return len(json.dumps(event, separators=(",", ":")).encode("utf-8"))


def oversize_warning(size: int) -> str | None:
    """A one-line warning when `size` is over Lambda's synchronous payload limit, else None."""
    if size <= LAMBDA_SYNC_PAYLOAD_BYTES:
        return None
    return (f"warning: the event is {size / 1_048_576:.1f} MiB, over Lambda's {LAMBDA_SYNC_PAYLOAD_BYTES // 1_048_576} "
            "MiB synchronous invoke limit: it runs here, but Lambda (console Test, aws lambda invoke) would refuse "
            "it with RequestEntityTooLargeException. Fix: split the records over several events")


@dataclass
class Outcome:
    """What one call returned or raised, and how long it took."""

    result: Any
    error: str | None
    seconds: float


def run_with_progress(call: Callable[[], Any], tick: Callable[[float], None],
                      interval: float = PROGRESS_INTERVAL_SECONDS) -> Outcome:
    """Run `call` on a daemon thread; `tick(elapsed)` every `interval` seconds while it runs.

    The main thread only waits, so Ctrl-C (KeyboardInterrupt) reaches the caller at once instead of
    after the call; the daemon thread does not keep the process alive once the caller exits.
    """
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = call()
        except Exception as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"

    started = time.monotonic()
    worker = threading.Thread(target=target, name="bridge-invoke", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(interval)
        if worker.is_alive():
            tick(time.monotonic() - started)
    return Outcome(box.get("result"), box.get("error"), time.monotonic() - started)


def dlq_depth(clients: LocalClients, url: str) -> int:
    attrs = clients.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    a = attrs.get("Attributes", {})
    return int(a.get("ApproximateNumberOfMessages", 0)) + int(a.get("ApproximateNumberOfMessagesNotVisible", 0))


def parked_since(clients: LocalClients, url: str, record_ids: Iterable[str], since: datetime,
                 limit: int = PARKED_SCAN_LIMIT) -> list[dict[str, Any]]:
    """The bridge DLQ documents of `record_ids` parked at or after `since` (up to `limit` scanned)."""
    wanted = set(record_ids)
    if not wanted:
        return []
    out = []
    for m in report.peek(clients, url, limit):
        try:
            body = json.loads(m["Body"])
            parked_at = datetime.fromisoformat(str(body.get("parked_at")))
        except (ValueError, TypeError):
            continue
        if body.get("record_id") in wanted and parked_at >= since:
            out.append({k: body.get(k) for k in ("record_id", "reason", "detail", "destination", "route",
                                                 "record_s3_uri", "parked_at")})
    return sorted(out, key=lambda p: (str(p["parked_at"]), str(p["record_id"])))
