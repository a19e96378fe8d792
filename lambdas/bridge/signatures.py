"""Producer signatures: how the bridge knows which service wrote a record to a shared topic.

Several services may write records that end up in one queue. Kafka does not tell a consumer who
produced a record, so a producer that must be trusted signs each record with its own HMAC key
(one Secrets Manager secret per producer, readable only by that producer's role and the bridge)
and sends two headers:

    x-bridge-producer:  <producer name>
    x-bridge-signature: v1=<hex HMAC-SHA256(key, canonical)>

    canonical = "v1\\n" + producer + "\\n" + topic + "\\n" + hex(sha256(key bytes)) + "\\n"
                + hex(sha256(value bytes))

An absent key or value hashes as the empty byte string. The topic is signed so that a record
cannot be copied onto another topic; the producer name so that one producer's key cannot vouch
for another. Header names are configurable (settings.producer_header, settings.signature_header).
"""

from __future__ import annotations

import hashlib
import hmac

SCHEME = "v1"


def canonical_string(producer: str, topic: str, key: bytes | None, value: bytes | None) -> bytes:
    """The exact bytes a producer signs; documented above so producers in any language can match it."""
    return "\n".join(
        (
            SCHEME,
            producer,
            topic,
            hashlib.sha256(key or b"").hexdigest(),
            hashlib.sha256(value or b"").hexdigest(),
        )
    ).encode("utf-8")


def sign_record(secret: bytes, producer: str, topic: str, key: bytes | None, value: bytes | None) -> str:
    """The signature header value a producer sends: `v1=<hex>`."""
    mac = hmac.new(secret, canonical_string(producer, topic, key, value), hashlib.sha256).hexdigest()
    return f"{SCHEME}={mac}"


def verify_record(
    secret: bytes, signature: str, producer: str, topic: str, key: bytes | None, value: bytes | None
) -> bool:
    """True when `signature` is this producer's signature of this record (constant-time compare)."""
    scheme, _, _ = signature.partition("=")
    if scheme != SCHEME:
        return False
    expected = sign_record(secret, producer, topic, key, value)
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii", "replace"))
