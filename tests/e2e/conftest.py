"""End-to-end tier: a Tansu broker and MiniStack for the whole session, the real handler in-process.

Every test leaves the Kafka topics drained (it polls until its records are handled) and starts
from empty queues (`clean` purges them), so tests share one stack without seeing each other.
Queues are drained *while* records flow (`Drainer`), as a consumer of each destination would.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from bridge.config import BridgeConfig, load_config_file
from bridge.handler import new_execution_environment

from bridge_local.poller import Handler, load_real_handler
from bridge_local.provision import LocalClients, provision_all
from bridge_local.report import bridge_queues
from bridge_local.services import LocalStack, StackState

ROOT = Path(__file__).resolve().parents[2]
CONFIG_PATH = ROOT / "config" / "dev.yaml"
PURGE_OVER_MESSAGES = 200


@dataclass
class E2EStack:
    state: StackState
    state_dir: Path
    config: BridgeConfig
    config_path: Path
    clients: LocalClients
    handler: Handler

    def queue_url(self, name: str) -> str:
        return self.clients.sqs.get_queue_url(QueueName=name)["QueueUrl"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    config = load_config_file(CONFIG_PATH)
    state_dir = tmp_path_factory.mktemp("bridge-state")
    saved_environment = dict(os.environ)
    try:
        with LocalStack(str(CONFIG_PATH), state_dir, write_state=True) as state:
            provision_all(config, state.bootstrap_servers, state.endpoint_url)
            # points the process environment at this stack, as Lambda's would be at AWS
            handler = load_real_handler(state, config, str(CONFIG_PATH), log_level="ERROR")
            yield E2EStack(state, state_dir, config, CONFIG_PATH, LocalClients.for_endpoint(state.endpoint_url),
                           handler)
    finally:
        # leave no endpoint or cached clients of a stopped stack to whatever runs next
        os.environ.clear()
        os.environ.update(saved_environment)
        new_execution_environment()


@pytest.fixture
def clean(stack: E2EStack) -> E2EStack:
    """Empty every bridge queue before the test (receive and delete: PurgeQueue is limited to once a minute)."""
    sqs = stack.clients.sqs
    for name, _ in bridge_queues(stack.config):
        url = stack.queue_url(name)
        depth = sum(int(v) for v in sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"].values())
        if depth > PURGE_OVER_MESSAGES:
            with contextlib.suppress(sqs.exceptions.PurgeQueueInProgress):
                sqs.purge_queue(QueueUrl=url)  # thousands left by a scale test: one call, not hundreds
        while msgs := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60,
                                          WaitTimeSeconds=0).get("Messages", []):
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
    return stack


@dataclass(frozen=True)
class Received:
    queue: str
    message_id: str
    body: str
    attributes: dict[str, str]
    group_id: str | None
    sequence: int | None


@dataclass
class Drainer:
    """Receive-and-delete from queues on background threads, recording every message."""

    clients: LocalClients
    urls: dict[str, str]
    messages: dict[str, list[Received]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    threads_per_queue: int = 1
    visibility_timeout: int = 60  # how long a received message stays hidden (a lost delete shows again after it)

    def start(self) -> Drainer:
        # Several receivers per queue keep pace with bursts; FIFO order per group is still observable
        # because a group's next message is only handed out after the previous one was recorded and deleted.
        for name in self.urls:
            self.messages[name] = []
            for n in range(self.threads_per_queue):
                t = threading.Thread(target=self._run, args=(name,), daemon=True, name=f"drain-{name}-{n}")
                t.start()
                self._threads.append(t)
        return self

    def _run(self, name: str) -> None:
        sqs = self.clients.sqs
        url = self.urls[name]
        while not self._stop.is_set():
            try:
                resp = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1,
                                           VisibilityTimeout=self.visibility_timeout,
                                           MessageAttributeNames=["All"],
                                           AttributeNames=["All"])
                msgs = resp.get("Messages", [])
                if not msgs:
                    continue
                got = [Received(name, m["MessageId"], m.get("Body", ""),
                                {k: v.get("StringValue", "") for k, v in (m.get("MessageAttributes") or {}).items()},
                                (m.get("Attributes") or {}).get("MessageGroupId"),
                                int(m["Attributes"]["SequenceNumber"]) if "SequenceNumber" in m.get("Attributes", {})
                                else None) for m in msgs]
                with self._lock:
                    self.messages[name].extend(got)
                sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
            except Exception as exc:
                self.errors.append(f"{name}: {exc}")
                self._stop.wait(0.2)

    def count(self, name: str) -> int:
        with self._lock:
            return len(self.messages[name])

    def total(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.messages.values())

    def wait_until(self, done: Callable[[Drainer], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(self):
            if time.monotonic() > deadline:
                counts = {k: len(v) for k, v in self.messages.items()}
                raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; received {counts}")
            self._stop.wait(0.1)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)


@pytest.fixture
def drainer_factory(clean: E2EStack) -> Iterator[Callable[..., Drainer]]:
    started: list[Drainer] = []

    def make(names: list[str] | None = None, threads_per_queue: int = 1) -> Drainer:
        names = names or [n for n, _ in bridge_queues(clean.config)]
        d = Drainer(clean.clients, {n: clean.queue_url(n) for n in names}, threads_per_queue=threads_per_queue).start()
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


def record_id_of(msg: Received) -> str:
    return msg.attributes.get("record-id", "")


def body_json(msg: Received) -> Any:
    return json.loads(msg.body)
