"""A local stand-in for Lambda's Kafka event-source mapping.

Like the mapping, it runs one consumer group per topic (`Source.group_id_for(topic)`), starts at
the earliest offset of a new group (TRIM_HORIZON), batches up to `source.batch_size` records or
`source.batching_window_seconds`, builds the event in Lambda's shape and calls the handler. It
commits a batch's offsets only after the handler returned, so the delivery guarantee is
at-least-once: a poller killed while the handler runs re-reads that batch on restart (FIFO
destinations drop the re-sends through their deduplication ids; standard queues may receive them
twice).

Error handling follows provisioned mode: a handler exception retries the same batch up to
`max_retries` times, then the batch goes to the on-failure destination (locally, as with an S3
on-failure destination, a JSON object with the records under `on-failure/` in the parking
bucket) and its offsets are committed so the partition keeps moving. `batchItemFailures` retries
the reported partitions from the lowest failed offset.

Local differences, on purpose: the handler runs in-process, one batch at a time (Lambda runs the
topics' mappings concurrently); a batch is closed early when the partition is caught up instead of
waiting out the whole batching window.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from bridge.config import BridgeConfig
from bridge.filter_pushdown import admits, topic_filters
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from bridge_local.events import KafkaRecord, build_event
from bridge_local.provision import LOCAL_CREDENTIALS, claim_check_bucket_name, local_client, parking_bucket_name
from bridge_local.schemas import LocalSchemaDecoder
from bridge_local.services import ACCOUNT_ID, REGION, StackState

Handler = Callable[[dict[str, Any], Any], Any]
ON_FAILURE_PREFIX = "on-failure"
# Commit errors that mean the group coordinator no longer counts this consumer as a member (its
# session expired while the broker stalled, or a rebalance moved on without it). librdkafka rejoins
# by itself on the next poll and resumes from the committed offsets.
MEMBERSHIP_LOST = frozenset({KafkaError.UNKNOWN_MEMBER_ID, KafkaError.ILLEGAL_GENERATION,
                             KafkaError.REBALANCE_IN_PROGRESS, KafkaError._ASSIGNMENT_LOST})
LOCAL_CLUSTER_ARN = f"arn:aws:kafka:{REGION}:{ACCOUNT_ID}:cluster/local/00000000-0000-0000-0000-000000000000-1"


class StackGoneError(RuntimeError):
    """A local service the poll depends on exited while it ran; the message says which and the fix."""


class OnFailureDestination(Protocol):
    """Where a batch goes after its retries are exhausted."""

    def send(self, event: dict[str, Any], error: str, attempts: int) -> str:
        """Store the failed batch; return where it went."""
        ...


class S3OnFailure:
    """Lambda's S3 on-failure destination: one JSON object per failed batch, records included."""

    def __init__(self, s3: Any, bucket: str, function_arn: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.function_arn = function_arn

    def send(self, event: dict[str, Any], error: str, attempts: int) -> str:
        now = datetime.now(UTC)
        first_tp = next(iter(event.get("records", {})), "unknown")
        key = f"{ON_FAILURE_PREFIX}/{first_tp}/{now:%Y/%m/%d/%H%M%S}-{uuid.uuid4().hex[:12]}.json"
        document = {
            "version": "1.0",
            "timestamp": now.isoformat(),
            "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": self.function_arn,
                               "condition": "RetryAttemptsExhausted", "approximateInvokeCount": attempts},
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "error": error,
            "payload": event,
        }
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=json.dumps(document).encode("utf-8"),
                           ContentType="application/json")
        return f"s3://{self.bucket}/{key}"


@dataclass
class PollerSettings:
    """How the local mapping batches, retries and decides it is done."""

    batch_size: int = 500
    batching_window_seconds: float = 1.0
    idle_seconds: float = 3.0  # stop after this long with nothing to read (0 = run until stopped)
    max_retries: int = 2  # handler retries of one batch before the on-failure destination
    retry_delay_seconds: float = 0.2
    session_timeout_ms: int = 6000
    join_timeout_seconds: float = 30.0  # a group that never gets partitions is an error, not "drained"
    # How often `health_check` looks at the local services, and how many looks in a row must find one gone
    # before the poll stops (a `bridge restart-aws` under way replaces the local AWS within about a second).
    health_interval_seconds: float = 1.0
    health_failures_to_stop: int = 3
    # How long a batch whose handler failed may wait, in all, for a local AWS that does not answer
    # (`aws_settling`): a clean restart-aws saves state for up to a minute, then has 30 s to answer.
    aws_settle_seconds: float = 90.0

    @classmethod
    def from_config(cls, config: BridgeConfig, **overrides: Any) -> PollerSettings:
        base = cls(batch_size=config.source.batch_size,
                   batching_window_seconds=float(config.source.batching_window_seconds))
        for k, v in overrides.items():
            if v is not None:
                setattr(base, k, v)
        return base


@dataclass
class BatchOutcome:
    """One handler invocation as the poller saw it."""

    topic: str
    records: int
    attempts: int
    summary: Mapping[str, Any] | None
    failed_to: str | None = None  # on-failure location when retries were exhausted
    error: str | None = None
    filtered_out: int = 0  # records the filter criteria kept from the function (not invoked with)


@dataclass
class PollStats:
    """Totals of a poller run."""

    batches: int = 0
    records: int = 0
    invocations: int = 0
    retries: int = 0
    failed_batches: int = 0
    records_by_topic: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    parked: Counter[str] = field(default_factory=Counter)
    skipped: int = 0
    filtered_out: int = 0  # records read but never handed to the function (filter pushdown)
    rejoins: int = 0  # commits refused because the group had dropped this consumer (batch read again)
    on_failure: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def seconds(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    def add(self, outcome: BatchOutcome) -> None:
        self.batches += 1
        self.records += outcome.records
        self.filtered_out += outcome.filtered_out
        self.invocations += outcome.attempts
        self.retries += max(0, outcome.attempts - 1)
        self.records_by_topic[outcome.topic] += outcome.records
        if outcome.failed_to:
            self.failed_batches += 1
            self.on_failure.append(outcome.failed_to)
        s = outcome.summary or {}
        self.delivered.update({k: int(v) for k, v in (s.get("delivered") or {}).items()})
        self.parked.update({k: int(v) for k, v in (s.get("parked") or {}).items()})
        self.skipped += int(s.get("skipped") or 0)


class LambdaContext:
    """The parts of Lambda's context object that Powertools and handlers read."""

    def __init__(self, function_name: str, memory_mb: int, timeout_seconds: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def context_factory(config: BridgeConfig) -> Callable[[], LambdaContext]:
    """A fresh context per invocation, sized like the function the stack deploys."""
    name = f"{config.prefix}-bridge"
    return lambda: LambdaContext(name, config.settings.memory_mb, config.settings.timeout_seconds)


# --- the real handler, wired to the local stack -------------------------------------------------


def handler_environment(state: StackState, config: BridgeConfig, config_path: str,
                        log_level: str = "WARNING") -> dict[str, str]:
    """The environment the real handler needs to talk to the local stack (see the runtime contract)."""
    return {
        "AWS_ENDPOINT_URL": state.endpoint_url,
        "BRIDGE_ACCOUNT_ID": ACCOUNT_ID,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": LOCAL_CREDENTIALS["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": LOCAL_CREDENTIALS["aws_secret_access_key"],
        "AWS_EC2_METADATA_DISABLED": "true",
        "BRIDGE_PARKING_BUCKET": parking_bucket_name(config),
        "BRIDGE_CHECKPOINT_TABLE": config.checkpoint_table_name,  # used when settings.checkpoints is on
        "BRIDGE_CONFIG_PATH": str(Path(config_path).resolve()),
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "kafka-bridge",
        "POWERTOOLS_METRICS_NAMESPACE": "KafkaBridgeLocal",
        "POWERTOOLS_METRICS_DISABLED": "true",  # EMF lines on stdout would drown the CLI's own output
        "POWERTOOLS_LOG_LEVEL": log_level,
        **({"BRIDGE_CLAIM_CHECK_BUCKET": claim_check_bucket_name(config)} if config.claim_check else {}),
    }


def load_real_handler(state: StackState, config: BridgeConfig, config_path: str,
                      log_level: str = "WARNING") -> Handler:
    """`bridge.handler.lambda_handler` with the process environment pointed at the local stack.

    The handler reads its environment once at cold start (import), so the environment is set first.
    """
    os.environ.update(handler_environment(state, config, config_path, log_level))
    os.environ.pop("AWS_PROFILE", None)
    try:
        from bridge import handler as handler_module  # noqa: PLC0415 - after the environment is set
    except ImportError as exc:
        raise RuntimeError(f"the bridge handler cannot be imported ({exc}). Fix: check lambdas/bridge/handler.py "
                           "and make install") from exc
    # A handler already imported in this process (a test session) may have built its clients for
    # another endpoint; the next invocation starts cold against this stack.
    handler_module.new_execution_environment()
    fn: Handler = handler_module.lambda_handler
    return fn


def with_stdout_to(handler: Handler, log_path: Path) -> Handler:
    """The handler with its stdout (Powertools EMF metric lines) appended to `log_path` instead."""
    log_path.parent.mkdir(parents=True, exist_ok=True)

    def invoke(event: dict[str, Any], context: Any) -> Any:
        with log_path.open("a", encoding="utf-8") as sink, contextlib.redirect_stdout(sink):
            return handler(event, context)

    return invoke


# --- the poller ---------------------------------------------------------------------------------


ProgressCallback = Callable[[BatchOutcome, PollStats], None]


class Poller:
    """One consumer group per topic; batches go to `handler` one at a time, offsets committed after."""

    def __init__(self, config: BridgeConfig, bootstrap: str, handler: Handler, settings: PollerSettings,
                 on_failure: OnFailureDestination | None = None, cluster_arn: str | None = None,
                 progress: ProgressCallback | None = None, stop_event: threading.Event | None = None,
                 topics: tuple[str, ...] | None = None, stop_after_records: int | None = None,
                 notice: Callable[[str], None] | None = None, schema_base_dir: Path | None = None,
                 health_check: Callable[[], str | None] | None = None, kafka_log: Path | None = None,
                 aws_settling: Callable[[], str | None] | None = None) -> None:
        """`schema_base_dir`: where `source.schema_registry.local_schemas` paths are relative to (the
        config file's folder; the working directory when not given). `health_check`: None while the
        services the poll needs run, else what is wrong and the fix; checked on a thread every
        `settings.health_interval_seconds`, and when it keeps failing the poll stops with StackGoneError
        instead of retrying batches into a dead service (the batch in hand is not committed: the next
        poll reads it again). `kafka_log`: the Kafka client's own log lines go to this file instead of
        stderr (a dead broker makes it log a reconnect attempt every 50 ms per consumer). `aws_settling`: None
        while the local AWS answers, else why not; a batch whose handler failed waits while it says something
        (a `bridge restart-aws` under way), and that call does not count as a retry (`_await_local_aws`)."""
        self.config = config
        self.bootstrap = bootstrap
        self.handler = handler
        self.settings = settings
        self.on_failure = on_failure
        self.cluster_arn = cluster_arn or config.source.cluster_arn or LOCAL_CLUSTER_ARN
        self.event_source = "aws:kafka" if config.source.kind == "msk" else "SelfManagedKafka"
        # Lambda names the configured brokers in a self-managed event, and the handler refuses others
        self.event_bootstrap = bootstrap if config.source.kind == "msk" else ",".join(config.source.bootstrap_servers)
        self.progress = progress
        self.stop_event = stop_event or threading.Event()
        self.topics = topics or config.source.topics
        self.stop_after_records = stop_after_records  # known workload: stop at this count, not on idle
        self.new_context = context_factory(config)
        self.notice = notice or _notice_on_stderr
        self.stats = PollStats()
        self.health_check = health_check
        self.kafka_log = kafka_log
        self.aws_settling = aws_settling
        self.stack_problem: str | None = None  # set by the health watch when a service is gone
        self.stack_gone = threading.Event()  # set with it
        self._assigned: dict[str, bool] = {}
        # the mappings' filter criteria (source.filter_pushdown), applied as Lambda applies them
        self.filters = {t: topic_filters(config, t) for t in self.topics}
        # the mappings' schema registry decoding (source.schema_registry), with the config's local schemas
        registry = config.source.schema_registry
        self.schemas = (LocalSchemaDecoder(registry, schema_base_dir or Path.cwd())
                        if registry is not None and "value" in registry.attributes and registry.local_schemas
                        else None)

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and return (safe from a signal handler)."""
        self.stop_event.set()

    def _watch_health(self, check: Callable[[], str | None], done: threading.Event) -> None:
        failures = 0
        while not done.wait(self.settings.health_interval_seconds):
            problem = check()
            failures = failures + 1 if problem else 0
            if problem and failures >= self.settings.health_failures_to_stop:
                self.stack_problem = problem
                self.stack_gone.set()
                # the problem itself is the StackGoneError's message, printed once when the poll returns
                self.notice("a local service is gone; stopping (the handler may take a while to give up on a dead "
                            "service; Ctrl-C twice stops at once)")
                self.stop_event.set()
                return

    def _stop_if_stack_gone(self, confirm: bool = False) -> None:
        """Raise StackGoneError when the health watch found a service gone; with `confirm` (a handler or a
        commit just failed, maybe faster than the watch looks), check now, as the watch would, and wait for
        the same number of looks in a row before concluding."""
        if confirm and self.stack_problem is None and self.health_check is not None:
            for look in range(self.settings.health_failures_to_stop):
                if look:
                    time.sleep(self.settings.health_interval_seconds)  # bounded: a few looks, about a second apart
                problem = self.health_check()
                if problem is None:
                    break
            else:
                self.stack_problem = problem
        if self.stack_problem is not None:
            raise StackGoneError(self.stopped_message())

    def _aws_silent(self) -> bool:
        """Whether the local AWS does not answer right now (always False without `aws_settling`)."""
        return self.aws_settling is not None and self.aws_settling() is not None

    def _await_local_aws(self, deadline: float) -> bool:
        """Wait until the local AWS answers again (a `bridge restart-aws` replacing it): True then. False when
        Ctrl-C asked the poll to stop meanwhile (the batch in hand is then left uncommitted, for the next poll).
        Raises StackGoneError, with the Fix, when the health watch finds it gone for good, or when it still does
        not answer at `deadline` (one per batch: `settings.aws_settle_seconds` from the batch's first wait).
        Without the wait the retries (0.2 s, then 0.4 s) were used up within a restart, and the on-failure write
        then reached a MiniStack still starting: the poll exited with an error (docs/decisions.md)."""
        assert self.aws_settling is not None
        began = time.monotonic()
        self.notice(f"the local AWS does not answer (a bridge restart-aws under way?); the batch in hand waits for it, "
                    f"up to {max(0.0, deadline - began):.0f} s more, and is then handed to the function again")
        while (problem := self.aws_settling()) is not None:
            if self.stack_problem is None and time.monotonic() >= deadline:
                self.stack_problem = (f"the local AWS did not answer within {self.settings.aws_settle_seconds:.0f} s "
                                      f"while a batch waited for it: {problem}. The batch in hand was not committed: "
                                      "the next bridge poll reads it again. Fix: bridge status says what is wrong; "
                                      "bridge restart-aws starts it again")
                self.stack_gone.set()
            self._stop_if_stack_gone()  # raises once the health watch or the deadline has a verdict
            if self.stop_event.wait(0.2):
                self._stop_if_stack_gone()  # the health watch stops the poll too: its verdict, not Ctrl-C's line
                self.notice("stopped while the batch in hand waited for the local AWS: it was not committed, so the "
                            "next bridge poll reads it again")
                return False
        self.notice(f"the local AWS answers again after {time.monotonic() - began:.1f} s; the batch is handed to "
                    "the function again (the failed call does not count as a retry)")
        return True

    def stopped_message(self) -> str:
        """The poll's last line once a service is gone: how far it got (the committed records), then the problem."""
        handled = self.stats.records
        return (f"poll stopped with {handled} record{'' if handled == 1 else 's'} handled and committed: "
                f"{self.stack_problem}")

    @contextlib.contextmanager
    def _health_watch(self) -> Iterator[None]:
        if self.health_check is None:
            yield
            return
        done = threading.Event()
        watch = threading.Thread(target=self._watch_health, args=(self.health_check, done), daemon=True,
                                 name="bridge-poll-health")
        watch.start()
        try:
            yield
        finally:
            done.set()
            watch.join()

    def _client_logger(self) -> dict[str, Any]:
        """librdkafka's log lines into `kafka_log` (appended; one logger per file), or its default: stderr."""
        if self.kafka_log is None:
            return {}
        logger = logging.getLogger(f"bridge_local.kafka_client.{self.kafka_log.resolve()}")
        if not logger.handlers:
            self.kafka_log.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.kafka_log, encoding="utf-8")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger.addHandler(handler)
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
        return {"logger": logger}

    @contextlib.contextmanager
    def _consumers(self) -> Iterator[dict[str, Any]]:
        consumers: dict[str, Any] = {}
        client_logger = self._client_logger()
        try:
            for topic in self.topics:
                c = Consumer({
                    **client_logger,
                    "bootstrap.servers": self.bootstrap,
                    "group.id": self.config.source.group_id_for(topic),
                    "enable.auto.commit": False,
                    "enable.auto.offset.store": False,
                    "auto.offset.reset": "earliest",  # TRIM_HORIZON; Tansu's LATEST is unreliable anyway
                    "session.timeout.ms": self.settings.session_timeout_ms,
                    "heartbeat.interval.ms": max(500, self.settings.session_timeout_ms // 6),
                    "client.id": f"bridge-local-poller-{topic}",
                    # Static membership: the next poller (after Ctrl-C, kill -9 or a crash) takes this
                    # member's place at once. Without it, a poller interrupted while joining leaves Tansu
                    # holding a ghost group leader that never assigns, and every later poll of that group
                    # waited for partitions in vain. One poller per group, as one mapping per topic.
                    "group.instance.id": f"bridge-local-poller-{self.config.source.group_id_for(topic)}",
                })
                self._assigned[topic] = False

                def on_assign(consumer: Any, partitions: list[Any], topic: str = topic) -> None:
                    self._assigned[topic] = bool(partitions)

                def on_lost(consumer: Any, partitions: list[Any], topic: str = topic) -> None:
                    # until the group assigns partitions again, "nothing to read" is not "drained"
                    self._assigned[topic] = False

                c.subscribe([topic], on_assign=on_assign, on_revoke=on_lost, on_lost=on_lost)
                consumers[topic] = c
            yield consumers
        finally:
            for c in consumers.values():
                with contextlib.suppress(Exception):
                    c.close()  # leaves the group, so a restart does not wait for the session to expire

    def run(self) -> PollStats:
        """Poll until drained (`idle_seconds` with nothing to read) or stopped; return the totals."""
        s = self.settings
        with self._health_watch(), self._consumers() as consumers:
            joining_since = time.monotonic()  # since when some group has had no partitions
            last_activity = time.monotonic()
            while not self.stop_event.is_set():
                got_any = False
                for topic, consumer in consumers.items():
                    if self.stop_event.is_set():
                        break
                    batch = self._collect(consumer)
                    if batch:
                        got_any = True
                        self._process(topic, consumer, batch)
                if self.stop_after_records is not None and self.stats.records >= self.stop_after_records:
                    break
                now = time.monotonic()
                if all(self._assigned.values()):
                    joining_since = now
                if got_any:
                    last_activity = now
                    continue
                if not all(self._assigned.values()):
                    if now - joining_since > s.join_timeout_seconds:
                        waiting = [t for t, ok in self._assigned.items() if not ok]
                        raise RuntimeError(f"consumer groups for {waiting} got no partitions within "
                                           f"{s.join_timeout_seconds:.0f} s; is the broker at {self.bootstrap} "
                                           "healthy and are the topics created (bridge up)?"
                                           + (f" The Kafka client's log: {self.kafka_log}" if self.kafka_log else ""))
                    last_activity = now
                elif s.idle_seconds and now - last_activity >= s.idle_seconds:
                    break
            self._stop_if_stack_gone()
        self.stats.finished = time.monotonic()
        return self.stats

    def _collect(self, consumer: Any) -> list[Any]:
        """Up to batch_size messages; closes early at the batching window or when caught up."""
        s = self.settings
        batch: list[Any] = []
        deadline: float | None = None
        while len(batch) < s.batch_size:
            timeout = 0.1 if deadline is None else max(0.0, min(0.1, deadline - time.monotonic()))
            msgs = consumer.consume(num_messages=s.batch_size - len(batch), timeout=timeout)
            fresh = []
            for m in msgs:
                err = m.error()
                if err is None:
                    fresh.append(m)
                elif err.code() == KafkaError.FENCED_INSTANCE_ID:
                    raise RuntimeError("another poller took over this poller's consumer group (a second "
                                       "`bridge poll` on the same stack?); one poller per stack, as Lambda runs "
                                       "one mapping per topic. Fix: stop the other one")
                elif not err.retriable() and err.fatal():
                    raise RuntimeError(f"Kafka consumer error: {err}")
            if not fresh:
                break  # caught up (or nothing yet)
            if deadline is None:
                deadline = time.monotonic() + s.batching_window_seconds
            batch.extend(fresh)
            if time.monotonic() >= deadline:
                break
        return batch

    def _process(self, topic: str, consumer: Any, messages: list[Any]) -> None:
        records = [self._decoded(record_from_message(m)) for m in messages]
        # Lambda drops what the filter criteria exclude before invoking; an empty batch invokes nothing
        pending = pending_at_start = [r for r in records if admits(self.filters[topic], r.value)]
        attempts = 0
        summary: Mapping[str, Any] | None = None
        error: str | None = None
        failed_to: str | None = None
        settle_deadline: float | None = None  # one wait budget per batch for a local AWS that does not answer
        while pending:
            attempts += 1
            event = build_event(pending, self.cluster_arn, self.event_bootstrap, self.event_source)
            try:
                result = self.handler(event, self.new_context())
            except Exception as exc:
                self._stop_if_stack_gone(confirm=True)  # no retries, no on-failure object: their service is gone
                error = f"{type(exc).__name__}: {exc}"
                if self._aws_silent():
                    # the call failed on a local AWS being replaced, not on the batch: wait, and do not count it
                    if settle_deadline is None:
                        settle_deadline = time.monotonic() + self.settings.aws_settle_seconds
                    forgiven = time.monotonic() < settle_deadline  # past the budget, a flapping AWS counts
                    if not self._await_local_aws(settle_deadline):
                        return  # Ctrl-C meanwhile: nothing committed, the next poll reads the batch again
                    attempts -= forgiven
                    continue
                if attempts > self.settings.max_retries:
                    failed_to = self._send_on_failure(event, error, attempts)
                    break
                self.stop_event.wait(self.settings.retry_delay_seconds * attempts)
                continue
            summary = _merge_summary(summary, result)
            pending = _retry_after_item_failures(pending, result)
            if pending and attempts > self.settings.max_retries:
                failed_to = self._send_on_failure(build_event(pending, self.cluster_arn, self.event_bootstrap,
                                                              self.event_source),
                                                  "batchItemFailures after retries", attempts)
                break
        # Commit everything read: delivered, parked, or handed to the on-failure destination.
        last: dict[int, int] = {}
        for r in records:
            last[r.partition] = max(last.get(r.partition, -1), r.offset)
        self._commit(topic, consumer, [TopicPartition(topic, p, o + 1) for p, o in last.items()], len(records))
        outcome = BatchOutcome(topic, len(records), attempts, summary, failed_to, error if failed_to else None,
                               filtered_out=len(records) - len(pending_at_start))
        self.stats.add(outcome)
        if self.progress:
            self.progress(outcome, self.stats)

    def _decoded(self, record: KafkaRecord) -> KafkaRecord:
        """The record as the mapping hands it over: a value framed for the schema registry becomes JSON."""
        decoded = self.schemas.decode(record.value) if self.schemas is not None else None
        if decoded is None:
            return record
        return dataclasses.replace(record, value=decoded.value,
                                   value_schema_metadata=tuple(decoded.metadata.items()))

    def _commit(self, topic: str, consumer: Any, offsets: list[Any], records: int) -> None:
        """Commit a handled batch; when the group dropped this consumer, say so and carry on.

        The handler has already run, so the records are delivered or parked; the refused commit only
        means this batch is read again after the consumer rejoins (at least once), not an error.
        """
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            self._stop_if_stack_gone(confirm=True)  # the broker that would take the commit is gone
            code = exc.args[0].code() if exc.args and isinstance(exc.args[0], KafkaError) else None
            if code not in MEMBERSHIP_LOST:
                raise
            self.stats.rejoins += 1
            self._assigned[topic] = False
            self.notice(f"consumer group {self.config.source.group_id_for(topic)} dropped this poller "
                        f"({exc.args[0].name()}: no heartbeat reached the broker within session.timeout.ms="
                        f"{self.settings.session_timeout_ms}); rejoining. The {records} record(s) just handled "
                        "were not committed and will be read again")

    def _send_on_failure(self, event: dict[str, Any], error: str, attempts: int) -> str:
        if self.on_failure is None:
            raise RuntimeError(f"the handler failed {attempts} times and no on-failure destination is set: {error}")
        return self.on_failure.send(event, error, attempts)


def _notice_on_stderr(text: str) -> None:
    print(f"bridge poll: {text}", file=sys.stderr, flush=True)


def record_from_message(msg: Any) -> KafkaRecord:
    """A confluent-kafka message as a KafkaRecord (headers in order, null values kept)."""
    ts_type, ts = msg.timestamp()
    headers = tuple((name, value) for name, value in (msg.headers() or []))
    return KafkaRecord(msg.topic(), msg.partition(), msg.offset(), int(ts),
                       msg.key(), msg.value(), headers, "LOG_APPEND_TIME" if ts_type == 2 else "CREATE_TIME")


def _retry_after_item_failures(records: list[KafkaRecord], result: Any) -> list[KafkaRecord]:
    """Records to retry: per reported partition, from the lowest failed offset on (Lambda's rule)."""
    lowest: dict[str, int] = {}
    for f in (result or {}).get("batchItemFailures", []) if isinstance(result, Mapping) else []:
        ident = f.get("itemIdentifier") if isinstance(f, Mapping) else None
        if isinstance(ident, Mapping) and "topic-partition" in ident and "offset" in ident:
            tp = str(ident["topic-partition"])
            lowest[tp] = min(lowest.get(tp, int(ident["offset"])), int(ident["offset"]))
    return [r for r in records
            if f"{r.topic}-{r.partition}" in lowest and r.offset >= lowest[f"{r.topic}-{r.partition}"]]


def _merge_summary(previous: Mapping[str, Any] | None, result: Any) -> Mapping[str, Any] | None:
    summary = result.get("summary") if isinstance(result, Mapping) else None
    if not isinstance(summary, Mapping):
        return previous
    if previous is None:
        return dict(summary)
    merged = dict(previous)
    for k in ("delivered", "parked"):
        c: Counter[str] = Counter(previous.get(k) or {})
        c.update(summary.get(k) or {})
        merged[k] = dict(c)
    merged["skipped"] = int(previous.get("skipped") or 0) + int(summary.get("skipped") or 0)
    return merged


def s3_on_failure(state: StackState, config: BridgeConfig) -> S3OnFailure:
    """The local on-failure destination: the parking bucket, under `on-failure/`."""
    return S3OnFailure(local_client("s3", state.endpoint_url), parking_bucket_name(config),
                       f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{config.prefix}-bridge")
