"""Produce records to the local broker as a named producer, signed when the producer signs.

Two sources of records:
- `demo_scenario(config, count)`: a built-in scenario over config/dev.yaml: order-service on
  `orders`, payment-service on `payments` (both sign), inventory-service on `inventory`, plus the
  records the bridge must park (see `ScenarioRecord.expect` for what each one is for);
- a JSONL/JSON file of plain records (`bridge_local.events` documents the format).

Each record gets a correlation id header unless it has one, and a CreateTime set when it is
produced. A record whose producer signs (and whose `sign` is not false) is signed with the
producer's key from the local Secrets Manager (`bridge.signatures.sign_record`, over its headers
and that timestamp), the way a real producer would.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from bridge.config import BridgeConfig
from bridge.signatures import sign_record
from confluent_kafka import KafkaException, Producer

from bridge_local.events import PlainRecord

LARGE_VALUE_BYTES = 300 * 1024  # over SNS's 256 KiB, under SQS's 1 MiB
DEMO_TOPICS = ("orders", "payments", "inventory")
DEMO_PRODUCERS = ("order-service", "payment-service", "inventory-service", "refund-service")


class UnknownProducerError(ValueError):
    """The producer is not in the config; the message lists the known ones."""


class ScenarioError(ValueError):
    """The built-in scenario does not fit this config."""


@dataclass(frozen=True, slots=True)
class ScenarioRecord:
    """A record of the scenario and what the bridge should do with it (for the summary and tests)."""

    record: PlainRecord
    expect: str  # "deliver" or the park reason the bridge should give


def require_producer(config: BridgeConfig, name: str) -> None:
    """Raise UnknownProducerError naming the known producers."""
    if config.producer(name) is None:
        known = ", ".join(p.name for p in config.producers) or "(none configured)"
        raise UnknownProducerError(f"unknown producer {name!r}. Known producers: {known}")


def _headers(pairs: Iterable[tuple[str, str]]) -> tuple[tuple[str, bytes | None], ...]:
    return tuple((k, v.encode("utf-8")) for k, v in pairs)


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def demo_scenario(config: BridgeConfig, count: int = 10) -> list[ScenarioRecord]:
    """Records from four producers over three topics, with every park reason a producer can cause.

    `count` scales the deliverable records: `count` orders (each placed; every third also
    cancelled; every fourth a high-value order), `count` payments and `count` low-stock alerts.
    """
    missing = [t for t in DEMO_TOPICS if t not in config.source.topics]
    missing += [p for p in DEMO_PRODUCERS if config.producer(p) is None]
    if missing:
        raise ScenarioError(f"the demo scenario is written for config/dev.yaml; this config lacks {missing}. "
                            "Fix: use --file with your own records")
    out: list[ScenarioRecord] = []

    def add(expect: str, topic: str, producer: str | None, key: str | None, value: bytes | None,
            headers: Sequence[tuple[str, str]], sign: bool = True, note: str = "", forged: bool = False) -> None:
        out.append(ScenarioRecord(PlainRecord(topic, None if key is None else key.encode("utf-8"), value,
                                              _headers(headers), producer, sign, note=note, forged=forged), expect))

    for i in range(count):
        order_id = f"order-{i:05d}"
        total = 1500.0 + i if i % 4 == 0 else 20.0 + i
        order = {"order_id": order_id, "total": total, "currency": "EUR", "items": [{"sku": f"SKU-{i % 7}", "qty": 1}]}
        add("deliver", "orders", "order-service", order_id, _json(order), [("event-type", "OrderPlaced")])
        if i % 3 == 0:
            add("deliver", "orders", "order-service", order_id, _json({**order, "status": "cancelled"}),
                [("event-type", "OrderCancelled")])
        pay = {"payment_id": f"pay-{i:05d}", "order_id": order_id, "amount": total, "currency": "EUR"}
        add("deliver", "payments", "payment-service", order_id, _json(pay),
            [("event-type", "PaymentCaptured"), ("currency", "EUR")])
        add("deliver", "inventory", "inventory-service", f"SKU-{i:05d}",
            _json({"sku": f"SKU-{i:05d}", "quantity": i % 10, "warehouse": "dub-1"}), [("event-type", "StockLevel")],
            sign=False)

    # --- records the bridge must park -----------------------------------------------------------
    add("unroutable", "orders", "order-service", "order-x-shipped",
        _json({"order_id": "order-x-shipped", "total": 50.0}), [("event-type", "OrderShipped")],
        note="no route takes OrderShipped under 1000")
    add("unroutable", "inventory", "inventory-service", "SKU-HIGH",
        _json({"sku": "SKU-HIGH", "quantity": 500}), [("event-type", "StockLevel")], sign=False,
        note="stock is not low: no route matches")
    # A Lambda record is always base64: "undecodable" cannot come from a broker. What can is a value
    # that is not JSON, so body routes cannot look inside it; it is parked (bytes kept) as unroutable.
    add("unroutable", "inventory", "inventory-service", "SKU-CSV", b"sku=SKU-CSV;quantity=2\xff",
        [("event-type", "StockLevel")], sign=False, note="value is not JSON: body routes cannot match")
    add("too_large", "orders", "order-service", "order-big",
        _json({"order_id": "order-big", "total": 10.0, "notes": "x" * LARGE_VALUE_BYTES}),
        [("event-type", "OrderPlaced")], note="300 KiB: fits fulfilment (SQS 1 MiB), too large for order-events")
    add("unsigned", "payments", None, "pay-unsigned",
        _json({"payment_id": "pay-unsigned", "amount": 10.0, "currency": "EUR"}),
        [("event-type", "PaymentCaptured"), ("currency", "EUR")], sign=False,
        note="no signature: payments-ledger accepts payment-service's signed records only")
    add("invalid_signature", "payments", "payment-service", "pay-forged",
        _json({"payment_id": "pay-forged", "amount": 1_000_000.0, "currency": "EUR"}),
        [("event-type", "PaymentCaptured"), ("currency", "EUR")], forged=True,
        note="claims payment-service with a signature made with the wrong key")
    add("producer_not_allowed", "payments", "order-service", "pay-wrong-producer",
        _json({"payment_id": "pay-wrong-producer", "amount": 5.0, "currency": "EUR"}),
        [("event-type", "PaymentCaptured"), ("currency", "EUR")],
        note="order-service signs correctly but may not write to payments")
    add("untrusted_producer", "payments", "refund-service", "refund-1",
        _json({"payment_id": "refund-1", "amount": -25.0, "currency": "EUR"}),
        [("event-type", "PaymentRefunded"), ("currency", "EUR")],
        note="refund-service signs correctly and may write payments, but payments-ledger does not accept it")
    return out


def expected_outcomes(scenario: Sequence[ScenarioRecord]) -> Counter[str]:
    """How many records should be delivered and parked per reason."""
    return Counter(s.expect for s in scenario)


def records_for_producer(config: BridgeConfig, records: Sequence[PlainRecord],
                         producer: str | None) -> list[PlainRecord]:
    """Records from a file, produced as `producer` when given (the file's own `producer` otherwise)."""
    if producer is not None:
        require_producer(config, producer)
        records = [replace(r, producer=producer) for r in records]
    for r in records:
        if r.producer is not None:
            require_producer(config, r.producer)
        if r.topic not in config.source.topics:
            raise ValueError(f"topic {r.topic!r} is not consumed by the bridge ({', '.join(config.source.topics)})")
    return list(records)


KeyLookup = Callable[[str], bytes]


def finalize(config: BridgeConfig, record: PlainRecord, key_for: KeyLookup, now_ms: int | None = None) -> PlainRecord:
    """Add the timestamp and the correlation id, producer and signature headers the record should carry.

    The timestamp is the record's CreateTime, set now (`now_ms` when given; a file's own timestamp
    is for `make-event` only): a signature covers it, so `produce` sends exactly this value.
    """
    s = config.settings
    timestamp = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    headers = list(record.headers)
    names = {n.lower() for n, _ in headers}
    if s.correlation_header.lower() not in names:
        headers.append((s.correlation_header, f"corr-{uuid.uuid4().hex[:16]}".encode("ascii")))
    producer = config.producer(record.producer) if record.producer else None
    if producer is not None and s.producer_header.lower() not in names:
        # A producer that does not sign still names itself when several producers share a topic.
        if producer.signing or len(config.producers_for_topic(record.topic)) > 1:
            headers.append((s.producer_header, producer.name.encode("utf-8")))
        if producer.signing and record.sign and s.signature_header.lower() not in names:
            if s.message_id_header.lower() not in names:
                # unique per record and signed with it: consumers deduplicate on it
                headers.append((s.message_id_header, uuid.uuid4().hex.encode("ascii")))
            key = b"not-the-producer-key" if record.forged else key_for(producer.name)
            # Signed last: the signature covers every header above, the timestamp, key and value.
            signature = sign_record(key, producer=producer.name, topic=record.topic, timestamp=timestamp,
                                    key=record.key, value=record.value, headers=headers,
                                    signature_header=s.signature_header)
            headers.append((s.signature_header, signature.encode("ascii")))
    return replace(record, headers=tuple(headers), timestamp=timestamp)


def sign_for_event(config: BridgeConfig, records: Sequence[PlainRecord], key_for: KeyLookup | None,
                   now_ms: int | None = None) -> tuple[list[PlainRecord], Counter[str], Counter[str]]:
    """`make-event`'s records, those of a signing producer (the record's "producer"; "sign" not false) signed
    as `produce` signs them (`finalize`), with the record's own timestamp or now. Returns the records, how
    many were signed per producer, and how many were left unsigned per producer because `key_for` is None."""
    now = now_ms if now_ms is not None else time.time_ns() // 1_000_000
    out: list[PlainRecord] = []
    signed: Counter[str] = Counter()
    keyless: Counter[str] = Counter()
    for record in records:
        producer = config.producer(record.producer) if record.producer else None
        if producer is None or not producer.signing or not record.sign:
            out.append(record)
        elif key_for is None:
            keyless[producer.name] += 1
            out.append(record)
        else:
            out.append(finalize(config, record, key_for, now_ms=record.timestamp or now))
            signed[producer.name] += 1
    return out, signed, keyless


@dataclass
class ProduceReport:
    """What was produced: per topic and per producer."""

    records: int = 0
    by_topic: Counter[str] | None = None
    by_producer: Counter[str] | None = None
    seconds: float = 0.0


def produce(config: BridgeConfig, bootstrap: str, records: Iterable[PlainRecord], key_for: KeyLookup,
            flush_timeout: float = 30.0, client: Any = None) -> ProduceReport:
    """Send records to the broker (acks=all, idempotent) and wait for every delivery report.

    `client`: a confluent-kafka `Producer` (default: a new one for `bootstrap`).
    """
    started = time.monotonic()
    producer = client or Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                                   "linger.ms": 5, "message.max.bytes": 2_000_000,
                                   "client.id": "bridge-local-producer"})
    errors: list[str] = []

    def on_delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(f"{msg.topic()}: {err}")

    report = ProduceReport(by_topic=Counter(), by_producer=Counter())
    assert report.by_topic is not None
    assert report.by_producer is not None
    keys: dict[str, bytes] = {}

    def cached_key(name: str) -> bytes:
        if name not in keys:
            keys[name] = key_for(name)
        return keys[name]

    for r in records:
        final = finalize(config, r, cached_key)
        # timestamp: the CreateTime the signature covers (the broker keeps it on CreateTime topics)
        kwargs: dict[str, Any] = {"topic": final.topic, "value": final.value, "key": final.key,
                                  "headers": list(final.headers), "timestamp": final.timestamp,
                                  "on_delivery": on_delivery}
        if final.partition is not None:
            kwargs["partition"] = final.partition
        while True:
            try:
                producer.produce(**kwargs)
                break
            except BufferError:
                producer.poll(0.1)  # local queue full: let deliveries drain
            except KafkaException as exc:
                raise RuntimeError(f"cannot produce to {final.topic!r}: {exc}") from exc
        producer.poll(0)
        report.records += 1
        report.by_topic[final.topic] += 1
        report.by_producer[final.producer or "(no producer header)"] += 1
    remaining = producer.flush(flush_timeout)
    if remaining:
        raise RuntimeError(f"{remaining} record(s) not acknowledged by the broker at {bootstrap} "
                           f"within {flush_timeout:.0f} s")
    if errors:
        raise RuntimeError(f"{len(errors)} record(s) failed to produce, first: {errors[0]}")
    report.seconds = time.monotonic() - started
    return report
