"""The local poller survives a broker that stalls past the consumer's session timeout.

The broker (a real Tansu process) is stopped with SIGSTOP while the handler runs, for longer than
`session.timeout.ms`, then resumed: the group coordinator has dropped the consumer, so the offset
commit is refused with UNKNOWN_MEMBER_ID. The poller must say so, rejoin and carry on, reading the
uncommitted batch again, instead of exiting with a traceback.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bridge.config import load_config_file
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from bridge_local.poller import Poller, PollerSettings
from bridge_local.services import HOST, ServiceState, start_kafka, stop_process

ROOT = Path(__file__).resolve().parents[2]
SESSION_TIMEOUT_MS = 6000  # the smallest Tansu accepts comfortably; the stall must outlast it

pytestmark = [pytest.mark.faults]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[ServiceState]:
    kafka = start_kafka(tmp_path)
    try:
        yield kafka
    finally:
        os.kill(kafka.pid, signal.SIGCONT)  # a stopped process would ignore SIGTERM until resumed
        stop_process(kafka.pid)


def test_poller_rejoins_after_the_broker_stalls_past_the_session_timeout(broker: ServiceState) -> None:
    # given: one topic with 5 records, and a handler during whose first call the broker stalls
    bootstrap = f"{HOST}:{broker.port}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("orders", 1, 1)])["orders"].result(10)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        producer.produce("orders", key=f"k{i}".encode(), value=b"{}")
    producer.flush(10)
    seen: list[list[int]] = []
    notices: list[str] = []

    def handler(event: dict[str, Any], _context: Any) -> dict[str, Any]:
        offsets = [r["offset"] for rs in event["records"].values() for r in rs]
        seen.append(offsets)
        if len(seen) == 1:
            os.kill(broker.pid, signal.SIGSTOP)
            time.sleep(SESSION_TIMEOUT_MS / 1000 * 1.5)  # the condition under test: a stall past the timeout
            os.kill(broker.pid, signal.SIGCONT)
        return {"batchItemFailures": []}

    config = load_config_file(ROOT / "config" / "dev.yaml")
    settings = PollerSettings(batch_size=10, batching_window_seconds=0.2, idle_seconds=4,
                              session_timeout_ms=SESSION_TIMEOUT_MS, join_timeout_seconds=60)
    poller = Poller(config, bootstrap, handler, settings, topics=("orders",), notice=notices.append)

    # when
    stats = poller.run()

    # then: the refused commit was reported, the consumer rejoined and read the batch again
    assert stats.rejoins == 1, notices
    assert "UNKNOWN_MEMBER_ID" in notices[0] or "ILLEGAL_GENERATION" in notices[0]
    assert "rejoining" in notices[0]
    assert seen[0] == [0, 1, 2, 3, 4]
    assert seen[1] == [0, 1, 2, 3, 4]  # not committed, so read again after the rejoin
