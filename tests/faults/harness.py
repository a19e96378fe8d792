"""One fault run: records in, the poller (a subprocess, SIGKILLed at random) through the fault proxy,
then `bridge redrive` (DLQ and S3 on-failure objects) with the faults off, then the count.

Only the bridge's own processes talk through the proxy (their state file names the proxy as the
local AWS); the queue drainers read the local AWS directly.

What is counted, per destination queue: messages received (distinct SQS message ids: a message
received again because its delete was lost is the queue redelivering it, not the bridge sending it
twice), unique records among them, duplicates (received - unique), lost (expected records never
received, after the redrive), and FIFO order violations (a record received after a later record of
its message group; re-sent copies ignored).
Parked by reason comes from the redrive's plan (what was in the bridge DLQ after the run).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from bridge.config import BridgeConfig, load_config_file

from bridge_local.faults import Exchange, FaultProxy, Outage
from bridge_local.producer import produce
from bridge_local.provision import LocalClients, signing_key
from bridge_local.report import bridge_queues
from bridge_local.services import restart_aws
from bridge_local.soak import workload
from tests.e2e.conftest import Drainer, Received, record_id_of
from tests.faults.attribution import Attribution, attribute

ROOT = Path(__file__).resolve().parents[2]
DEV_CONFIG = ROOT / "config" / "dev.yaml"
DESTINATION_TYPES = {"fulfilment": "fifo", "payments-ledger": "fifo", "analytics": "sns", "billing": "sns",
                     "stock-alerts": "sqs"}
POLLER_EXIT_SECONDS = 300.0
DELIVERY_WAIT_SECONDS = 90.0


def config_variant(tmp: Path, *, checkpoints: bool, outage_retry_seconds: int = 0) -> Path:
    """config/dev.yaml with settings.checkpoints (and outage_retry_seconds) set; same names, so one
    provisioned stack serves every variant."""
    doc = yaml.safe_load(DEV_CONFIG.read_text(encoding="utf-8"))
    doc.setdefault("settings", {})["checkpoints"] = "on" if checkpoints else "off"
    doc["settings"]["outage_retry_seconds"] = outage_retry_seconds
    path = tmp / f"dev-checkpoints-{'on' if checkpoints else 'off'}-{outage_retry_seconds}.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return path


def record_key(msg: Received) -> str:
    """topic/seq of a delivered message: topic from the record id, seq from the body (raw or envelope)."""
    topic = record_id_of(msg).rsplit("-", 2)[0]
    body = json.loads(msg.body)
    value = body["value"] if "value" in body and "offset" in body else body
    return f"{topic}/{value['seq']}"


@dataclass
class FaultStack:
    """A running local stack with the fault proxy in front of its AWS."""

    config: BridgeConfig
    bootstrap: str
    clients: LocalClients  # direct to the local AWS
    proxy: FaultProxy
    proxied_state_dir: Path  # its state file names the proxy as the local AWS
    tmp: Path
    next_seq: int = 0
    direct_state_dir: Path | None = None  # the state file of the stack itself (restart_aws restarts its AWS)

    def queue_url(self, name: str) -> str:
        url: str = self.clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return url


@dataclass
class Scenario:
    name: str
    records: int
    checkpoints: bool = True
    fault_rate: float = 0.0
    # A destination taken down at the first send to it, until at least `down_refused` sends to it were refused
    # and `down_seconds` passed since the first (bridge_local.faults.Outage): what the poller saw, not a timer.
    down: str | None = None
    down_seconds: float = 0.0
    down_refused: int = 1
    kills: int = 0
    batch_size: int | None = None  # None: the config's source.batch_size (500 in dev.yaml)
    outage_retry_seconds: int = 0  # > 0: outages fail the batch back to the (local) mapping first
    max_retries: int = 2  # the local mapping's retries of a failed batch before the on-failure object
    seed: int = 11
    lose_dlq_answers: int = 0  # the first N bridge-DLQ send requests are stored, their answers lost
    restart_aws: bool = False  # restart the local AWS (clean stop, same port, its saved state) mid-run
    # when: "sends" (once the poller sends) or "first_key_read" (the bridge's first Secrets Manager request
    # is held while the restart begins, so the signing-key read meets the outage: the FIFO-order case)
    restart_aws_at: str = "sends"


@dataclass
class RunResult:
    scenario: Scenario
    expected: dict[str, int]
    received: dict[str, int]
    duplicates: dict[str, int]
    lost: dict[str, int]
    order_violations: int
    parked: dict[str, int]
    on_failure_objects: int
    kills_done: int
    injected: dict[str, int]
    seconds: float
    poller_errors: list[str] = field(default_factory=list)
    aws_restart: str = ""  # what restart_aws() said
    redelivered: int = 0  # messages a drainer received again (same message id): not counted as deliveries
    park_copies: int = 0  # DLQ messages the redrive recognised (park id) as copies of a park it replayed once
    attribution: Attribution = field(default_factory=Attribution)
    outage: dict[str, Any] = field(default_factory=dict)  # Outage.describe() of the scenario's `down`

    def by_type(self, values: dict[str, int]) -> dict[str, int]:
        out: Counter[str] = Counter()
        for dest, n in values.items():
            out[DESTINATION_TYPES[dest]] += n
        return dict(out)

    @property
    def duplicate_share(self) -> float:
        total = sum(self.received.values())
        return sum(self.duplicates.values()) / total if total else 0.0

    def to_json(self) -> dict[str, Any]:
        s = self.scenario
        return {"scenario": s.name, "records_in": s.records, "checkpoints": s.checkpoints,
                "fault_rate": s.fault_rate, "down": s.down, "down_seconds": s.down_seconds,
                **({"down_refused": s.down_refused, "outage": self.outage} if s.down else {}), "kills": self.kills_done,
                "expected": sum(self.expected.values()), "delivered": self.by_type(self.received),
                "duplicated": self.by_type(self.duplicates), "duplicate_share": round(self.duplicate_share, 4),
                "lost": sum(self.lost.values()), "order_violations": self.order_violations, "parked": self.parked,
                "on_failure_objects": self.on_failure_objects, "park_copies": self.park_copies,
                **({"aws_restart": self.aws_restart} if self.aws_restart else {}),
                **({"redelivered_to_consumer": self.redelivered} if self.redelivered else {}),
                "injected": self.injected,
                "seconds": round(self.seconds, 1), **self.attribution.to_json()}


def window(r: RunResult) -> str:
    """The widest checkpoint window of a run (messages stored, not yet recorded, at one standard
    destination at one instant); "-" without checkpoints, where nothing is ever recorded."""
    return str(max(r.attribution.exposure.values(), default=0)) if r.scenario.checkpoints else "-"


def table_row(r: RunResult) -> list[str]:
    """One run's row of the fault tier's report (tests/summaries.py prints it: FAULT_COLUMNS)."""
    d, u = r.by_type(r.received), r.by_type(r.duplicates)
    return [r.scenario.name, "on" if r.scenario.checkpoints else "off", str(r.scenario.records),
            str(sum(r.expected.values())),
            "/".join(str(d.get(t, 0)) for t in ("fifo", "sns", "sqs")),
            "/".join(str(u.get(t, 0)) for t in ("fifo", "sns", "sqs")),
            f"{100 * r.duplicate_share:.1f}", str(sum(r.lost.values())), str(r.order_violations),
            (", ".join(f"{k} {v}" for k, v in sorted(r.parked.items())) or "-")
            + (f" (+{r.park_copies} copies)" if r.park_copies else ""), str(r.on_failure_objects),
            str(r.kills_done), window(r),
            ", ".join(f"{k} {v}" for k, v in sorted(r.injected.items())) or "-",
            f"{r.seconds:.0f}"]


def _cli(stack: FaultStack, config_path: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "bridge_local.cli", "--config", str(config_path), "--state-dir",
            str(stack.proxied_state_dir), *args]


def _start_poller(stack: FaultStack, config_path: Path, scenario: Scenario) -> subprocess.Popen[bytes]:
    size = ["--batch-size", str(scenario.batch_size)] if scenario.batch_size else []
    return subprocess.Popen(_cli(stack, config_path, "poll", "--quiet", "--idle-seconds", "3", "--max-retries",
                                 str(scenario.max_retries), *size),
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())


def _redrive(stack: FaultStack, config_path: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run(_cli(stack, config_path, "redrive", "--json", *args), cwd=ROOT, capture_output=True,
                          timeout=300, env=os.environ.copy(), check=False)
    out = done.stdout.decode()
    try:
        parsed: dict[str, Any] = json.loads(out[out.index("{"):]) if "{" in out else {}
    except ValueError:
        parsed = {}
    parsed["_returncode"] = done.returncode
    parsed["_stderr"] = done.stderr.decode()[-500:]
    return parsed


def run(stack: FaultStack, scenario: Scenario) -> RunResult:
    """Run one scenario end to end; see the module docstring."""
    rng = random.Random(scenario.seed)
    config_path = config_variant(stack.tmp, checkpoints=scenario.checkpoints,
                                 outage_retry_seconds=scenario.outage_retry_seconds)
    records, expect = workload(scenario.records, stack.next_seq)
    stack.next_seq += scenario.records
    queues = {d: stack.config.destination(d).physical_name(stack.config.prefix) for d in expect}
    # everything but the bridge DLQ (read by the redrive at the end) is drained while records flow
    drained = [n for n, _ in bridge_queues(stack.config) if n != stack.config.bridge_dlq_name]
    # A restart of the local AWS loses the drainers' calls under way: a receive whose answer was lost
    # hides its messages for the visibility timeout, so keep it short there.
    drainer = Drainer(stack.clients, {n: stack.queue_url(n) for n in drained}, threads_per_queue=2,
                      visibility_timeout=10 if scenario.restart_aws else 60).start()
    stack.proxy.injected.clear()
    stack.proxy.journal.clear()
    stack.proxy.journal_on = True
    started = time.monotonic()
    errors: list[str] = []
    kills_done = 0
    kill_times: list[float] = []
    restarted = ""
    restart_times: list[float] = []  # each before its poller exists: earlier requests are the killed one's
    # The outage begins at the first send to the destination and lasts until the poller has met it (down_refused
    # sends refused) for down_seconds: neither a slow poller start nor a loaded machine can eat it.
    outages = {queues[scenario.down]: Outage(seconds=scenario.down_seconds, refused=scenario.down_refused)
               } if scenario.down else {}
    faults_off = 0.0
    try:
        produce(stack.config, stack.bootstrap, records,
                lambda p: signing_key(stack.config, p, stack.clients.secretsmanager))
        stack.proxy.configure(rate=scenario.fault_rate, outages=outages,
                              lose={stack.config.bridge_dlq_name: scenario.lose_dlq_answers})
        poller = _start_poller(stack, config_path, scenario)
        if scenario.restart_aws:
            restarted = (_restart_aws_at_first_key_read(stack, poller) if scenario.restart_aws_at == "first_key_read"
                         else _restart_aws_while_sending(stack, poller, rng))
        while kills_done < scenario.kills:
            # Kill while the poller is delivering (a kill while it waits to join its group costs nothing):
            # once new messages arrive, at a random moment within the next half second.
            seen = sends(stack.proxy)
            while sends(stack.proxy) == seen and poller.poll() is None:
                time.sleep(0.01)
            if poller.poll() is not None:
                break  # drained before every kill was spent
            time.sleep(rng.uniform(0.0, 0.3))
            if poller.poll() is not None:
                break
            kill_times.append(time.monotonic())
            poller.send_signal(signal.SIGKILL)
            poller.wait(timeout=10)
            kills_done += 1
            restart_times.append(time.monotonic())
            poller = _start_poller(stack, config_path, scenario)
        try:
            _, err = poller.communicate(timeout=POLLER_EXIT_SECONDS)
        finally:
            if poller.poll() is None:
                poller.kill()
                poller.wait(timeout=10)
        if poller.returncode != 0:
            errors.append(err.decode()[-1500:])
        # the cause is fixed: faults off, then replay what was parked or failed whole
        faults_off = time.monotonic()  # an outage still on lasted until now
        stack.proxy.configure(rate=0.0, down=set(), outages={}, lose={})
        dlq = _redrive(stack, config_path)
        on_failure = _redrive(stack, config_path, "--on-failure")
        parked = Counter(str(row.get("reason")) for row in dlq.get("planned") or [])
        wanted = {d: len(v) for d, v in expect.items()}

        def complete(d: Drainer) -> bool:
            return all(len({record_key(m) for m in d.messages[queues[dest]]}) >= n for dest, n in wanted.items())

        try:
            drainer.wait_until(complete, DELIVERY_WAIT_SECONDS, "every expected message")
        except AssertionError as exc:
            errors.append(str(exc))
        time.sleep(1.0)  # late copies of the last sends are duplicates too: let the drainers see them
    finally:
        drainer.stop()
        stack.proxy.configure(rate=0.0, down=set(), outages={}, lose={})
        stack.proxy.journal_on = False
    seconds = time.monotonic() - started
    # A message received twice (same SQS message id: its delete was lost) is the queue redelivering to
    # the consumer, not the bridge sending twice; only distinct messages count as deliveries.
    distinct = {q: list({m.message_id: m for m in drainer.messages[q]}.values()) for q in queues.values()}
    received = {d: len(distinct[q]) for d, q in queues.items()}
    redelivered = sum(len(drainer.messages[q]) for q in queues.values()) - sum(received.values())
    unique = {d: {record_key(m) for m in drainer.messages[q]} for d, q in queues.items()}
    result = RunResult(
        scenario=scenario, expected={d: len(v) for d, v in expect.items()}, received=received,
        duplicates={d: received[d] - len(unique[d]) for d in queues},
        lost={d: len(expect[d] - unique[d]) for d in queues},
        order_violations=sum(order_violations(drainer.messages[queues[d]]) for d in queues
                             if DESTINATION_TYPES[d] == "fifo"),
        parked=dict(parked), on_failure_objects=int(on_failure.get("objects") or 0), kills_done=kills_done,
        injected=dict(stack.proxy.injected), seconds=seconds,
        poller_errors=errors + [e for e in drainer.errors if not (restarted and _connection_error(e))][:5],
        park_copies=int(dlq.get("copies") or 0), aws_restart=restarted, redelivered=redelivered,
        outage=next((_described(o, t, stack.proxy.journal, faults_off) for t, o in outages.items()), {}),
        attribution=attribute(stack.proxy.journal, kill_times,
                              {queues[d]: [record_id_of(m) for m in distinct[queues[d]]] for d in queues},
                              {queues[d]: sent_to(stack.config, d) for d in queues}, restart_times))
    if os.environ.get("FAULTS_JOURNAL_DIR"):  # for a closer look at one run's requests
        import pickle  # noqa: PLC0415
        Path(os.environ["FAULTS_JOURNAL_DIR"], f"{scenario.name}-{scenario.checkpoints}.pkl").write_bytes(
            pickle.dumps((list(stack.proxy.journal), kill_times, restart_times)))
    stack.proxy.journal.clear()
    (stack.tmp / f"faults-{scenario.name}.json").write_text(json.dumps(result.to_json(), indent=2))
    return result


def _described(outage: Outage, target: str, journal: list[Exchange], faults_off: float) -> dict[str, Any]:
    """What the proxy saw of an outage; `began_after_first_send`: seconds from the poller's first send that
    went through (to any destination) to the outage's first refusal, negative if the outage came first (a
    clock started at the proxy's first SQS or SNS request, as before, lost at least that much of it);
    `sent_elsewhere_meanwhile`: send requests to other destinations that went through while it lasted."""
    sends = [x for x in journal if x.operation in ("SendMessageBatch", "PublishBatch")]
    first = min((x.arrived for x in sends), default=None)
    late = None if first is None or outage.began is None else round(outage.began - first, 2)
    end = outage.ended if outage.ended is not None else faults_off
    meanwhile = sum(1 for x in sends if x.target_name != target and outage.began is not None
                    and outage.began <= x.arrived < end)
    return {**outage.describe(faults_off), "began_after_first_send": late, "sent_elsewhere_meanwhile": meanwhile}


def sent_to(config: BridgeConfig, queue: str) -> tuple[str, str]:
    """(bridge destination, physical send target) behind a destination queue: the queue itself, or the
    topic it is subscribed to."""
    for d in config.destinations:
        if d.type == "sns" and any(s.queue == queue for s in d.subscriptions):
            return d.name, d.physical_name(config.prefix)
    return queue, config.destination(queue).physical_name(config.prefix)


def _restart_aws_while_sending(stack: FaultStack, poller: subprocess.Popen[bytes], rng: random.Random) -> str:
    """Once the poller sends, restart the local AWS (restart_aws: SIGTERM, it saves, started again on its
    port with that state); the bridge meets refused connections meanwhile, through the proxy."""
    assert stack.direct_state_dir is not None
    seen = sends(stack.proxy)
    while sends(stack.proxy) < seen + 20 and poller.poll() is None:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.3))
    return restart_aws(stack.direct_state_dir).describe()


def _restart_aws_at_first_key_read(stack: FaultStack, poller: subprocess.Popen[bytes]) -> str:
    """Restart the local AWS as the bridge reads its first signing key: that request is held until the local
    AWS refuses connections (the restart has begun, seen on its port, not waited for by a clock), so it meets
    the outage (a key read failing while the batch is retried is what once sent FIFO records to the DLQ, to
    be redriven after their successors)."""
    assert stack.direct_state_dir is not None
    state_dir = stack.direct_state_dir
    said: list[str] = []
    restart = threading.Thread(target=lambda: said.append(restart_aws(state_dir).describe()), daemon=True)
    first = threading.Lock()
    met: list[bool] = []

    def hold_first_key_read(service: str) -> None:
        if service == "secretsmanager" and first.acquire(blocking=False):  # only the first one, once
            stack.proxy.on_call = None
            restart.start()
            met.append(_refuses_connections(stack.proxy.upstream_port, restart))

    stack.proxy.on_call = hold_first_key_read
    deadline = time.monotonic() + 120
    try:
        while not restart.is_alive() and not said and poller.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stack.proxy.on_call = None
    if first.locked():
        restart.join(timeout=120)
    assert said, "the bridge never read a signing key within 120 s: nothing met the restart"
    assert met == [True], "the local AWS never refused a connection while the first signing-key read was held"
    return said[0]


def _refuses_connections(port: int, restart: threading.Thread, timeout: float = 60.0) -> bool:
    """Wait until a connection to `port` on loopback is refused (the local AWS has stopped listening);
    False if the restart ended, or `timeout` passed, first."""
    deadline = time.monotonic() + timeout
    while restart.is_alive() and time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            pass
        time.sleep(0.005)
    return False


def _connection_error(error: str) -> bool:
    """A drainer's failed call while the local AWS restarts (it talks to it directly, not via the proxy)."""
    return any(s in error for s in ("Could not connect to the endpoint URL", "Connection was closed",
                                    "Connection reset", "Remote end closed connection"))


def sends(proxy: FaultProxy) -> int:
    """Send requests the proxy has seen (SQS, SNS): they move while the poller delivers."""
    return proxy.requests["sqs"] + proxy.requests["sns"]


def order_violations(messages: list[Received]) -> int:
    """Records received after a later record of their FIFO group (first copies only)."""
    last: dict[str, int] = {}
    seen: set[str] = set()
    violations = 0
    for m in messages:  # receive order
        key = record_key(m)
        if key in seen:
            continue
        seen.add(key)
        seq = int(key.rsplit("/", 1)[1])
        group = m.group_id or ""
        if seq < last.get(group, -1):
            violations += 1
        last[group] = max(seq, last.get(group, -1))
    return violations


def load_dev_config() -> BridgeConfig:
    return load_config_file(DEV_CONFIG)
