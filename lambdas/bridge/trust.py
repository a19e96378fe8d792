"""Producer attribution and signature checks: who wrote a record, and may it enter a destination.

Attribution (per record):
- a claim (header `settings.producer_header`) must name a configured producer allowed on the
  record's topic, else the whole record is parked `producer_not_allowed`;
- with no claim and exactly one producer configured for the topic, the record is attributed to it,
  unverified (useful for audit counts, never enough for `accept_from`).

Admission (per record and destination): a destination with `accept_from` takes only records with a
valid signature (bridge.signatures) by a listed producer: no signature -> `unsigned`, a signature
that does not verify -> `invalid_signature`, valid but the producer is not listed ->
`untrusted_producer`. Keys are fetched only when a destination with `accept_from` needs one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bridge.config import BridgeConfig, Destination
from bridge.records import KafkaRecord, utf8_or_none
from bridge.signatures import verify_record


class SigningKeyUnavailable(RuntimeError):
    """A producer's signing key could not be read (missing secret, access denied, ...)."""


class SigningKeys(Protocol):
    """Port: the HMAC key of a producer (adapter: Secrets Manager, cached per cold start)."""

    def key_for(self, producer: str) -> bytes:
        """The key bytes; raise SigningKeyUnavailable when it cannot be read."""
        ...


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a record (or a record for one destination) is parked instead of delivered."""

    reason: str
    detail: str


class RecordTrust:
    """The attribution of one record, with its signature verified at most once, on demand."""

    def __init__(self, record: KafkaRecord, producer: str | None, claimed: bool, rejection: Rejection | None,
                 signature_header: str, keys: SigningKeys) -> None:
        self.record = record
        self.producer = producer
        self.claimed = claimed
        self.rejection = rejection  # set: the whole record is parked
        self._signature_header = signature_header
        self._keys = keys
        self._checked = False
        self._signature_problem: Rejection | None = None

    def admit(self, destination: Destination) -> Rejection | None:
        """None when the record may go to this destination, else the reason it may not."""
        if not destination.accept_from:
            return None
        problem = self._verify()
        if problem is not None:
            return problem
        if self.producer not in destination.accept_from:
            return Rejection("untrusted_producer", f"producer {self.producer!r} is not in accept_from of "
                                                   f"{destination.name}")
        return None

    def _verify(self) -> Rejection | None:
        if not self._checked:
            self._signature_problem = self._check_signature()
            self._checked = True
        return self._signature_problem

    def _check_signature(self) -> Rejection | None:
        raw = self.record.last_header(self._signature_header)
        if raw is None:
            return Rejection("unsigned", f"no {self._signature_header} header")
        signature = utf8_or_none(raw)
        if signature is None or self.producer is None:
            why = "not UTF-8" if signature is None else "no producer to verify it against"
            return Rejection("invalid_signature", f"{self._signature_header}: {why}")
        try:
            key = self._keys.key_for(self.producer)
        except SigningKeyUnavailable as exc:
            # Parked under its own reason, not invalid_signature: the record may be genuine and is
            # redriven once Secrets Manager answers again; failing the batch would block the partition.
            return Rejection("signing_key_unavailable", f"signing key of {self.producer!r} unavailable: {exc}")
        r = self.record
        if not verify_record(key, signature, self.producer, r.topic, r.key, r.value):
            return Rejection("invalid_signature", f"signature does not verify for producer {self.producer!r}")
        return None


class TrustPolicy:
    """Builds a `RecordTrust` per record; build once per cold start."""

    def __init__(self, config: BridgeConfig, keys: SigningKeys) -> None:
        self._config = config
        self._keys = keys
        self._producer_header = config.settings.producer_header
        self._signature_header = config.settings.signature_header

    def attribute(self, record: KafkaRecord) -> RecordTrust:
        """Who wrote the record (claimed or inferred) and whether the claim is allowed."""
        raw = record.last_header(self._producer_header)
        if raw is not None:
            claim = utf8_or_none(raw)
            producer = self._config.producer(claim) if claim else None
            if producer is None or record.topic not in producer.topics:
                shown = (claim or "<not UTF-8>")[:100]
                why = "is not a configured producer" if producer is None else f"may not write {record.topic!r}"
                return self._trust(record, claim, True, Rejection("producer_not_allowed", f"{shown!r} {why}"))
            return self._trust(record, producer.name, True, None)
        candidates = self._config.producers_for_topic(record.topic)
        inferred = candidates[0].name if len(candidates) == 1 else None
        return self._trust(record, inferred, False, None)

    def _trust(self, record: KafkaRecord, producer: str | None, claimed: bool,
               rejection: Rejection | None) -> RecordTrust:
        return RecordTrust(record, producer, claimed, rejection, self._signature_header, self._keys)
