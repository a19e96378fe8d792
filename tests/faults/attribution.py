"""Where a fault run's duplicates come from, read from the fault proxy's journal (bridge_local.faults).

The proxy sees every send request (SQS SendMessageBatch, SNS PublishBatch) and every checkpoint write
(DynamoDB BatchWriteItem) on the wire, with the moments it arrived, took effect (the local AWS
answered) and was answered back; the harness adds the moments of its SIGKILLs. For each extra copy a
destination queue received, the first request that stored the record is compared with the first
kill after it and with the first checkpoint write that covered the record:

- `in flight`: the request took effect but its answer was not back before the kill;
- `acked, checkpoint write in flight`: answered, its checkpoint write started but not done;
- `acked, checkpoint not started`: answered, no checkpoint write begun before the kill;
- `checkpointed, sent again`: the checkpoint was written before the kill (a bug if it happens);
- `no kill between`: sent again without a kill in between (retries, redrive);
- `not in the journal`: a copy no journaled request explains.

`phases` splits that window for each standard request whose checkpoint followed within a second, in
milliseconds (median and mean): at the service (the send's arrival at the proxy to the local AWS's
answer), answer back (to the caller), client (the answer's arrival to the checkpoint write's: parse,
wait for the GIL, build and sign the write), write (the table's answer). A crash is at risk from the
send's arrival to the write's (a request that reached the service takes effect whatever happens to its
caller). Split by whether a FIFO request was under way meanwhile: the FIFO lanes share the local AWS and
the bridge's interpreter with the capped standard request.

`exposure` is the deterministic side of the same window: per standard queue or topic and for all of
them together, the largest number of messages that had taken effect without their checkpoint written
yet, at any instant (what a
kill at the worst moment would duplicate; an SNS publish counts once here and once per subscribed
queue in the duplicates). FIFO queues are left out: they drop re-sends by deduplication id.
"""

from __future__ import annotations

import bisect
import json
import re
import statistics
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge_local.faults import Exchange

RECORD_ID = "record-id"
CAUSES = ("in flight", "acked, checkpoint write in flight", "acked, checkpoint not started",
          "checkpointed, sent again", "no kill between", "not in the journal")
ALL_STANDARD = "all standard"  # the exposure of every standard target together
_SNS_ATTRIBUTE = re.compile(
    r"^PublishBatchRequestEntries\.member\.(\d+)\.MessageAttributes\.entry\.(\d+)\.(Name|Value\.StringValue)$")


@dataclass
class Attribution:
    """Duplicates by cause, send copies per target beyond the first, and the largest exposure."""

    causes: Counter[str] = field(default_factory=Counter)
    resent: Counter[str] = field(default_factory=Counter)  # target -> requests' copies beyond the first
    exposure: dict[str, int] = field(default_factory=dict)  # standard target -> most messages stored, unrecorded
    exposure_at_kills: list[int] = field(default_factory=list)  # standard messages at risk, per kill
    requests: Counter[str] = field(default_factory=Counter)  # journaled requests by operation
    # "fifo idle" / "fifo busy" -> phase -> (median, mean) milliseconds, and "n" -> (requests, requests)
    phases: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"causes": dict(self.causes), "resent": dict(self.resent), "exposure": self.exposure,
                "exposure_at_kills": self.exposure_at_kills, "requests": dict(self.requests),
                "window_ms": self.phases}


def sent_record_ids(x: Exchange) -> list[str]:
    """The record ids of the messages of one send request."""
    if x.service == "sqs":
        doc = json.loads(x.body or b"{}")
        entries = doc.get("Entries") or ([doc] if "MessageBody" in doc else [])
        return [str(((e.get("MessageAttributes") or {}).get(RECORD_ID) or {}).get("StringValue", ""))
                for e in entries]
    form = urllib.parse.parse_qsl(x.body.decode("utf-8", "replace"), keep_blank_values=True)
    names: dict[tuple[int, int], str] = {}
    values: dict[tuple[int, int], str] = {}
    for k, v in form:
        m = _SNS_ATTRIBUTE.match(k)
        if m:
            (names if m.group(3) == "Name" else values)[(int(m.group(1)), int(m.group(2)))] = v
    return [values.get(key, "") for key, name in sorted(names.items()) if name == RECORD_ID]


def checkpointed(x: Exchange) -> list[tuple[str, str]]:
    """(destination, record id) pairs a checkpoint write recorded as delivered."""
    out: list[tuple[str, str]] = []
    for requests in (json.loads(x.body or b"{}").get("RequestItems") or {}).values():
        for r in requests:
            item = (r.get("PutRequest") or {}).get("Item") or {}
            kind, destination, _ = item["entry"]["S"].split("#", 2)
            if kind != "d":
                continue
            topic_partition = item["shard"]["S"].split("/", 1)[0]
            out.extend((destination, f"{topic_partition}-{t.split('.', 1)[0]}") for t in item["tokens"]["S"].split())
    return out


def attribute(journal: Sequence[Exchange], kills: Sequence[float], received: Mapping[str, Iterable[str]],
              destination_of: Mapping[str, tuple[str, str]], restarts: Sequence[float] = ()) -> Attribution:
    """`received`: drained queue -> record ids of every message it got, copies included;
    `destination_of`: drained queue -> (bridge destination, physical send target); `restarts`: when
    the process after each kill was started (a request arriving before it came from the killed
    process, even after the kill: the proxy may begin reading it late); the kills if not given."""
    killer = _Killer(kills, restarts or kills)
    sends: dict[tuple[str, str], list[Exchange]] = {}  # (target, record id) -> requests that stored it
    writes: dict[tuple[str, str], list[Exchange]] = {}  # (destination, record id) -> checkpoint writes
    for x in sorted(journal, key=lambda e: e.arrived):
        if x.status != 200:
            continue
        if x.operation == "BatchWriteItem":
            for key in checkpointed(x):
                writes.setdefault(key, []).append(x)
        elif x.target_name:
            for rid in sent_record_ids(x):
                sends.setdefault((x.target_name, rid), []).append(x)
    out = Attribution(requests=Counter(x.operation for x in journal))
    for (target, _), xs in sends.items():
        if len(xs) > 1:
            out.resent[target] += len(xs) - 1
    for queue, rids in received.items():
        destination, target = destination_of[queue]
        for rid, n in Counter(rids).items():
            if n > 1:
                out.causes[_cause(sends.get((target, rid), []), writes.get((destination, rid), []), killer)] += n - 1
    out.exposure, out.exposure_at_kills = _exposure(sends, writes, destination_of, killer)
    out.phases = window_phases(journal, writes, destination_of)
    return out


PHASES = ("service", "answer back", "client", "write")
CHECKPOINT_FOLLOWS_SECONDS = 1.0  # a later write is a redelivered batch's, not this request's checkpoint


def window_phases(journal: Sequence[Exchange], writes: Mapping[tuple[str, str], list[Exchange]],
                  destination_of: Mapping[str, tuple[str, str]]) -> dict[str, dict[str, tuple[float, float]]]:
    """The window of each answered standard request, split into `PHASES` (module docstring)."""
    destination_for = {target: destination for destination, target in destination_of.values()}
    fifo = [(x.arrived, x.answered) for x in journal if x.target_name and x.target_name.endswith(".fifo")]
    split: dict[str, dict[str, list[float]]] = {}
    for x in journal:
        destination = destination_for.get(x.target_name or "")
        if destination is None or x.target_name is None or x.target_name.endswith(".fifo"):
            continue
        rids = sent_record_ids(x) if x.status == 200 and x.replied is not None else []
        w = next((w for w in writes.get((destination, rids[0]), ()) if w.arrived >= (x.replied or 0)), None) \
            if rids else None
        if w is None or x.replied is None or w.arrived - x.replied > CHECKPOINT_FOLLOWS_SECONDS:
            continue
        busy = any(a < w.arrived and b > x.arrived for a, b in fifo)
        phases = split.setdefault("fifo busy" if busy else "fifo idle", {p: [] for p in PHASES})
        for phase, ms in zip(PHASES, (x.answered - x.arrived, x.replied - x.answered, w.arrived - x.replied,
                                      w.answered - w.arrived), strict=True):
            phases[phase].append(ms * 1000)
    return {k: {"n": (len(v["service"]), len(v["service"])),
                **{p: (round(statistics.median(ms), 2), round(statistics.mean(ms), 2)) for p, ms in v.items()}}
            for k, v in split.items()}


class _Killer:
    """Which kill ended the process that sent a request: the processes are told apart by their start."""

    def __init__(self, kills: Sequence[float], restarts: Sequence[float]) -> None:
        self.kills = sorted(kills)
        self.restarts = sorted(restarts)

    def of(self, arrived: float) -> float | None:
        """The kill of the process a request arriving at `arrived` came from; None if it was not killed."""
        i = bisect.bisect_right(self.restarts, arrived)
        return self.kills[i] if i < len(self.kills) else None


def _cause(xs: list[Exchange], ws: list[Exchange], killer: _Killer) -> str:
    if len(xs) < 2:
        return "not in the journal"
    first, again = xs[0], xs[1]
    kill = killer.of(first.arrived)
    if kill is None or killer.of(again.arrived) == kill:
        return "no kill between"
    if ws and ws[0].answered <= kill:
        return "checkpointed, sent again"
    if first.replied is None or first.replied > kill:
        return "in flight"
    if ws and ws[0].arrived <= kill:
        return "acked, checkpoint write in flight"
    return "acked, checkpoint not started"


def _exposure(sends: Mapping[tuple[str, str], list[Exchange]], writes: Mapping[tuple[str, str], list[Exchange]],
              destination_of: Mapping[str, tuple[str, str]], killer: _Killer) -> tuple[dict[str, int], list[int]]:
    """Per standard send target (and for all of them together, `ALL_STANDARD`), the most messages stored
    but not yet checkpointed at one instant (a
    kill closes the windows of the process it killed); and per kill, the messages of standard targets
    whose request had arrived and whose checkpoint was not written (at risk). FIFO targets are left
    out: the queue drops their re-sends by deduplication id."""
    destination_for = {target: destination for destination, target in destination_of.values()}
    events: dict[str, list[tuple[float, int]]] = {}
    windows: list[tuple[float, float]] = []
    for (target, rid), xs in sends.items():
        destination = destination_for.get(target)
        if destination is None or target.endswith(".fifo"):
            continue
        ws = writes.get((destination, rid))
        recorded = ws[0].answered if ws else float("inf")
        kill = killer.of(xs[0].arrived)  # a kill ends the windows of the process it killed
        closed = recorded if kill is None else min(recorded, kill)
        if xs[0].answered < closed:
            events.setdefault(target, []).extend([(xs[0].answered, 1), (closed, -1)])
        windows.append((xs[0].arrived, recorded))
    peaks: dict[str, int] = {}
    events[ALL_STANDARD] = [e for steps in events.values() for e in steps]
    for target, steps in events.items():
        level = peak = 0
        for _, step in sorted(steps):
            level += step
            peak = max(peak, level)
        peaks[target] = peak
    return peaks, [sum(1 for a, b in windows if a <= k < b) for k in killer.kills]
