"""Attacks on `bridge redrive` through the bridge DLQ: a message planted next to a genuine park.

The DLQ's policy lets only the bridge role send (tests/security/test_dead_letter_queues.py); these
tests are about what redrive does if a message gets there anyway (a leaked bridge credential, an
administrator, a bug): it must never make a genuine park vanish or be replaced.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from bridge.parking import park_id_of
from bridge.service import Bridge

from bridge_local import cli
from bridge_local import redrive as redrive_tool
from tests.helpers import FakeCheckpoints, FakeSender, MemoryLedger, kafka_event, kafka_record, make_config, parked_docs

GENUINE = b'{"order": 7, "amount": 10}'
PLANTED = b'{"order": 7, "amount": 99999}'


class Dlq:
    """The bridge DLQ in memory, in the order SQS happens to return its messages."""

    name = "test-bridge-dev-bridge-dlq"

    def __init__(self, bodies: Sequence[Mapping[str, Any]]) -> None:
        self.pending = [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": json.dumps(b)}
                        for i, b in enumerate(bodies)]
        self.deleted: list[str] = []

    def receive(self, visibility_seconds: int) -> list[dict[str, Any]]:
        out, self.pending = self.pending[:10], self.pending[10:]
        return out

    def hold(self, receipt_handles: Any, visibility_seconds: int) -> None:
        return None

    def delete(self, receipt_handles: Sequence[str]) -> int:
        self.deleted += receipt_handles
        return len(receipt_handles)


def _copied_park_id(genuine: dict[str, Any], planted: dict[str, Any]) -> None:
    planted["park_id"] = genuine["park_id"]


def _recomputed_park_id(genuine: dict[str, Any], planted: dict[str, Any]) -> None:
    planted["park_id"] = park_id_of(planted["record_id"], planted["record"], planted["destination"],
                                    planted["reason"])


def _another_timestamp(genuine: dict[str, Any], planted: dict[str, Any]) -> None:
    planted["record"]["timestamp"] += 1
    _recomputed_park_id(genuine, planted)


def _record_id_of_another_record(genuine: dict[str, Any], planted: dict[str, Any]) -> None:
    planted["record"]["offset"] = 8  # the document still claims orders-0-7
    _recomputed_park_id(genuine, planted)


# What redrive does with the planted message m0 and the genuine park m1: (genuine delivered, planted
# delivered on its own, what the report says). Same position and timestamp: the bridge's checkpoints
# could not tell them apart (the first replayed would make the function skip the other as delivered),
# so both stay in the DLQ, reported as skipped and not as a conflict (a conflict is replayed version by
# version). Another timestamp: each is replayed on its own (the planted one goes through the trust checks
# like any record; this queue takes unsigned records).
WITHHELD = ["m0", "m1"]
CASES = {
    "park-id-copied": (_copied_park_id, False, False,
                       {"mismatched": ["m0"], "skipped": WITHHELD, "conflicts": []}),
    "park-id-recomputed": (_recomputed_park_id, False, False,
                           {"mismatched": [], "skipped": WITHHELD, "conflicts": []}),
    "another-timestamp": (_another_timestamp, True, True,
                          {"mismatched": [], "skipped": [], "conflicts": ["orders-0-7"]}),
    "record-id-of-another-record": (_record_id_of_another_record, True, False,
                                    {"mismatched": [], "skipped": ["m0"], "conflicts": []}),
}


@pytest.mark.attack("DLQ message planted with a genuine park's record id (and its park id, copied or recomputed)",
                    outcome="refused at runtime: never merged with, never replayed in place of the genuine park",
                    how="runtime: Bridge parks -> planted message first in the DLQ -> bridge redrive")
@pytest.mark.parametrize("checkpoints", [False, True], ids=["checkpoints-off", "checkpoints-on"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_planted_park_neither_replaces_nor_deletes_the_genuine_one(
        make_bridge: Callable[..., Bridge], sqs: FakeSender, case: str, checkpoints: bool,
        capsys: pytest.CaptureFixture[str]) -> None:
    forge, genuine_delivered, planted_delivered, expected = CASES[case]
    cfg = make_config(destinations=[{"name": "ledger", "type": "sqs"}],
                      routes=[{"name": "all", "match": {}, "to": ["ledger"]}],
                      settings={"checkpoints": "on" if checkpoints else "off"})
    # given: a genuine record parked because its queue was down
    sqs.reject = lambda target, m: ("ServiceUnavailable", False) if target.name == "ledger" else None
    bridge = make_bridge(cfg, checkpoints=FakeCheckpoints() if checkpoints else None)
    bridge.handle(kafka_event([kafka_record(offset=7, value=GENUINE.decode()), kafka_record(offset=9)]))
    genuine, other = parked_docs(sqs, bridge.dlq.name)
    # and a message planted in front of it: same record id, destination and reason, other bytes
    planted = json.loads(json.dumps(genuine))
    planted["record"]["value"] = base64.b64encode(PLANTED).decode()
    forge(genuine, planted)
    sqs.sent.clear()
    sqs.reject = None
    dlq = Dlq([planted, genuine, other])

    # when the queue is back and the operator redrives
    report = redrive_tool.redrive(dlq, lambda uri: {}, lambda event: bridge.handle(event).result(),
                                  redrive_tool.RedriveOptions(batch_size=10, visibility_seconds=60))

    # then the planted bytes never reach the queue in place of the genuine record, which is either
    # delivered (its DLQ message deleted because it was replayed) or left in the DLQ
    values = [json.loads(m.body) for m in sqs.sent.get("ledger", [])]
    assert (json.loads(GENUINE) in values, "r1" in dlq.deleted) == (genuine_delivered, genuine_delivered)
    assert (json.loads(PLANTED) in values) == planted_delivered
    # and the planted message is reported, never taken for a copy of the genuine park
    reported = {"mismatched": [s.message_id for s in report.mismatched],
                "skipped": [s.message_id for s in report.skipped], "conflicts": report.conflicts}
    assert reported == expected
    assert report.copies == 0
    # and what the operator reads never says a record left in the DLQ was replayed
    cli._print_redrive(report, "the function")
    left_in_dlq = {s.record_id for s in report.skipped}
    said_replayed = [line for line in capsys.readouterr().out.splitlines()
                     if "replayed on its own" in line and any(r in line for r in left_in_dlq)]
    assert said_replayed == []


@pytest.mark.attack("DLQ message planted with a genuine park's position and timestamp, redriven by an earlier run",
                    outcome="refused at runtime: the genuine park stays in the DLQ, never skipped as delivered",
                    how="runtime: Bridge with checkpoints -> planted message redriven alone -> genuine redriven later")
def test_a_planted_park_redriven_first_cannot_make_a_later_run_skip_and_delete_the_genuine_one(
        make_bridge: Callable[..., Bridge], sqs: FakeSender) -> None:
    cfg = make_config(destinations=[{"name": "ledger", "type": "sqs"}],
                      routes=[{"name": "all", "match": {}, "to": ["ledger"]}], settings={"checkpoints": "on"})
    # given: a genuine record parked while its queue was down
    sqs.reject = lambda target, m: ("ServiceUnavailable", False) if target.name == "ledger" else None
    bridge = make_bridge(cfg, checkpoints=FakeCheckpoints())
    bridge.handle(kafka_event([kafka_record(offset=7, value=GENUINE.decode())]))
    (genuine,) = parked_docs(sqs, bridge.dlq.name)
    sqs.sent.clear()
    sqs.reject = None
    # and a run that saw only a message planted with its position and timestamp (past --max, say)
    planted = json.loads(json.dumps(genuine))
    planted["record"]["value"] = base64.b64encode(PLANTED).decode()
    _recomputed_park_id(genuine, planted)
    ledger = MemoryLedger()
    options = redrive_tool.RedriveOptions(batch_size=10, visibility_seconds=60)
    redrive_tool.redrive(Dlq([planted]), lambda uri: {}, lambda event: bridge.handle(event).result(), options, ledger)

    # when a later run finds the genuine park
    dlq = Dlq([genuine])
    with pytest.raises(redrive_tool.RedriveError, match=r"1 skipped; all left in the DLQ"):
        redrive_tool.redrive(dlq, lambda uri: {}, lambda event: bridge.handle(event).result(), options, ledger)

    # then it is left in the DLQ for the operator, not replayed into a checkpoint that takes it for delivered
    assert dlq.deleted == []
