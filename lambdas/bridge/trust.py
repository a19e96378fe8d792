"""Producer attribution and signature checks: who wrote a record, and may it enter a destination.

Attribution (per record):
- a claim (header `settings.producer_header`) must name a configured producer allowed on the
  record's topic, else the whole record is parked `producer_not_allowed`; the claim is untrusted
  text, so the parked detail and logs say only whether it was UTF-8, its length and which
  configured producer it named, never the text itself;
- with no claim and exactly one producer configured for the topic, the record is attributed to it,
  unverified (useful for audit counts, never enough for `accept_from`).

Admission (per record and destination): a destination with `accept_from` takes only records with a
valid signature (bridge.signatures) by a listed producer. The list is checked first: a record whose
producer is not listed is `untrusted_producer` without its signature being read (on AWS the bridge
role cannot read that producer's key, and a redrive would loop on `signing_key_unavailable`). Then:
no signature -> `unsigned`, a signature that does not verify -> `invalid_signature`, a valid one
without the signed message id header -> `missing_message_id`, and one older than the producer's
`max_age_seconds` -> `stale`. Keys are fetched only when a destination with `accept_from` needs one.
A record is `verified` once its signature, message id and age passed; only then do its messages
name the producer as verified and carry the producer's message id.

Keys (`SigningKeyCache`): a signature verifies with the producer's current or previous key, so a
rotation parks nothing. Keys are kept `KEY_TTL_SECONDS`, so a new current key is picked up without a
cold start; a signature that verifies with neither cached key refetches them at once (at most every
`KEY_REFRESH_SECONDS`, so a flood of forged records costs one read per few seconds), for producers
that switch to a new key before the cache expires. A failed read is remembered for
`KEY_RETRY_SECONDS`: while Secrets Manager is down, no call is made per record (which would outlast
the function timeout and block the partition). With `settings.outage_retry_seconds`, each invocation
may read a failed key once more (`retry_failed_reads`): the batch is failed back to be retried, and a
retry that only repeats the remembered failure would spend the mapping's retries in seconds, after
which the batch goes to the on-failure destination and its FIFO messages arrive after their
successors. Keys read before the outage keep verifying for up to `KEY_STALE_SECONDS`; a producer
with no usable keys has its records parked `signing_key_unavailable`, to be redriven.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from bridge.config import MAX_MESSAGE_ID_CHARS, BridgeConfig, Destination
from bridge.frozen import frozen, lean
from bridge.records import KafkaRecord, utf8_or_none
from bridge.signatures import verify_record

KEY_TTL_SECONDS = 300.0
KEY_RETRY_SECONDS = 30.0
KEY_REFRESH_SECONDS = 5.0
KEY_STALE_SECONDS = 3600.0

Clock = Callable[[], float]
# visible ASCII: the id goes into a message attribute and a FIFO deduplication id as is
_MESSAGE_ID_RE = re.compile(rf"^[\x21-\x7e]{{1,{MAX_MESSAGE_ID_CHARS}}}$")
WallClockMs = Callable[[], int]  # milliseconds since the epoch, for the freshness window


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class SigningKeyUnavailable(RuntimeError):
    """A producer's signing key could not be read (missing secret, access denied, ...)."""


class SigningKeys(Protocol):
    """Port: the HMAC keys of a producer (adapter: Secrets Manager, AWSCURRENT and AWSPREVIOUS)."""

    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        """The current key, then the previous one when there is one; raise SigningKeyUnavailable
        when the current key cannot be read."""
        ...


@lean(slots=True)
class _CachedKeys:
    """A producer's signing keys as last read, and when they were read or tried."""

    keys: tuple[bytes, ...] = ()
    fetched_at: float = float("-inf")  # last successful read
    attempted_at: float = float("-inf")  # last read, successful or not
    refreshed_at: float = float("-inf")  # last read triggered by a signature no cached key verified
    failure: SigningKeyUnavailable | None = None  # the last read's error, None when it succeeded


class SigningKeyCache:
    """Producers' keys over a `SigningKeys` port: kept `ttl` seconds, failures remembered `retry_after`."""

    def __init__(self, source: SigningKeys, clock: Clock = time.monotonic, ttl: float = KEY_TTL_SECONDS,
                 retry_after: float = KEY_RETRY_SECONDS, refresh_every: float = KEY_REFRESH_SECONDS,
                 stale_for: float = KEY_STALE_SECONDS) -> None:
        self._source = source
        self._clock = clock
        self._ttl = ttl
        self._retry_after = retry_after
        self._refresh_every = refresh_every
        self._stale_for = stale_for
        self._entries: dict[str, _CachedKeys] = {}
        self._lock = threading.Lock()

    def keys_for(self, producer: str) -> tuple[bytes, ...]:
        """The producer's keys; SigningKeyUnavailable when they cannot be read and no keys read in the
        last `stale_for` seconds are at hand (a failed read is not retried for `retry_after` seconds)."""
        with self._lock:
            now = self._clock()
            entry = self._entries.setdefault(producer, _CachedKeys())
            if entry.keys and now - entry.fetched_at < self._ttl:
                return entry.keys
            try:
                if entry.failure is not None and now - entry.attempted_at < self._retry_after:
                    raise SigningKeyUnavailable(f"{entry.failure} (last read {now - entry.attempted_at:.0f} s "
                                                f"ago; retried after {self._retry_after:.0f} s)")
                return self._read(producer)
            except SigningKeyUnavailable:
                # A blip in Secrets Manager must not park every signed record: keys that verified an
                # hour ago still tell a genuine record from a forged one.
                if entry.keys and now - entry.fetched_at < self._stale_for:
                    return entry.keys
                raise

    def retry_failed_reads(self) -> None:
        """Let the next `keys_for` of each producer whose last read failed read again (once: a failure then
        is remembered `retry_after` seconds as before)."""
        with self._lock:
            for entry in self._entries.values():
                if entry.failure is not None:
                    entry.attempted_at = float("-inf")

    def refreshed(self, producer: str) -> tuple[bytes, ...] | None:
        """Newly read keys after a signature no cached key verified; None when such a read happened
        less than `refresh_every` seconds ago, or reads are failing (see `keys_for`)."""
        with self._lock:
            now = self._clock()
            entry = self._entries.setdefault(producer, _CachedKeys())
            if now - entry.refreshed_at < self._refresh_every:
                return None
            if entry.failure is not None and now - entry.attempted_at < self._retry_after:
                return None
            entry.refreshed_at = now
            try:
                return self._read(producer)
            except SigningKeyUnavailable:
                return None

    def _read(self, producer: str) -> tuple[bytes, ...]:
        entry = self._entries[producer]
        try:
            keys = self._source.keys_for(producer)
        except SigningKeyUnavailable as exc:
            # Timed from the end of the read: one that hung until its timeout must not be retried
            # by the very next record.
            entry.attempted_at, entry.failure = self._clock(), exc
            raise
        entry.attempted_at = entry.fetched_at = self._clock()
        entry.keys, entry.failure = keys, None
        return keys


@frozen
class Rejection:
    """Why a record (or a record for one destination) is parked instead of delivered."""

    reason: str
    detail: str


def headers_as_produced(record: KafkaRecord) -> tuple[tuple[str, bytes | None], ...]:
    """The record's headers with null values as None (`KafkaRecord.headers` has b"" for them), from
    the event's own header list; the decoded headers unchanged when the two do not line up."""
    raw = record.raw.get("headers")
    if not isinstance(raw, list):
        return record.headers
    nulls = [values is None for entry in raw if isinstance(entry, Mapping) for values in entry.values()]
    if len(nulls) != len(record.headers):
        return record.headers
    return tuple((name, None if null else value) for (name, value), null in zip(record.headers, nulls, strict=True))


@frozen
class _Headers:
    """The names of the signature and message-id headers, from the config's settings."""

    signature: str
    message_id: str


class RecordTrust:
    """The attribution of one record, with its signature verified at most once, on demand."""

    __slots__ = (
        "_checked",
        "_keys",
        "_max_age_seconds",
        "_message_id_header",
        "_now_ms",
        "_signature_header",
        "_signature_problem",
        "claimed",
        "message_id",
        "producer",
        "record",
        "rejection",
    )

    def __init__(self, record: KafkaRecord, producer: str | None, claimed: bool, rejection: Rejection | None,
                 headers: _Headers, keys: SigningKeyCache, max_age_seconds: int | None = None,
                 now_ms: WallClockMs = _now_ms) -> None:
        self.record = record
        self.producer = producer
        self.claimed = claimed
        self.rejection = rejection  # set: the whole record is parked
        self._signature_header = headers.signature
        self._message_id_header = headers.message_id
        self._keys = keys
        self._max_age_seconds = max_age_seconds
        self._now_ms = now_ms
        self._checked = False
        self._signature_problem: Rejection | None = None
        self.message_id: str | None = None  # the producer's signed message id, once verified

    @property
    def verified(self) -> bool:
        """True once the signature, message id and age of the record passed (see `verify`)."""
        return self._checked and self._signature_problem is None and self.producer is not None

    def admit(self, destination: Destination) -> Rejection | None:
        """None when the record may go to this destination, else the reason it may not."""
        if not destination.accept_from:
            return None
        if self.producer is not None and self.producer not in destination.accept_from:
            # before the signature: the bridge may not even be able to read this producer's key
            return Rejection("untrusted_producer", f"producer {self.producer!r} is not in accept_from of "
                                                   f"{destination.name}")
        return self.verify()

    def verify(self) -> Rejection | None:
        """Check the signature (at most once per record): None when it is valid, else why not."""
        if not self._checked:
            self._signature_problem = self._check_signature()
            if self._signature_problem is None:
                self._signature_problem = self._check_message_id_and_age()
            self._checked = True
        return self._signature_problem

    def _check_message_id_and_age(self) -> Rejection | None:
        text = self.record.last_header_text(self._message_id_header)
        if not text or not _MESSAGE_ID_RE.fullmatch(text):  # `$` alone matches before a final newline
            why = "absent or empty" if not text else \
                f"not 1-{MAX_MESSAGE_ID_CHARS} visible ASCII characters (letters, digits, punctuation)"
            return Rejection("missing_message_id", f"signed, but {self._message_id_header} is {why}; producers "
                                                   "must send a unique message id with every signed record")
        if self._max_age_seconds is not None:
            age_ms = self._now_ms() - self.record.timestamp
            if age_ms > self._max_age_seconds * 1000:
                return Rejection("stale", f"signed {age_ms // 1000} s ago, more than max_age_seconds "
                                          f"{self._max_age_seconds} of producer {self.producer!r}")
        self.message_id = text
        return None

    def _check_signature(self) -> Rejection | None:
        raw = self.record.last_header(self._signature_header)
        if raw is None:
            return Rejection("unsigned", f"no {self._signature_header} header")
        signature = utf8_or_none(raw)
        if signature is None or self.producer is None:
            why = "not UTF-8" if signature is None else "no producer to verify it against"
            return Rejection("invalid_signature", f"{self._signature_header}: {why}")
        producer = self.producer
        try:
            if self._verifies(self._keys.keys_for(producer), signature):
                return None
            # Maybe signed with a key newer than the cached ones (a rotation within the TTL).
            newer = self._keys.refreshed(producer)
            if newer is not None and self._verifies(newer, signature):
                return None
        except SigningKeyUnavailable as exc:
            # Parked under its own reason, not invalid_signature: the record may be genuine and is
            # redriven once Secrets Manager answers again; failing the batch would block the partition.
            return Rejection("signing_key_unavailable", f"signing key of {producer!r} unavailable: {exc}")
        why = f"signature does not verify for producer {producer!r}"
        if self.record.timestamp_type == "LOG_APPEND_TIME":
            why += " (the topic uses LogAppendTime: the broker replaced the signed CreateTime)"
        return Rejection("invalid_signature", why)

    def _verifies(self, keys: tuple[bytes, ...], signature: str) -> bool:
        r = self.record
        assert self.producer is not None
        return verify_record(keys, signature, producer=self.producer, topic=r.topic, timestamp=r.timestamp,
                             key=r.key, value=r.value, headers=headers_as_produced(r),
                             signature_header=self._signature_header)


class TrustPolicy:
    """Builds a `RecordTrust` per record; build once per cold start (it holds the key cache)."""

    def __init__(self, config: BridgeConfig, keys: SigningKeys, clock: Clock = time.monotonic,
                 now_ms: WallClockMs = _now_ms) -> None:
        self._config = config
        self._keys = SigningKeyCache(keys, clock)
        self._now_ms = now_ms
        self._producer_header = config.settings.producer_header
        self._headers = _Headers(config.settings.signature_header, config.settings.message_id_header)
        self._producers_for_topic: dict[str, tuple[str, ...]] = {}  # config-only: computed once per topic
        self._max_age = {p.name: p.max_age_seconds for p in config.producers}

    def retry_failed_reads(self) -> None:
        """A new invocation: a producer whose key read failed is read once more (see `SigningKeyCache`)."""
        self._keys.retry_failed_reads()

    def attribute(self, record: KafkaRecord) -> RecordTrust:
        """Who wrote the record (claimed or inferred) and whether the claim is allowed."""
        raw = record.last_header(self._producer_header)
        if raw is not None:
            claim = utf8_or_none(raw)
            producer = self._config.producer(claim) if claim else None
            if producer is None:
                # The claim is attacker-controlled text: describe it, never repeat it.
                shape = "valid UTF-8" if claim is not None else "not valid UTF-8"
                return self._trust(record, None, True, Rejection(
                    "producer_not_allowed", f"{self._producer_header} ({shape}, {len(raw)} bytes) names no "
                                            "configured producer"))
            if record.topic not in producer.topics:
                return self._trust(record, producer.name, True, Rejection(
                    "producer_not_allowed", f"{self._producer_header} names configured producer "
                                            f"{producer.name!r}, which may not write {record.topic!r}"))
            return self._trust(record, producer.name, True, None)
        return self._trust(record, self.inferred_producer(record.topic), False, None)

    @property
    def producer_header(self) -> str:
        """The header a record's producer claim is in (settings.producer_header)."""
        return self._producer_header

    def inferred_producer(self, topic: str) -> str | None:
        """The producer a record of `topic` without a claim is attributed to (unverified): the topic's
        only configured producer, else None."""
        candidates = self._producers_for_topic.get(topic)
        if candidates is None:
            candidates = tuple(p.name for p in self._config.producers_for_topic(topic))
            self._producers_for_topic[topic] = candidates
        return candidates[0] if len(candidates) == 1 else None

    def _trust(self, record: KafkaRecord, producer: str | None, claimed: bool,
               rejection: Rejection | None) -> RecordTrust:
        return RecordTrust(record, producer, claimed, rejection, self._headers, self._keys,
                           self._max_age.get(producer) if producer else None, self._now_ms)
