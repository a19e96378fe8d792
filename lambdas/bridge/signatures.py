"""Producer signatures: how the bridge knows which service wrote a record to a shared topic.

Several services may write records that end up in one queue. Kafka does not tell a consumer who
produced a record, so a producer that must be trusted signs each record with its own HMAC key
(one Secrets Manager secret per producer, readable only by that producer's role and the bridge)
and sends two headers (names configurable: settings.producer_header, settings.signature_header):

    x-bridge-producer:  <producer name>
    x-bridge-signature: v1=<lowercase hex HMAC-SHA256(key, canonical)>

The key is the UTF-8 bytes of the secret's SecretString. `canonical` is the UTF-8 encoding of
these lines joined by a single "\\n" (LF), with no trailing newline:

    v1
    <producer name>
    <topic>
    <timestamp>
    <H(key)>
    <H(value)>
    <header line>     zero or more, one per signed header, in canonical order

- H(b) is the lowercase hex SHA-256 of the bytes b. An absent (null) key or value is the line
  `-` instead (never a hex digest), so a tombstone (null value) and an empty value sign differently.
- <timestamp> is the record's Kafka timestamp in milliseconds since the epoch, as a base-10
  integer with no sign, padding or decimals (for example 1767225600000). It is the CreateTime the
  producer sets on the record (for example confluent-kafka `produce(timestamp=ms)`, Java
  `new ProducerRecord(topic, null, timestampMs, key, value, headers)`), so the producer must set
  it explicitly and sign that same value. A topic with `message.timestamp.type=LogAppendTime`
  replaces it at the broker, and no record on it can verify.
- Signed headers are all of the record's headers except those named exactly like the signature
  header (header names are case-sensitive), including the producer header and repeated names.
  Each is one line: `<N> <V>`, where N is the lowercase hex of the header name's UTF-8 bytes and
  V is H(value bytes), or `-` when the header value is null (an empty value hashes as
  e3b0c442...b855, so null and empty differ).
- Canonical order: sort the header lines by N (that is, by the name's UTF-8 bytes, bytewise),
  keeping headers with the same name in the order they appear in the record. Reordering two
  headers of the same name therefore changes the signature; reordering different names does not.

Example, producer `payment-service`, topic `payments`, timestamp 1767225600000, key `p1`, value
`{}`, headers `event-type: PaymentCaptured`, `x-bridge-producer: payment-service`:

    v1
    payment-service
    payments
    1767225600000
    H("p1")
    H("{}")
    6576656e742d74797065 H("PaymentCaptured")
    782d6272696467652d70726f6475636572 H("payment-service")

The topic is signed so that a record cannot be copied onto another topic; the producer name so
that one producer's key cannot vouch for another; the headers because they drive routing, the
message attributes of a signed-only queue and the correlation id; the timestamp so that it cannot
be changed. Partition and offset are not signed (the producer does not know them): a verbatim copy
of a signed record at another offset (anyone able to write the topic replaying it) verifies again.
That is a duplicate, not a forgery: its content is exactly what the producer signed. The signed
message id (below) is what lets FIFO destinations drop such a copy and consumers recognise it; not
`record-id`, which names the offset. The bridge delivers at least once anyway.

Every signed record must also carry a message id header (settings.message_id_header,
`x-bridge-message-id`): 1-128 characters of UTF-8 that the producer never reuses for another record
(a UUID, or a business id). It is signed like every header, so a copy of the record carries the same
one. The bridge puts `<producer>:<message id>` in the `message-id` attribute of every message it
delivers for a verified record, and FIFO destinations deduplicate on it: consumers that must act
once per record deduplicate on that attribute. A verified record without it is parked
`missing_message_id`.

A producer may also be given `max_age_seconds` in the config: a verified record whose signed
timestamp is older than that is parked `stale` (off by default: reprocessing a topic from the start
is a normal operation).

A null header value: the bridge can only verify it if the Kafka event delivers the header with a
null value; a producer that cannot rely on that should not send null-valued headers on signed
records.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Sequence

SCHEME = "v1"
NULL_HEADER_VALUE = "-"  # a null header value's line; never a hex digest


NULL_LINE = "-"  # a null key or value's line; never a hex digest


def _h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _h_or_null(data: bytes | None) -> str:
    return NULL_LINE if data is None else _h(data)


def signed_header_lines(headers: Iterable[tuple[str, bytes | None]], signature_header: str) -> list[str]:
    """The header lines of the canonical string, in canonical order (see the module docstring)."""
    lines = [(name.encode("utf-8").hex(), NULL_HEADER_VALUE if value is None else _h(value))
             for name, value in headers if name != signature_header]
    # sorted() is stable: repeated names keep their record order.
    return [f"{n} {v}" for n, v in sorted(lines, key=lambda line: line[0])]


def canonical_string(*, producer: str, topic: str, timestamp: int, key: bytes | None, value: bytes | None,
                     headers: Sequence[tuple[str, bytes | None]], signature_header: str) -> bytes:
    """The exact bytes a producer signs; documented above so producers in any language can match it."""
    return "\n".join(
        (SCHEME, producer, topic, str(timestamp), _h_or_null(key), _h_or_null(value),
         *signed_header_lines(headers, signature_header))
    ).encode("utf-8")


def sign_record(secret: bytes, *, producer: str, topic: str, timestamp: int, key: bytes | None,
                value: bytes | None, headers: Sequence[tuple[str, bytes | None]], signature_header: str) -> str:
    """The signature header value a producer sends: `v1=<hex>`.

    `headers` are the record's headers as they will be produced (with or without the signature
    header: it is never signed); `timestamp` the CreateTime (ms) the record is produced with.
    """
    canonical = canonical_string(producer=producer, topic=topic, timestamp=timestamp, key=key, value=value,
                                 headers=headers, signature_header=signature_header)
    return f"{SCHEME}={hmac.new(secret, canonical, hashlib.sha256).hexdigest()}"


def verify_record(secrets: Sequence[bytes], signature: str, *, producer: str, topic: str, timestamp: int,
                  key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]],
                  signature_header: str) -> bool:
    """True when `signature` is this record's signature with any of `secrets` (constant-time compare).

    Several secrets: the producer's current key and, during a rotation, its previous one.
    """
    scheme, _, _ = signature.partition("=")
    if scheme != SCHEME:
        return False
    canonical = canonical_string(producer=producer, topic=topic, timestamp=timestamp, key=key, value=value,
                                 headers=headers, signature_header=signature_header)
    given = signature.encode("ascii", "replace")
    return any(hmac.compare_digest(f"{SCHEME}={hmac.new(s, canonical, hashlib.sha256).hexdigest()}".encode("ascii"),
                                   given) for s in secrets)
