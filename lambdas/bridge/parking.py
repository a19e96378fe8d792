"""Parking: records the bridge cannot deliver go to the bridge DLQ, whole, with the reason.

One SQS message per (record, destination) or per record when no destination applies, in the
contract's format (docs/runtime-contract.md "Parked records"). A document larger than the SQS limit
is written to the parking bucket and the DLQ message points to it (`record_s3_uri`).

Parking is what lets the partition move on, so it must not lose a record: the DLQ sends use the
same packing and retries as deliveries, and if a parked record still cannot be stored,
`ParkingFailedError` is raised so the invocation fails and the event-source mapping retries the batch.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from bridge.delivery import Deliverer, Target
from bridge.envelope import OutgoingMessage, billed_size
from bridge.frozen import frozen
from bridge.records import KafkaRecord

PARK_REASONS = (
    "undecodable",
    "unroutable",
    "too_large",
    "delivery_failed",
    "unsigned",
    "invalid_signature",
    "signing_key_unavailable",
    "untrusted_producer",
    "producer_not_allowed",
    "missing_message_id",
    "stale",
)
# Reasons that say a record's origin could not be trusted (a forged, unsigned or misattributed record):
# they share one high-severity alarm, apart from the operational reasons.
TRUST_PARK_REASONS = ("unsigned", "invalid_signature", "untrusted_producer", "producer_not_allowed",
                      "missing_message_id", "stale")
S3_KEY_DIGEST_CHARS = 12  # hex digits of the record digest in a parking-bucket key
PARK_ID_CHARS = 32  # hex digits of a park id: 128 bits, no two different parks share one
PARK_ID_ATTRIBUTE = "park-id"


class ParkingFailedError(RuntimeError):
    """A record could be neither delivered nor parked; the invocation must fail and be retried."""


class ObjectStoreError(RuntimeError):
    """The object store refused a write (raised by the adapter)."""


class ObjectStore(Protocol):
    """Port: write one object (adapter: S3 PutObject)."""

    def put(self, key: str, body: bytes) -> str:
        """Store the bytes under `key`; return the object's URI (s3://bucket/key)."""
        ...


@frozen
class ParkRequest:
    """One record (for one destination, or for none) that the bridge parks instead of delivering."""

    record: KafkaRecord
    reason: str
    detail: str
    correlation_id: str
    route: str | None = None
    destination: str | None = None
    producer: str | None = None


def _record_digest(request: ParkRequest) -> str:
    return record_digest(request.record.raw)


def record_digest(raw: Mapping[str, Any]) -> str:
    """sha256 (hex) of a record's canonical JSON, exactly as Lambda delivered it."""
    canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def park_id(request: ParkRequest) -> str:
    """What names one park: the same record parked for the same destination with the same reason.

    A DLQ send whose answer is lost after SQS stored it (a timeout, a reset connection) is sent again,
    and a batch failed by `ParkingFailedError` is parked again by the mapping's retry: both leave
    copies in the DLQ that carry this same id (attribute `park-id`, document field `park_id`), so
    `bridge redrive` replays them as one park. Derived from the record's bytes, not only its id: two
    undecodable records without a readable offset share a record id, never a park id.
    """
    return park_id_of(request.record.record_id, request.record.raw, request.destination, request.reason)


def park_id_of(record_id: str, raw: Mapping[str, Any], destination: str | None, reason: str) -> str:
    """`park_id` from a parked document's own fields: `bridge redrive` recomputes it and trusts a
    message's claimed `park_id` only when the two agree (a forged one must not merge with a genuine park)."""
    key = "\0".join(("park/v1", record_id, record_digest(raw), destination or "", reason))
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:PARK_ID_CHARS]


def s3_key(request: ParkRequest) -> str:
    """`parked/{topic}/{partition}/{offset}-{destination}-{reason}-{digest}.json`: one object per parked copy.

    The destination is part of the key because one record may be parked for several destinations
    with the same reason; without it the second document would overwrite the first. `digest` (the
    first 12 hex of the sha256 of the record's canonical JSON) tells apart undecodable records that
    share a position, such as several without a readable offset (all `-1`); the same record parked
    again gets the same key.
    """
    r = request.record
    digest = _record_digest(request)[:S3_KEY_DIGEST_CHARS]
    return (f"parked/{r.topic}/{r.partition}/{r.offset}-{request.destination or 'none'}-{request.reason}"
            f"-{digest}.json")


def parked_document(request: ParkRequest, event_source_arn: str | None, parked_at: str,
                    parking_call: str = "") -> dict[str, Any]:
    """The DLQ body for a parked record; `record` is the record dict exactly as Lambda delivered it.

    `parking_call` is random per `Parking.park` call: the copies one call's retried DLQ sends store are
    byte-identical, and a record parked again (by a redrive, a mapping retry) never is, whatever the
    clock says; `bridge redrive`'s ledger relies on both."""
    return {
        "reason": request.reason,
        "detail": request.detail,
        "route": request.route,
        "destination": request.destination,
        "correlation_id": request.correlation_id,
        "producer": request.producer,
        "record_id": request.record.record_id,
        "park_id": park_id(request),
        "event_source_arn": event_source_arn,
        "parked_at": parked_at,
        "parking_call": parking_call,
        "record": dict(request.record.raw),
    }


def document_digest(doc: Mapping[str, Any]) -> str:
    """sha256 of a parked document's canonical JSON (keys sorted, no spaces, ASCII): the DLQ message
    records it as `record_s3_sha256` when the document goes to the parking bucket, and `bridge redrive`
    replays the object only when it still has that digest (an object replaced in the bucket is not)."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _dumps(doc: dict[str, Any]) -> str:
    # ASCII-only JSON: every character is one SQS accepts, whatever the record holds.
    return json.dumps(doc, separators=(",", ":"))


class Parking:
    """Writes parked records to the bridge DLQ (and to S3 when too large)."""

    def __init__(self, deliverer: Deliverer, dlq: Target, store: ObjectStore,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 new_call_id: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        self._deliverer = deliverer
        self._dlq = dlq
        self._store = store
        self._clock = clock
        self._new_call_id = new_call_id

    def park(self, requests: Sequence[ParkRequest], event_source_arn: str | None,
             on_parked: Callable[[Sequence[ParkRequest]], None] | None = None) -> None:
        """Park every request; raise ParkingFailedError when any could not be stored.

        `on_parked(requests)` is called after each DLQ send request with the requests it stored."""
        if not requests:
            return
        parked_at, call = self._clock().isoformat(), self._new_call_id()
        messages = [self._message(r, event_source_arn, parked_at, call) for r in requests]
        request_of = {id(m): r for m, r in zip(messages, requests, strict=True)}

        def stored(done: Sequence[OutgoingMessage]) -> None:
            if on_parked is not None:
                on_parked([request_of[id(m)] for m in done])

        failed = [r for r in self._deliverer.deliver([(self._dlq, messages)], stored) if not r.delivered]
        if failed:
            codes = sorted({r.code or "unknown" for r in failed})
            raise ParkingFailedError(
                f"{len(failed)} record(s) could not be parked in {self._dlq.name} ({', '.join(codes)}); "
                "failing the invocation so the event-source mapping retries the batch"
            )

    def _message(self, request: ParkRequest, event_source_arn: str | None, parked_at: str,
                 call: str) -> OutgoingMessage:
        doc = parked_document(request, event_source_arn, parked_at, call)
        attributes = (
            ("reason", request.reason),
            ("correlation-id", request.correlation_id),
            ("record-id", request.record.record_id),
            (PARK_ID_ATTRIBUTE, doc["park_id"]),
        )
        body = _dumps(doc)
        if billed_size(body, attributes) > self._dlq.max_bytes:
            try:
                uri = self._store.put(s3_key(request), body.encode("utf-8"))
            except ObjectStoreError as exc:
                raise ParkingFailedError(f"could not write parked record {request.record.record_id} to the "
                                         f"parking bucket: {exc}") from exc
            digest = document_digest(doc)
            del doc["record"]
            doc["record_s3_uri"] = uri
            doc["record_s3_sha256"] = digest
            body = _dumps(doc)
        return OutgoingMessage(
            record_id=request.record.record_id,
            destination=self._dlq.name,
            body=body,
            attributes=attributes,
            correlation_id=request.correlation_id,
            size=billed_size(body, attributes),
        )
