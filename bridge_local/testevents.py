"""Lambda console test events generated from the config: one per route, one per failure mode.

Each route gets a record built to satisfy its match (topic, key, headers, body conditions) and
checked against the bridge's own `Router`. Failure modes: unroutable, too large for an SNS
destination, unsigned / forged / not-allowed producer for a destination with `accept_from`,
an undecodable record (value that is not base64: only a hand-written event can carry one; a broker
never does), and a self-managed Kafka event. `manifest.json` says what each event should do.

Records aimed at an `accept_from` destination are signed with `PLACEHOLDER_KEY`, because the real
keys are random secrets: `bridge invoke` re-signs them (its default) with the local stack's key
(a forged signature stays forged). In AWS they would park as `invalid_signature`, so the manifest
marks every event whose outcome needs a valid signature `console: false` and the stack does not ship
it as a console test event (infra/console_events.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bridge.config import BridgeConfig, Condition, Match, Route
from bridge.records import decode_record
from bridge.routing import Router
from bridge.signatures import sign_record, verify_record

from bridge_local.events import EventFileError, KafkaRecord, build_event, records_from_event
from bridge_local.producer import LARGE_VALUE_BYTES

PLACEHOLDER_KEY = b"placeholder-signing-key: re-sign with bridge invoke --resign"
FIXED_TIMESTAMP_MS = 1_767_225_600_000  # 2026-01-01, so regenerated files do not change
LOCAL_BOOTSTRAP = "b-1.local.kafka:9098"


@dataclass
class GeneratedEvent:
    """One test event and its expected outcome (for the manifest and the e2e tests)."""

    name: str
    description: str
    event: dict[str, Any]
    expect_delivered: dict[str, int] = field(default_factory=dict)
    expect_parked: dict[str, int] = field(default_factory=dict)
    # Why the event cannot be a console test event of the deployed stack (None: it can).
    console_note: str | None = None


def _needs_key(producer: str) -> str:
    return (f"needs a signature by {producer}'s key, a random secret the deploy creates, so it cannot be signed "
            "before the deploy; run it with `bridge invoke` on the local stack, which re-signs shipped events")


def _sample(c: Condition | None, default: Any) -> Any:
    if c is None:
        return default
    if c.kind == "equals":
        return c.value
    if c.kind == "prefix":
        return f"{c.value}example"
    if c.kind == "exists":
        return default if c.value else None
    if c.kind == "any_of":
        return _sample(c.alternatives[0], default) if c.alternatives else default
    # numeric: a value inside every bound
    lo, hi = -1e9, 1e9
    for op, bound in c.comparisons:
        if op in (">", ">="):
            lo = max(lo, bound + (0 if op == ">=" else 1))
        elif op in ("<", "<="):
            hi = min(hi, bound - (0 if op == "<=" else 1))
        else:
            lo = hi = bound
    value = lo if lo > -1e9 else (hi if hi < 1e9 else 1)
    return int(value) if float(value).is_integer() else value


def _set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    cur = doc
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def record_for_match(config: BridgeConfig, match: Match, offset: int, extra_body: dict[str, Any] | None = None,
                     partition: int = 0) -> KafkaRecord:
    """A record that satisfies `match` (checked by the caller against the Router)."""
    topic = str(_sample(match.topic, config.source.topics[0]))
    key = _sample(match.key, f"{topic}-key-{offset}")
    body: dict[str, Any] = {"id": f"{topic}-{offset}"}
    for path, cond in match.body:
        v = _sample(cond, "example")
        if v is not None:
            _set_path(body, path, v)
    body.update(extra_body or {})
    headers: list[tuple[str, bytes | None]] = []
    for name, cond in match.headers:
        v = _sample(cond, "example")
        if v is not None:
            headers.append((name, str(v).encode("utf-8")))
    headers.append((config.settings.correlation_header, f"corr-test-{topic}-{offset}".encode()))
    headers.append(("origin", "Zürich".encode()))  # non-ASCII: header bytes above 127 arrive negative
    return KafkaRecord(topic, partition, offset, FIXED_TIMESTAMP_MS, str(key).encode("utf-8"),
                       json.dumps(body, separators=(",", ":")).encode("utf-8"), tuple(headers))


def sign_as(config: BridgeConfig, record: KafkaRecord, producer: str, key: bytes = PLACEHOLDER_KEY,
            signature: str | None = None) -> KafkaRecord:
    """The record with producer and signature headers (placeholder key unless given), signed over its
    timestamp and every header, the producer header included (bridge.signatures)."""
    s = config.settings
    headers = (*record.headers, (s.message_id_header, f"{record.topic}-{record.offset}-{producer}".encode()),
               (s.producer_header, producer.encode()))
    sig = signature or _sign(config, key, producer, replace(record, headers=headers))
    return replace(record, headers=(*headers, (s.signature_header, sig.encode())))


def _sign(config: BridgeConfig, key: bytes, producer: str, record: KafkaRecord) -> str:
    return sign_record(key, producer=producer, topic=record.topic, timestamp=record.timestamp, key=record.key,
                       value=record.value, headers=record.headers, signature_header=config.settings.signature_header)


def _signer_for(config: BridgeConfig, route: Route) -> str | None:
    for name in route.to:
        d = config.destination(name)
        for p in d.accept_from:
            prod = config.producer(p)
            topic = _sample(route.match.topic, config.source.topics[0])
            if prod is not None and prod.signing and topic in prod.topics:
                return p
    return None


def generate(config: BridgeConfig) -> list[GeneratedEvent]:
    """Every test event for this config, with expected outcomes (checked against the bridge's Router)."""
    router = Router(config)
    cluster = config.source.cluster_arn
    source = "aws:kafka" if config.source.kind == "msk" else "SelfManagedKafka"
    bootstrap = LOCAL_BOOTSTRAP if config.source.kind == "msk" else ",".join(config.source.bootstrap_servers)

    def routed(record: KafkaRecord) -> tuple[str, ...]:
        raw = build_event([record], cluster, bootstrap, source)["records"]
        decision = router.route(decode_record(next(iter(raw.values()))[0]))
        return decision.destinations if decision.action == "deliver" else ()

    def ev(records: list[KafkaRecord], src: str = source, boot: str = bootstrap) -> dict[str, Any]:
        return build_event(records, cluster, boot, src)

    out: list[GeneratedEvent] = []
    for i, route in enumerate(config.routes):
        rec = record_for_match(config, route.match, 100 + i)
        signer = _signer_for(config, route)
        if signer:
            rec = sign_as(config, rec, signer)
        dests = routed(rec)
        if not set(route.to) <= set(dests):
            continue  # a match this generator cannot satisfy; write such an event by hand
        out.append(GeneratedEvent(f"route-{route.name}", f"one record matching route {route.name} -> "
                                  f"{', '.join(dests)}" + (f" (signed as {signer})" if signer else ""),
                                  ev([rec]), dict.fromkeys(dests, 1),
                                  console_note=_needs_key(signer) if signer else None))

    # unroutable: a record on a consumed topic that no route takes
    if config.unmatched.action == "park":
        for t in config.source.topics:
            rec = KafkaRecord(t, 0, 200, FIXED_TIMESTAMP_MS, b"no-route", b'{"nothing":"matches"}',
                              ((config.settings.correlation_header, b"corr-test-unroutable"),))
            if not routed(rec):
                out.append(GeneratedEvent("fail-unroutable", f"a record on {t} that no route matches: parked",
                                          ev([rec]), {}, {"unroutable": 1}))
                break

    # too large for an SNS destination (256 KiB), fine for SQS (1 MiB)
    for i, route in enumerate(config.routes):
        sns = [d for d in route.to if config.destination(d).type == "sns"]
        if not sns:
            continue
        rec = record_for_match(config, route.match, 300 + i, {"padding": "x" * LARGE_VALUE_BYTES})
        signer = _signer_for(config, route)
        if signer:
            rec = sign_as(config, rec, signer)
        dests = routed(rec)
        size = len(rec.value or b"")
        big = {d for d in dests if config.destination(d).message_limit < size + 16_384}
        if big:
            out.append(GeneratedEvent("fail-too-large", f"a {size // 1024} KiB record on route {route.name}: "
                                      f"too large for {', '.join(sorted(big))}, delivered elsewhere",
                                      ev([rec]), {d: 1 for d in dests if d not in big}, {"too_large": len(big)}))
            break

    # trust failures against the first destination with accept_from
    for i, route in enumerate(config.routes):
        signer = _signer_for(config, route)
        if not signer:
            continue
        base = record_for_match(config, route.match, 400 + i)
        guarded = [d for d in route.to if config.destination(d).accept_from]
        others = {d: 1 for d in routed(base) if d not in guarded}
        out.append(GeneratedEvent("fail-unsigned", f"an unsigned record for {', '.join(guarded)}: parked",
                                  ev([base]), others, {"unsigned": len(guarded)}))
        forged = sign_as(config, replace(base, offset=base.offset + 1), signer, signature="v1=" + "0" * 64)
        out.append(GeneratedEvent("fail-invalid-signature", f"a record claiming {signer} with a forged "
                                  f"signature: parked", ev([forged]), others, {"invalid_signature": len(guarded)}))
        intruder = sign_as(config, replace(base, offset=base.offset + 2), "intruder-service")
        out.append(GeneratedEvent("fail-producer-not-allowed", "a record claiming a producer that is not "
                                  "configured for the topic: parked whole", ev([intruder]), {},
                                  {"producer_not_allowed": 1}))
        # a producer allowed on the topic and signing correctly, but not accepted by the guarded queue
        outsiders = [p.name for p in config.producers_for_topic(base.topic)
                     if p.signing and all(p.name not in config.destination(d).accept_from for d in guarded)]
        if outsiders:
            untrusted = sign_as(config, replace(base, offset=base.offset + 3), outsiders[0])
            out.append(GeneratedEvent("fail-untrusted-producer", f"a record correctly signed by {outsiders[0]}, "
                                      f"which {', '.join(guarded)} does not accept: parked", ev([untrusted]), others,
                                      {"untrusted_producer": len(guarded)}))
            # no console note: accept_from is checked before the signature, so this record parks as
            # untrusted_producer in the deployed stack too, whatever key it was signed with
        break

    # undecodable: only a hand-written event can carry a value that is not base64
    if out:
        first = out[0].event
        broken = json.loads(json.dumps(first))
        _tp, items = next(iter(broken["records"].items()))
        items[0]["value"] = "this is not base64!"
        items[0]["offset"] = 500
        out.append(GeneratedEvent("fail-undecodable", "a record whose value is not base64 (cannot come from a "
                                  "broker; tests the decoder): parked", broken, {}, {"undecodable": 1}))
    # No event in the other source's shape: the bridge refuses events from any source but its own
    # (bridge.service, ForeignEventError), so every event here names the configured cluster or brokers.
    return out


def write_events(config: BridgeConfig, out_dir: Path, key_for: Callable[[str], bytes] | None = None) -> WrittenEvents:
    """Write every generated event and `manifest.json` (name -> description and expected outcome).

    Records for `accept_from` destinations carry placeholder signatures; with `key_for` (producer -> its real key)
    they are signed with the real keys instead (the manifest is the same either way)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    done = WrittenEvents()
    manifest: dict[str, Any] = {}
    for g in generate(config):
        p = out_dir / f"{g.name}.json"
        placeholders = resign_event(config, g.event, key_for) if key_for else placeholder_signed(config, g.event)
        if placeholders:
            (done.signed if key_for else done.placeholders)[p.name] = placeholders
        p.write_text(json.dumps(g.event, indent=2) + "\n", encoding="utf-8")
        done.paths.append(p)
        manifest[p.name] = {"description": g.description, "delivered": g.expect_delivered, "parked": g.expect_parked}
        if g.console_note:  # also when signed with a real key: the stack ships no event signed for one deployment
            manifest[p.name].update(console=False, console_note=g.console_note)
    m = out_dir / "manifest.json"
    m.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    done.paths.append(m)
    return done


@dataclass
class WrittenEvents:
    """What `write_events` wrote: the files, and per event file how many records carry a placeholder signature
    (no key given) or were signed with a real key."""

    paths: list[Path] = field(default_factory=list)
    placeholders: dict[str, int] = field(default_factory=dict)
    signed: dict[str, int] = field(default_factory=dict)


def placeholder_signed(config: BridgeConfig, event: dict[str, Any]) -> int:
    """How many of the event's records carry a placeholder signature (valid under `PLACEHOLDER_KEY` only)."""
    return sum(1 for _ in _placeholder_signed(config, event))


def unsigned_at_signed_only(config: BridgeConfig, event: dict[str, Any]) -> dict[str, int]:
    """Destination -> how many of the event's records the bridge's Router sends there without a signature
    header, where the destination accepts only signed records (`accept_from`): the function parks each
    of them `unsigned`."""
    router = Router(config)
    signed_only = {d.name for d in config.destinations if d.accept_from}
    found: dict[str, int] = {}
    for items in (event.get("records") or {}).values():
        for raw in items:
            record = decode_record(raw)
            if record.undecodable or any(name == config.settings.signature_header for name, _ in record.headers):
                continue  # parked as undecodable; or signed (whether it verifies is the function's to say)
            decision = router.route(record)
            if decision.action != "deliver":
                continue
            for name in signed_only.intersection(decision.destinations):
                found[name] = found.get(name, 0) + 1
    return found


def resign_event(config: BridgeConfig, event: dict[str, Any], key_for: Callable[[str], bytes]) -> int:
    """Re-sign, in place, records signed with PLACEHOLDER_KEY (forged ones stay forged). Returns how many."""
    count = 0
    for raw, rec, producer in list(_placeholder_signed(config, event)):
        new_sig = _sign(config, key_for(producer), producer, rec)
        headers = [(n, new_sig.encode() if n == config.settings.signature_header else v) for n, v in rec.headers]
        raw["headers"] = build_event([replace(rec, headers=tuple(headers))], None, "",
                                     "SelfManagedKafka")["records"][f"{rec.topic}-{rec.partition}"][0]["headers"]
        count += 1
    return count


def _placeholder_signed(config: BridgeConfig, event: dict[str, Any]) -> Iterator[tuple[dict[str, Any], KafkaRecord,
                                                                                         str]]:
    """(raw record, decoded record, producer) for each record of the event signed with PLACEHOLDER_KEY."""
    s = config.settings
    for items in (event.get("records") or {}).values():
        for raw in items:
            try:
                rec = records_from_event({"records": {"x": [raw]}})[0]
            except EventFileError:
                continue  # a deliberately broken record: nothing to sign
            producer = _last(rec, s.producer_header)
            sig = _last(rec, s.signature_header)
            if not producer or not sig or config.producer(producer) is None:
                continue
            if verify_record((PLACEHOLDER_KEY,), sig, producer=producer, topic=rec.topic, timestamp=rec.timestamp,
                             key=rec.key, value=rec.value, headers=rec.headers, signature_header=s.signature_header):
                yield raw, rec, producer


def _last(rec: KafkaRecord, name: str) -> str | None:
    vals = [v for n, v in rec.headers if n == name and v is not None]
    if not vals:
        return None
    try:
        return vals[-1].decode("utf-8")
    except UnicodeDecodeError:
        return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
