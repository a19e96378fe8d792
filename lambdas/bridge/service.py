"""The bridge as a service object: decode, route, check trust, build, deliver, park, audit.

`Bridge` takes its ports as constructor arguments; each one left as None gets its production
adapter over a botocore client, created once, when the port is first used (bridge.adapters.defaults). Tests pass
in-memory fakes; the local poller builds it through `bridge.handler` with AWS_ENDPOINT_URL set.

Delivery guarantee: at least once (see bridge.delivery). A record is either acknowledged by every
destination it was routed to, or parked with its reason for each destination it missed, before
the invocation returns; when parking fails the invocation raises and Lambda redelivers the batch.

Redrive (`bridge redrive`, docs/runtime-contract.md "Redrive"): a record the event's `bridgeRedrive`
map lists with destinations goes only to those the current routes still select; each listed
destination they no longer select is parked again as `unroutable` for that destination, so a redrive
neither duplicates a delivery nor drops a record silently. The audit event says `"redrive": true`.
"""

from __future__ import annotations

import gc
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from bridge.audit import BatchTally, audit_document, batch_id_of_runs
from bridge.checkpoints import BatchProgress, CheckpointStore, prompt_checkpoints
from bridge.claim_check import ClaimCheck
from bridge.config import (
    MAX_BATCH_ENTRIES,
    SNS_DEFAULT_MAX_MESSAGE_BYTES,
    SQS_MAX_MESSAGE_BYTES,
    BridgeConfig,
    Destination,
)
from bridge.delivery import HELD_BACK, BatchSender, Deliverer, DeliveryRun, HandOffFactory, Target
from bridge.envelope import MessageFactory, OutgoingMessage, billed_size, correlation_id_for
from bridge.fast_path import PlainTopic, plan_plain
from bridge.frozen import frozen
from bridge.parking import ObjectStore, ObjectStoreError, Parking, ParkRequest
from bridge.records import (
    SELF_MANAGED_EVENT_SOURCES,
    Entry,
    ForeignEventError,
    KafkaBatch,
    KafkaRecord,
    Redrive,
    decode_event,
    record_of,
)
from bridge.routing import UNMATCHED_ROUTE, Router, RoutingDecision, restrict_to_redrive
from bridge.settings import Settings
from bridge.trust import SigningKeys, TrustPolicy

OUTAGE_REASONS = frozenset({"signing_key_unavailable"})  # parks an outage causes, besides failed deliveries
# Batches whose first failed-back invocation a process remembers itself, for when the checkpoint table
# cannot say (`Bridge._outage_retry_open`); the oldest are forgotten first.
OUTAGE_NOTES_KEPT = 1000


@contextmanager
def cyclic_gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is planned and sent; what was collected before still is after.

    Planning allocates a few objects per record (messages, tuples) and frees them as their requests
    finish, which sets off a young-generation collection every 700 allocations and now and then a full one
    that walks the whole event: measured about 1.7 µs per record (benchmarks/profile_bridge.py --gc), a
    tenth of the bridge's own CPU. Reference counting frees all of it anyway (nothing here makes cycles), so
    the collector is off until the batch is done, and back on even when it fails. The first allocation
    after it is back on collects whatever the pause let pile up that is still alive, so an entry point
    ends the pause after dropping the decoded batch (`Bridge.handle`, the handler); inside a pause,
    another one changes nothing."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class OutageRetryError(RuntimeError):
    """Records were kept from their destinations by an outage and `settings.outage_retry_seconds` has not
    run out: the invocation fails so the event-source mapping retries the batch (checkpoints skip what
    was already delivered or parked)."""


@frozen
class BatchReport:
    """What the handler needs after a batch: the summary counts, what was parked, the audit outcome."""

    batch_id: str
    summary: dict[str, Any]
    parked: tuple[ParkRequest, ...]
    audit_error: str | None = None  # set when the audit event could not be published

    def result(self) -> dict[str, Any]:
        """The handler result per the contract; records are delivered or parked, so no item failures."""
        return {"batchItemFailures": [], "summary": self.summary}


# Where an outgoing message came from (its `origin`), to park it with its record if delivery fails:
# (record, route, producer). A tuple, not a class: one is built per message, and a tuple costs a fifth.
# The fast path's record is its KafkaBatch.items entry (the record's dict: no KafkaRecord made for it);
# `record_of(origin[0])` is the KafkaRecord either way.
Origin = tuple[Entry, str, str | None]


@frozen
class _Step:
    """One destination of a routing decision, with what depends only on the config looked up once."""

    name: str
    route: str  # the first matched route that sends to it
    destination: Destination
    target: Target
    factory: MessageFactory
    limit: int  # bytes per message


class Bridge:
    """One instance per cold start; `handle(event)` processes one Kafka batch."""

    def __init__(
        self,
        config: BridgeConfig,
        settings: Settings,
        *,
        sqs: BatchSender | None = None,
        sns: BatchSender | None = None,
        parking_store: ObjectStore | None = None,
        signing_keys: SigningKeys | None = None,
        checkpoints: CheckpointStore | None = None,
        claim_check_store: ObjectStore | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rand: Callable[[float, float], float] = random.uniform,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        fast_path: bool = True,
        checkpoint_hand_off: HandOffFactory | None = None,
    ) -> None:
        """`fast_path=False` plans every record the general way (`_plan`), never through bridge.fast_path:
        the tests compare the two. `checkpoint_hand_off` makes a checkpointed run's writes off its planning
        thread (default: bridge.adapters.checkpoint_writer), so it sends from that thread alone when its
        senders can (`Deliverer.multiplexed`)."""
        if sqs is None or sns is None or parking_store is None or signing_keys is None:
            # Production defaults, imported only when needed: the domain itself never imports botocore.
            from bridge.adapters import defaults  # noqa: PLC0415

            sqs = sqs or defaults.sqs_sender(settings)
            sns = sns or defaults.sns_sender(settings)
            parking_store = parking_store or defaults.parking_store(settings)
            signing_keys = signing_keys or defaults.signing_keys(settings, config)
        if checkpoints is None and config.settings.checkpoints:
            from bridge.adapters import defaults  # noqa: PLC0415

            checkpoints = defaults.checkpoint_store(settings, config)
        self._checkpoints = checkpoints if config.settings.checkpoints else None
        if checkpoint_hand_off is None and self._checkpoints is not None:
            from bridge.adapters.checkpoint_writer import CheckpointWriter  # noqa: PLC0415

            checkpoint_hand_off = CheckpointWriter
        if config.claim_check and claim_check_store is None:
            from bridge.adapters import defaults  # noqa: PLC0415

            claim_check_store = defaults.claim_check_store(settings)
        self._claim_check = ClaimCheck(claim_check_store) if claim_check_store is not None else None
        self.config = config
        self.settings = settings
        s = config.settings
        self._deliverer = Deliverer({"sqs": sqs, "sns": sns}, max_attempts=s.max_delivery_attempts,
                                    base_delay_ms=s.retry_base_delay_ms, max_concurrency=s.max_concurrency,
                                    sleep=sleep, rand=rand, hold_failed_groups=s.outage_retry_seconds > 0,
                                    hand_off=checkpoint_hand_off)
        self._router = Router(config)
        self._trust = TrustPolicy(config, signing_keys, now_ms=lambda: int(clock().timestamp() * 1000))
        self._clock = clock
        self._outage_noted: dict[str, float] = {}  # batch id -> when this process first failed it back
        self.targets = {
            d.name: Target(d.name, d.type, settings.destination_address(d, config.prefix), d.message_limit, d.fifo)
            for d in config.destinations
        }
        self.dlq = Target(config.bridge_dlq_name, "sqs", settings.queue_url(config.bridge_dlq_name),
                          SQS_MAX_MESSAGE_BYTES)
        self.audit_topic = Target(config.audit_topic_name, "sns", settings.topic_arn(config.audit_topic_name),
                                  SNS_DEFAULT_MAX_MESSAGE_BYTES)
        self._parking = Parking(self._deliverer, self.dlq, parking_store, clock)
        self._route_to = {r.name: r.to for r in config.routes}
        self._destinations = {d.name: d for d in config.destinations}
        self._factories = {d.name: MessageFactory(d, config.settings.signature_header) for d in config.destinations}
        self._correlation_header = config.settings.correlation_header
        # (matched routes, destinations) -> (the accept_from lists among them, their steps); config only
        self._steps: dict[tuple[tuple[str, ...], tuple[str, ...]],
                          tuple[tuple[frozenset[str], ...], tuple[_Step, ...]]] = {}
        self._fast_path = fast_path
        self._plain: dict[str, PlainTopic | None] = {}  # topic -> what its plain records share; config only

    def handle(self, event: object) -> BatchReport:
        """Process one Kafka event. Raises InvalidEventError (not Kafka, or a malformed `bridgeRedrive`)
        or ParkingFailedError."""
        with cyclic_gc_paused():  # one pause, ended once the batch is gone: see cyclic_gc_paused
            return self.process(decode_event(event))

    def process(self, batch: KafkaBatch, batch_id: str | None = None) -> BatchReport:
        """Process one decoded batch (the handler decodes first to log with the batch id, and passes that
        id: `batch_id_for`). Raises ForeignEventError for an event from another source (unless it is a
        redrive)."""
        self._check_source(batch)
        if self.config.settings.outage_retry_seconds:
            # This may be the mapping's retry of a batch failed back for a Secrets Manager outage: read the
            # key again rather than repeat a failure remembered from the failed invocation.
            self._trust.retry_failed_reads()
        started_at = self._clock()
        if batch_id is None:
            batch_id = batch_id_of_runs(batch.runs, redrive=batch.redrive is not None)
        tally = BatchTally(redrive=batch.redrive is not None,
                           max_correlation_ids=self.config.settings.audit_max_correlation_ids)
        parks: list[ParkRequest] = []
        # batch.records (a KafkaRecord per record) is made only for checkpoints or the general path alone
        progress = BatchProgress(self._checkpoints, batch.records if self._checkpoints is not None else (),
                                 redrive=batch.redrive is not None)

        def delivered(messages: Sequence[OutgoingMessage]) -> None:
            progress.record("delivered", [(record_of(m.origin[0]), m.destination) for m in messages])

        # Requests go out while later records are still planned; `finish` waits for every one of them.
        # Only failed receipts come back: a delivered message is freed once its request is done. With
        # checkpoints on, at most settings.checkpoint_in_flight requests to standard destinations are under
        # way until their checkpoint is written, each of settings.checkpoint_request_entries messages: that
        # bounds what a crash makes the redelivered batch re-send.
        knobs = self.config.settings
        with cyclic_gc_paused(), prompt_checkpoints(progress.enabled), self._deliverer.start(
                delivered if progress.enabled else None, keep_delivered=False,
                standard_in_flight=knobs.checkpoint_in_flight if progress.enabled else None,
                standard_entries=knobs.checkpoint_request_entries if progress.enabled else MAX_BATCH_ENTRIES) as run:
            checked = progress if progress.enabled else None
            if self._fast_path and batch.redrive is None:
                # with checkpoints on, the fast path asks `progress` what the general path asks (`_plan`)
                plan_plain(batch.items, self._plain_topic, tally, run,
                           lambda record: self._plan(record, tally, parks, run, None, checked),
                           correlation_header=self._correlation_header, producer_header=self._trust.producer_header,
                           delivered=checked.delivered if checked is not None else None,
                           records=batch.records if checked is not None else None)
            else:
                for record in batch.records:
                    self._plan(record, tally, parks, run, batch.redrive, checked)
            receipts = run.finish()
        tally.delivered.update(run.delivered)
        failed: list[tuple[ParkRequest, bool]] = []  # (park, sender fault)
        for receipt in receipts:
            m = receipt.message
            if receipt.delivered:
                tally.delivered[m.destination] += 1
                continue
            origin: Origin = m.origin
            entry, route, producer = origin
            record = record_of(entry)
            if receipt.code == HELD_BACK:
                fault = "an earlier message of its FIFO group failed after later ones were accepted"
            elif receipt.order_break:
                tally.fifo_order_breaks += 1
                fault = "a later message of its FIFO group was accepted in the same request; not retried"
            else:
                fault = "sender fault" if receipt.sender_fault else f"after {receipt.attempts} attempt(s)"
            failed.append((ParkRequest(record, "delivery_failed", f"{receipt.code} ({fault})",
                                       m.correlation_id, route, m.destination, producer),
                           receipt.sender_fault))
        outage = [p for p, sender_fault in failed if not sender_fault] + [p for p in parks
                                                                          if p.reason in OUTAGE_REASONS]
        retry_later = bool(outage) and self._outage_retry_open(progress, batch_id)
        if retry_later:  # park now only what no retry can fix
            parks = [p for p in parks if p.reason not in OUTAGE_REASONS] + [p for p, sf in failed if sf]
        else:
            parks += [p for p, _ in failed]

        parks = [p for p in parks if not progress.parked(p.record, p.destination)]
        for p in parks:
            tally.parked[p.reason] += 1
        self._parking.park(parks, batch.event_source_arn,  # raises ParkingFailedError
                           (lambda done: progress.record("parked", [(p.record, p.destination) for p in done]))
                           if progress.enabled else None)
        if retry_later:
            raise OutageRetryError(
                f"{len(outage)} record(s) kept from their destinations by an outage "
                f"({', '.join(sorted({p.detail.split(' ')[0] for p in outage}))}); failing the batch back to the "
                f"event-source mapping, which retries it for up to settings.outage_retry_seconds="
                f"{self.config.settings.outage_retry_seconds} before they are parked")

        summary = tally.summary(batch_id, batch.event_source_arn)
        summary["checkpoint"] = {"on": progress.enabled, "skipped": progress.skipped, "errors": progress.errors}
        audit_error = self._publish_audit(tally, batch_id, batch.event_source_arn, started_at)
        return BatchReport(batch_id, summary, tuple(parks), audit_error)

    def _outage_retry_open(self, progress: BatchProgress, batch_id: str) -> bool:
        """True while this batch is inside its outage retry window (settings.outage_retry_seconds)."""
        window = self.config.settings.outage_retry_seconds
        if not window:
            return False
        now = self._clock().timestamp()
        since = progress.outage_since(batch_id, now)
        if since is None:
            # The table cannot say (it is often down in the same outage: a restart of the local AWS takes
            # DynamoDB, SQS and Secrets Manager together). Parking now would let a redrive deliver FIFO
            # messages after their successors; this process's own note of the batch's first failure
            # bounds the retries instead (the mapping retries a batch in the same warm environment).
            since = self._outage_noted.setdefault(batch_id, now)
            while len(self._outage_noted) > OUTAGE_NOTES_KEPT:
                del self._outage_noted[next(iter(self._outage_noted))]
        return now - since < window

    def _check_source(self, batch: KafkaBatch) -> None:
        """Refuse an event that names another cluster (or other brokers) than the config's: only this
        bridge's event-source mapping, or a redrive of what it parked (which may predate a move to
        another cluster), may hand it records. An event with no records hands over nothing (`bridge smoke`
        names its run in the ARN of one), so it is not refused."""
        if batch.redrive is not None or not batch.items:
            return
        src = self.config.source
        if src.kind == "msk":
            if batch.event_source != "aws:kafka" or batch.event_source_arn != src.cluster_arn:
                raise ForeignEventError(
                    f"event from {batch.event_source} {batch.event_source_arn or '(no eventSourceArn)'} refused: "
                    f"this bridge reads source.cluster_arn {src.cluster_arn} only. Send an event from that "
                    "cluster (events/), or a redrive event")
            return
        servers = {s.strip() for s in (batch.bootstrap_servers or "").split(",") if s.strip()}
        if batch.event_source not in SELF_MANAGED_EVENT_SOURCES or servers != set(src.bootstrap_servers):
            raise ForeignEventError(
                f"event from {batch.event_source} with bootstrapServers {batch.bootstrap_servers!r} refused: this "
                f"bridge reads source.bootstrap_servers {','.join(src.bootstrap_servers)} only. Send an event "
                "from those brokers (events/), or a redrive event")

    def _plan(self, record: KafkaRecord, tally: BatchTally, parks: list[ParkRequest], run: DeliveryRun,
              redrive: Redrive | None = None, progress: BatchProgress | None = None) -> None:
        """Route one record: queue its messages per destination, or its park requests.

        The record is decoded once, here, into `view`, which routing, trust and the message read and
        which is dropped when this returns; park requests and origins keep the lazy `record`."""
        view = record.decoded()
        correlation_id = correlation_id_for(view, self._correlation_header)
        tally.see(record, correlation_id)
        if view.undecodable:
            parks.append(ParkRequest(record, "undecodable", view.undecodable, correlation_id))
            return
        trust = self._trust.attribute(view)
        if trust.rejection is not None:
            parks.append(ParkRequest(record, trust.rejection.reason, trust.rejection.detail, correlation_id,
                                     producer=trust.producer))
            return
        decision = self._router.route(view)
        tally.count_routes(decision.routes)
        listed = redrive.get(record.record_id) if redrive else None
        if listed is not None:
            decision = self._redrive_only(record, decision, listed, parks, correlation_id, trust.producer)
        accept_lists, steps = self._steps_for(decision)
        producer = trust.producer
        # Verified once, up front, when a destination that may take this producer asks for a signature:
        # every message of the record then says the same about its producer.
        if accept_lists and any(producer is None or producer in a for a in accept_lists):
            trust.verify()
        verified = trust.verified
        if producer:
            (tally.producers if verified else tally.producers_unverified)[producer] += 1
        if decision.action == "skip":
            tally.skipped += 1
            return
        if decision.action == "park":
            parks.append(ParkRequest(record, "unroutable", "no route matches and unmatched.action is park",
                                     correlation_id, producer=trust.producer))
            return
        for step in steps:
            name, route, destination = step.name, step.route, step.destination
            if accept_lists:
                rejection = trust.admit(destination)
                if rejection is not None:
                    parks.append(ParkRequest(record, rejection.reason, rejection.detail, correlation_id, route,
                                             name, trust.producer))
                    continue
            message = step.factory.build(view, producer=producer, correlation_id=correlation_id,
                                         verified=verified, signed_id=trust.message_id)
            limit = step.limit
            if message.size > limit and destination.oversize == "claim-check" and self._claim_check is not None:
                try:
                    message = self._claim_check.offload(message, view)
                except ObjectStoreError as exc:
                    # parked, not failed: a redrive retries the claim check once S3 takes the object
                    parks.append(ParkRequest(record, "delivery_failed", f"claim check: {exc}", correlation_id,
                                             route, name, trust.producer))
                    continue
            if message.size > limit:
                parks.append(ParkRequest(record, "too_large", f"{message.size} bytes > {limit}-byte limit of "
                                         f"{destination.type.upper()} {name}", correlation_id, route, name,
                                         trust.producer))
                continue
            if progress is not None and progress.delivered(record, name):
                continue  # a previous attempt at this batch (or a redrive) delivered it already
            message.origin = (record, route, producer)
            run.add(step.target, message)

    def _plain_topic(self, topic: str) -> PlainTopic | None:
        """What the plain records of `topic` share, or None when the topic is not plain (bridge.fast_path)."""
        if topic in self._plain:
            return self._plain[topic]
        plain = None
        decision = self._router.topic_decision(topic)
        if decision is not None and decision.action == "deliver":
            accept_lists, steps = self._steps_for(decision)
            if not accept_lists and all(s.factory.plain for s in steps):
                plain = PlainTopic(decision.routes, steps, self._trust.inferred_producer(topic))
        self._plain[topic] = plain
        return plain

    def _steps_for(self, decision: RoutingDecision) -> tuple[tuple[frozenset[str], ...], tuple[_Step, ...]]:
        """The accept_from lists and the steps of a decision's destinations, worked out once per decision."""
        key = (decision.routes, decision.destinations)
        found = self._steps.get(key)
        if found is None:
            steps = []
            for name in decision.destinations:
                route = next((r for r in decision.routes if name in self._route_to.get(r, ())), UNMATCHED_ROUTE)
                target = self.targets[name]
                steps.append(_Step(name, route, self._destinations[name], target, self._factories[name],
                                   target.max_bytes))
            accept_lists = tuple(frozenset(s.destination.accept_from) for s in steps if s.destination.accept_from)
            found = self._steps[key] = (accept_lists, tuple(steps))
        return found

    @staticmethod
    def _redrive_only(record: KafkaRecord, decision: RoutingDecision, listed: tuple[str, ...],
                      parks: list[ParkRequest], correlation_id: str, producer: str | None) -> RoutingDecision:
        """Restrict a redriven record to its listed destinations; park the ones no route selects now."""
        restricted, not_routed = restrict_to_redrive(decision, listed)
        for name in not_routed:
            parks.append(ParkRequest(record, "unroutable", f"redrive: no route selects {name} for this record "
                                     "any more", correlation_id, None, name, producer))
        return restricted

    def _publish_audit(self, tally: BatchTally, batch_id: str, event_source_arn: str | None,
                       started_at: datetime) -> str | None:
        """Publish the batch's audit event; return the error code when it could not be published."""
        attributes = (("type", "bridge.batch"), ("batch-id", batch_id))
        body = audit_document(
            tally, batch_id=batch_id, event_source_arn=event_source_arn, started_at=started_at.isoformat(),
            finished_at=self._clock().isoformat(),
            max_correlation_ids=self.config.settings.audit_max_correlation_ids,
            max_bytes=self.audit_topic.max_bytes - billed_size("", attributes),
        )
        message = OutgoingMessage(batch_id, self.audit_topic.name, body, attributes, batch_id,
                                  billed_size(body, attributes))
        (receipt,) = self._deliverer.deliver([(self.audit_topic, [message])])
        # Deliberately not raised: the records are already delivered or parked, and failing the
        # invocation would redeliver all of them just to retry the audit event.
        return None if receipt.delivered else (receipt.code or "unknown")
