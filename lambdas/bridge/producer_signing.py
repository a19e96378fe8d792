"""What a producer calls to sign a record for the bridge: headers to send and the timestamp to send.

The scheme is specified in `bridge.signatures`; this is the one call a Python producer needs, and it
depends on nothing but the standard library and that module (copy both into a service that cannot
install this package). With confluent-kafka:

    from bridge.producer_signing import signed_headers

    headers, timestamp = signed_headers(secret, producer="payment-service", topic="payments",
                                        key=b"acct-1", value=payload, headers=[("event-type", b"PaymentCaptured")])
    kafka_producer.produce("payments", value=payload, key=b"acct-1", headers=headers, timestamp=timestamp)

`secret` is the UTF-8 bytes of the producer's Secrets Manager secret (SecretString). The record must
be produced with exactly these headers, key, value and timestamp (CreateTime): the signature covers
them all. `bridge sign` on the command line does the same for records in a file.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

from bridge.config import BridgeSettings
from bridge.signatures import sign_record

Header = tuple[str, bytes | None]
_DEFAULTS = BridgeSettings()  # the header names a config uses unless settings.*_header say otherwise
DEFAULT_PRODUCER_HEADER = _DEFAULTS.producer_header
DEFAULT_SIGNATURE_HEADER = _DEFAULTS.signature_header
DEFAULT_MESSAGE_ID_HEADER = _DEFAULTS.message_id_header


def signed_headers(secret: bytes, *, producer: str, topic: str, key: bytes | None, value: bytes | None,
                   headers: Sequence[Header] = (), timestamp_ms: int | None = None,
                   producer_header: str = DEFAULT_PRODUCER_HEADER,
                   signature_header: str = DEFAULT_SIGNATURE_HEADER,
                   message_id_header: str = DEFAULT_MESSAGE_ID_HEADER,
                   message_id: str | None = None) -> tuple[list[Header], int]:
    """`headers` plus the message id, producer and signature headers, and the timestamp (ms) they were
    signed with.

    A producer header already in `headers` must name `producer`; a signature header already there
    is replaced (it is never signed). A message id header already there is kept; otherwise
    `message_id` (default: a new random UUID) is added: every signed record needs a unique one.
    `timestamp_ms` defaults to now.
    """
    timestamp = time.time_ns() // 1_000_000 if timestamp_ms is None else timestamp_ms
    if timestamp < 0:
        raise ValueError(f"timestamp_ms must be a non-negative Kafka timestamp in milliseconds; got {timestamp}")
    out = [(n, v) for n, v in headers if n != signature_header]
    if all(n != message_id_header for n, _ in out):
        out.append((message_id_header, (message_id or uuid.uuid4().hex).encode("ascii")))
    named = [v for n, v in out if n == producer_header]
    if not named:
        out.append((producer_header, producer.encode("utf-8")))
    elif named[-1] != producer.encode("utf-8"):
        raise ValueError(f"header {producer_header} says {named[-1]!r}, but the record is signed as {producer!r}")
    signature = sign_record(secret, producer=producer, topic=topic, timestamp=timestamp, key=key, value=value,
                            headers=out, signature_header=signature_header)
    out.append((signature_header, signature.encode("ascii")))
    return out, timestamp
