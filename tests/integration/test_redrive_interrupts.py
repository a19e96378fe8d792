"""`bridge redrive` killed with SIGKILL mid-run, against MiniStack's SQS and DynamoDB: what the next run finds."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from bridge.parking import ParkRequest, parked_document
from bridge.records import decode_record

from bridge_local.cli import _in_flight
from bridge_local.redrive import DynamoDbRedriveLedger, RedriveError, RedriveOptions, SqsParkedQueue, redrive
from tests.helpers import kafka_record
from tests.integration.conftest import Deployed
from tests.integration.test_checkpoints_moto import checkpointed

pytestmark = pytest.mark.integration

VISIBILITY_SECONDS = 2  # short, so the test sees the messages of the killed run come back

# A redrive whose process is killed (SIGKILL) right after the bridge took the event and the ledger
# recorded it, before the DLQ delete: the worst moment, since the messages were replayed but remain.
KILLED_RUN = """
import os, signal, sys
import boto3
from bridge_local.redrive import DynamoDbRedriveLedger, RedriveOptions, SqsParkedQueue, redrive

endpoint, url, table = sys.argv[1:4]
kw = {"region_name": "us-east-1", "endpoint_url": endpoint}

class DiesOnDelete(SqsParkedQueue):
    def delete(self, receipt_handles):
        os.kill(os.getpid(), signal.SIGKILL)

redrive(DiesOnDelete(boto3.client("sqs", **kw), url), lambda uri: {}, lambda event: {"summary": {}},
        RedriveOptions(batch_size=10, visibility_seconds=int(sys.argv[4])),
        DynamoDbRedriveLedger(boto3.client("dynamodb", **kw), table))
"""


def test_a_redrive_killed_before_its_delete_is_reported_by_the_next_run_which_then_replays_nothing_twice(
        deploy: Callable[..., Deployed], tmp_path: Path) -> None:
    # given: a park stored twice (a DLQ answer lost) and another park, in the bridge DLQ
    env, dynamodb = checkpointed(deploy, tmp_path, "it-redrive-kill")
    url = env.url(env.config.bridge_dlq_name)
    docs = [parked_document(ParkRequest(decode_record(kafka_record(offset=o)), "delivery_failed", "down", "c",
                                        "route", "queue"), None, "2026-01-01T00:00:00+00:00", f"{o:032x}")
            for o in (1, 1, 2)]
    for doc in docs:
        env.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(doc))
    table = env.config.checkpoint_table_name

    # when: a redrive is killed with SIGKILL after handing the records over, before deleting their messages
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, env.endpoint, url, table, str(VISIBILITY_SECONDS)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert killed.returncode == -9, killed.stderr

    # then: the next run, while the killed run's messages are still invisible, says where they are
    queue = SqsParkedQueue(env.sqs, url)
    ledger = DynamoDbRedriveLedger(dynamodb, table)
    options = RedriveOptions(batch_size=10, visibility_seconds=VISIBILITY_SECONDS)
    invoked: list[Mapping[str, Any]] = []
    with pytest.raises(RedriveError, match="is empty: nothing to redrive"):
        redrive(queue, lambda uri: {}, lambda event: invoked.append(event) or {"summary": {}}, options, ledger)
    assert "about 3 DLQ message(s) are in flight" in _in_flight(queue, options)
    # and once they are visible again, it deletes them without handing anything to the bridge a second time
    deadline = time.monotonic() + 30
    while queue.in_flight() and time.monotonic() < deadline:
        time.sleep(0.2)  # until the killed run's visibility timeout ends; bounded
    report = redrive(queue, lambda uri: {}, lambda event: invoked.append(event) or {"summary": {}}, options, ledger)
    assert invoked == []
    assert (len(report.replayed_before), report.deleted) == (3, 3)
    assert queue.in_flight() == 0
    assert env.sqs.receive_message(QueueUrl=url).get("Messages", []) == []
