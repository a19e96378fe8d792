"""`bridge redrive --on-failure`: replay the event-source mapping's S3 on-failure objects.

When a batch fails all its retries (the bridge DLQ was down, say), the mapping writes the whole
invocation to its S3 on-failure destination (the parking bucket) and moves on. Those records exist
nowhere else once Kafka's retention passes, and the bridge never saw them succeed: nothing read them.

Each object's `payload` is the original Kafka event (an object, or a JSON string). It is handed to
the bridge unchanged, as an ordinary Kafka event, so with `settings.checkpoints: on` the bridge skips
every (record, destination) the failed attempts delivered and every record they parked, and sends
only the rest; with checkpoints off it delivers the whole batch again (the CLI says so first). The
object is deleted after the invocation returned; a failed invocation leaves it for the next run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from bridge_local.redrive import Invoke

KAFKA_EVENT_SOURCES = ("aws:kafka", "SelfManagedKafka")


class OnFailureObjects(Protocol):
    """Port: the on-failure objects under one prefix (adapter: `S3OnFailureObjects`)."""

    where: str

    def list_keys(self) -> list[str]:
        """Every object key under the prefix, oldest first."""
        ...

    def read(self, key: str) -> bytes:
        ...

    def delete(self, key: str) -> None:
        ...


@dataclass
class ReplayReport:
    """What a replay did."""

    where: str
    objects: int = 0
    replayed: int = 0
    records: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    parked: dict[str, int] = field(default_factory=dict)
    already_done: int = 0  # (record, destination) pairs the checkpoints said were delivered or parked
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (key, why): left in place
    failed: list[tuple[str, str]] = field(default_factory=list)  # (key, error): left in place

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "objects": self.objects, "replayed": self.replayed, "records": self.records,
                "delivered": self.delivered, "parked": self.parked, "already_done": self.already_done,
                "skipped": [{"key": k, "why": w} for k, w in self.skipped],
                "failed": [{"key": k, "error": e} for k, e in self.failed]}


def event_of(document: Any) -> dict[str, Any]:
    """The Kafka event inside an on-failure document; ValueError (one line) when there is none."""
    if not isinstance(document, Mapping):
        raise ValueError("not a JSON object")
    payload = document.get("payload")
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            raise ValueError("payload is a string but not JSON") from None
    if not isinstance(payload, dict) or payload.get("eventSource") not in KAFKA_EVENT_SOURCES:
        raise ValueError("no Kafka event under `payload` (is this an event-source mapping on-failure object?)")
    if not isinstance(payload.get("records"), Mapping):
        raise ValueError("the payload has no `records` map")
    return payload


def replay_on_failure(objects: OnFailureObjects, invoke: Invoke, *, dry_run: bool = False) -> ReplayReport:
    """Invoke the bridge with each object's event; delete the objects whose invocation returned."""
    report = ReplayReport(objects.where)
    for key in objects.list_keys():
        report.objects += 1
        try:
            event = event_of(json.loads(objects.read(key)))
        except ValueError as exc:
            report.skipped.append((key, str(exc)))
            continue
        records = sum(len(v) for v in event["records"].values() if isinstance(v, list))
        if dry_run:
            report.records += records
            continue
        try:
            result = invoke(event)
        except Exception as exc:  # the bridge's failure, whatever it is: reported, the object kept
            report.failed.append((key, f"{type(exc).__name__}: {exc}"))
            continue
        summary = result.get("summary") if isinstance(result, Mapping) else None
        if isinstance(summary, Mapping):
            for name, target in (("delivered", report.delivered), ("parked", report.parked)):
                for k, v in (summary.get(name) or {}).items():
                    target[str(k)] = target.get(str(k), 0) + int(v)
            checkpoint = summary.get("checkpoint")
            if isinstance(checkpoint, Mapping):
                report.already_done += int(checkpoint.get("skipped") or 0)
        report.replayed += 1
        report.records += records
        objects.delete(key)
    return report


class S3OnFailureObjects:
    """`OnFailureObjects` over a boto3 S3 client."""

    def __init__(self, s3: Any, bucket: str, prefix: str) -> None:
        self._s3 = s3
        self._bucket = bucket
        self._prefix = prefix
        self.where = f"s3://{bucket}/{prefix}"

    def list_keys(self) -> list[str]:
        found: list[tuple[Any, str]] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=self._prefix):
            found += [(o["LastModified"], o["Key"]) for o in page.get("Contents", [])]
        return [k for _, k in sorted(found)]

    def read(self, key: str) -> bytes:
        body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        return body

    def delete(self, key: str) -> None:
        self._s3.delete_object(Bucket=self._bucket, Key=key)
