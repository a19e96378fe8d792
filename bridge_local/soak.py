"""`make soak`: many records through broker, poller and the deployed function, the poller killed at random.

    python -m bridge_local.soak [--records 100000] [--kills 5] [--in-process] [--seed N]

Starts a private stack (Tansu + MiniStack), deploys the stack into MiniStack (unless --in-process),
produces the records, runs `bridge poll` as a subprocess and SIGKILLs it at random moments
(restarting it each time), while receivers drain every destination queue. At the end it reports,
per destination type (sqs, sqs fifo, sns->sqs): records in, delivered, lost, duplicated, FIFO order
violations, and records/s. `count_outcomes` is the reusable part: give it what each destination
should have received and what its queue held, and it counts lost, duplicated and out-of-order.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.config import BridgeConfig, load_config_file

from bridge_local.events import PlainRecord
from bridge_local.producer import produce
from bridge_local.provision import LocalClients, provision_all, provision_kafka, signing_key
from bridge_local.services import PROJECT_ROOT, LocalStack, state_path

DEFAULT_CONFIG = PROJECT_ROOT / "config" / "dev.yaml"
RECORD_KEY_ATTRIBUTE = "record-id"


@dataclass(frozen=True)
class Seen:
    """One message a destination queue held: which workload record, its FIFO group, its sequence."""

    key: str  # "topic/seq"
    group: str | None
    seq: int


@dataclass
class Counts:
    """Lost, duplicated and out-of-order counts of one destination (or a sum of several)."""

    expected: int = 0
    delivered: int = 0  # distinct records received
    lost: int = 0
    duplicated: int = 0  # messages beyond the first per record
    order_violations: int = 0

    def add(self, other: Counts) -> None:
        for k in ("expected", "delivered", "lost", "duplicated", "order_violations"):
            setattr(self, k, getattr(self, k) + getattr(other, k))


def count_outcomes(expected: Mapping[str, set[str]], received: Mapping[str, Sequence[Seen]],
                   fifo: set[str]) -> dict[str, Counts]:
    """Per destination: records expected but never received (lost), extra copies (duplicated) and, for
    FIFO destinations, records received after a later one of the same group (order violations; a
    re-sent duplicate is not counted as one)."""
    out: dict[str, Counts] = {}
    for dest, keys in expected.items():
        msgs = list(received.get(dest, ()))
        distinct = {m.key for m in msgs}
        c = Counts(expected=len(keys), delivered=len(distinct & keys), lost=len(keys - distinct),
                   duplicated=len(msgs) - len(distinct))
        if dest in fifo:
            last: dict[str | None, int] = {}
            first_seen: set[str] = set()
            for m in msgs:  # in receive order
                if m.key in first_seen:
                    continue
                first_seen.add(m.key)
                if m.seq < last.get(m.group, -1):
                    c.order_violations += 1
                last[m.group] = max(m.seq, last.get(m.group, -1))
        out[dest] = c
    return out


def workload(total: int, start: int = 0) -> tuple[list[PlainRecord], dict[str, set[str]]]:
    """`total` records over the demo's three topics and producers (orders, payments, stock levels), and per
    destination the record keys ("topic/seq") it must receive. `seq` numbers start at `start`, so several
    runs against one stack stay distinct. The soak, the fault tier and the 10,000-record e2e run share it."""
    records: list[PlainRecord] = []
    expect: dict[str, set[str]] = defaultdict(set)
    for i in range(start, start + total):
        topic = ("orders", "payments", "inventory")[i % 3]
        corr = ("correlation-id", f"c-{i}".encode())
        if topic == "orders":
            kind = "OrderPlaced" if (i // 3) % 2 == 0 else "OrderCancelled"
            value = {"order_id": f"o-{i % 300}", "seq": i, "total": 10 + i % 50}
            records.append(PlainRecord(topic, f"o-{i % 300}".encode(), json.dumps(value).encode(),
                                       (("event-type", kind.encode()), corr), "order-service", True))
            expect["fulfilment"].add(f"{topic}/{i}")
            expect["analytics"].add(f"{topic}/{i}")
            if kind == "OrderPlaced":
                expect["billing"].add(f"{topic}/{i}")
        elif topic == "payments":
            value = {"payment_id": f"p-{i}", "seq": i, "amount": 5.0, "currency": "EUR"}
            records.append(PlainRecord(topic, f"acct-{i % 100}".encode(), json.dumps(value).encode(),
                                       (("event-type", b"PaymentCaptured"), ("currency", b"EUR"), corr),
                                       "payment-service", True))
            expect["payments-ledger"].add(f"{topic}/{i}")
        else:
            value = {"sku": f"SKU-{i % 500}", "seq": i, "quantity": i % 10}
            records.append(PlainRecord(topic, f"SKU-{i % 500}".encode(), json.dumps(value).encode(),
                                       (("event-type", b"StockLevel"), corr), "inventory-service", False))
            expect["stock-alerts"].add(f"{topic}/{i}")
    return records, expect


def _seen(message: Mapping[str, Any]) -> Seen:
    attrs = message.get("MessageAttributes") or {}
    topic = str((attrs.get(RECORD_KEY_ATTRIBUTE) or {}).get("StringValue", "?-0-0")).rsplit("-", 2)[0]
    body = json.loads(message.get("Body") or "{}")
    value = body["value"] if isinstance(body, dict) and "value" in body and "offset" in body else body
    seq = int(value.get("seq", -1)) if isinstance(value, dict) else -1
    return Seen(f"{topic}/{seq}", (message.get("Attributes") or {}).get("MessageGroupId"), seq)


@dataclass
class Receivers:
    """Receive-and-delete from every destination queue on threads, recording what each held."""

    clients: LocalClients
    urls: dict[str, str]
    received: dict[str, list[Seen]] = field(default_factory=lambda: defaultdict(list))
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self._run, args=(d,), daemon=True) for d in self.urls]
        for t in threads:
            t.start()
        return threads

    def _run(self, dest: str) -> None:
        sqs, url = self.clients.sqs, self.urls[dest]
        while not self.stop.is_set():
            try:
                msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           VisibilityTimeout=60, MessageAttributeNames=["All"],
                                           AttributeNames=["All"]).get("Messages", [])
                if not msgs:
                    continue
                with self.lock:
                    self.received[dest].extend(_seen(m) for m in msgs)
                sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            except Exception:
                self.stop.wait(0.2)  # a receive racing a poller restart; the next one retries

    def distinct(self) -> int:
        with self.lock:
            return sum(len({m.key for m in v}) for v in self.received.values())


def run(records: int, kills: int, deploy: bool, seed: int, config_path: Path = DEFAULT_CONFIG,
        timeout: float = 3600) -> dict[str, Any]:
    config = load_config_file(config_path)
    rng = random.Random(seed)  # noqa: S311 - when to kill the poller, not a secret
    plain, expect = workload(records)
    wanted = sum(len(v) for v in expect.values())
    with tempfile.TemporaryDirectory(prefix="bridge-soak-") as tmp:
        state_dir = Path(tmp)
        with LocalStack(str(config_path), state_dir, write_state=True) as state:
            if deploy:
                from bridge_local.deploy import deploy as cdk_deploy  # noqa: PLC0415

                provision_kafka(config, state.bootstrap_servers)
                rep = cdk_deploy(config, str(config_path), state, state_dir)
                from dataclasses import replace  # noqa: PLC0415

                state_path(state_dir).write_text(replace(state, deployment=rep.deployment()).to_json(),
                                                 encoding="utf-8")
            else:
                provision_all(config, state.bootstrap_servers, state.endpoint_url)
            clients = LocalClients.for_endpoint(state.endpoint_url)
            urls = {d: clients.sqs.get_queue_url(QueueName=_queue(config, d))["QueueUrl"] for d in expect}
            fifo = {d for d in expect if config.destination(d).fifo}
            receivers = Receivers(clients, urls)
            receivers.start()
            started = time.monotonic()
            produce(config, state.bootstrap_servers, plain, lambda p: signing_key(config, p, clients.secretsmanager))
            kill_at = sorted(rng.uniform(0.1, 0.9) * wanted for _ in range(kills))
            poller = _start_poller(state_dir, config_path)
            done_kills = 0
            deadline = time.monotonic() + timeout
            try:
                while receivers.distinct() < wanted and time.monotonic() < deadline:
                    if done_kills < len(kill_at) and receivers.distinct() >= kill_at[done_kills]:
                        poller.send_signal(signal.SIGKILL)
                        poller.wait()
                        done_kills += 1
                        poller = _start_poller(state_dir, config_path)
                    elif poller.poll() is not None:
                        poller = _start_poller(state_dir, config_path)  # drained early or died: keep polling
                    time.sleep(0.5)  # sampling progress, bounded by the deadline
                time.sleep(3)  # late duplicates of the last batch
            finally:
                if poller.poll() is None:
                    poller.send_signal(signal.SIGINT)
                    try:
                        poller.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        poller.kill()
                receivers.stop.set()
            seconds = time.monotonic() - started
            counts = count_outcomes(expect, receivers.received, fifo)
    by_type: dict[str, Counts] = defaultdict(Counts)
    for dest, c in counts.items():
        d = config.destination(dest)
        subscribed = any(s.queue == dest for t in config.destinations for s in t.subscriptions)
        by_type["sns->sqs" if subscribed else ("sqs fifo" if d.fifo else "sqs")].add(c)
    return {"records_in": records, "mode": "deployed function" if deploy else "in-process handler",
            "poller_kills": done_kills, "messages_expected": wanted,
            "by_destination_type": {k: vars(v) for k, v in sorted(by_type.items())},
            "lost": sum(c.lost for c in counts.values()),
            "order_violations": sum(c.order_violations for c in counts.values()),
            "seconds": round(seconds, 1), "records_per_second": round(records / seconds, 1) if seconds else 0.0}


def _queue(config: BridgeConfig, dest: str) -> str:
    return config.destination(dest).physical_name(config.prefix)


def _start_poller(state_dir: Path, config_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "bridge_local.cli", "--state-dir", str(state_dir), "--config",
                             str(config_path), "poll", "--quiet", "--idle-seconds", "0"],
                            cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=os.environ.copy())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bridge_local.soak", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=100_000)
    p.add_argument("--kills", type=int, default=5, help="random poller SIGKILLs during the run")
    p.add_argument("--in-process", action="store_true", help="the handler in-process instead of the deployed function")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=3600)
    args = p.parse_args(argv)
    result = run(args.records, args.kills, not args.in_process, args.seed, timeout=args.timeout)
    print(json.dumps(result, indent=2))
    return 0 if result["lost"] == 0 and result["order_violations"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
