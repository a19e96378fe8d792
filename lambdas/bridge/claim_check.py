"""Claim check: a message over its destination's limit goes to S3, and a pointer goes to the destination.

The pointer is what the AWS extended client libraries write (amazon-sqs-extended-client and
amazon-sns-extended-client on PyPI, and the Java libraries they follow), so a consumer using them
reads the whole message transparently:

- body: `["software.amazon.payloadoffloading.PayloadS3Pointer", {"s3BucketName": B, "s3Key": K}]`
  (JSON with the libraries' own separators);
- attribute `ExtendedPayloadSize` (DataType Number): the stored body's size in UTF-8 bytes;
- every other attribute of the message unchanged (correlation id, record id, producer, headers),
  and on FIFO destinations the same group and deduplication ids.

The object holds the body exactly as it would have been sent (UTF-8 text; base64 with
`content-encoding: base64` for a raw value that is not text). Its key is deterministic in the record
and destination, so a redelivered record overwrites its own object instead of leaving another one.
Consumers must not delete objects after reading (the libraries' `delete_payload_from_s3`): a topic
fans one object out to several queues, and a duplicate delivery points to the same object; the
bucket's lifecycle rule removes them (settings.claim_check_retention_days).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

from bridge.config import CLAIM_CHECK_SIZE_ATTRIBUTE
from bridge.envelope import OutgoingMessage, billed_size
from bridge.parking import ObjectStore
from bridge.records import KafkaRecord

POINTER_CLASS = "software.amazon.payloadoffloading.PayloadS3Pointer"
KEY_PREFIX = "claim-check/"
KEY_DIGEST_CHARS = 16


def claim_check_key(record: KafkaRecord, destination: str) -> str:
    """`claim-check/<destination>/<topic>/<partition>/<offset>-<digest>`: one object per record and destination.

    The digest (sha256 of the record id and destination) tells apart records that share a position,
    such as undecodable ones, and keeps keys the same when a record is delivered again.
    """
    digest = hashlib.sha256(f"{record.record_id}\0{destination}".encode()).hexdigest()[:KEY_DIGEST_CHARS]
    return f"{KEY_PREFIX}{destination}/{record.topic}/{record.partition}/{record.offset}-{digest}"


def pointer_body(bucket: str, key: str) -> str:
    """The extended client libraries' pointer, byte for byte (they use json.dumps' default separators)."""
    return json.dumps([POINTER_CLASS, {"s3BucketName": bucket, "s3Key": key}])


class ClaimCheck:
    """Stores an oversize message's body and returns the pointer message to send instead."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store

    def offload(self, message: OutgoingMessage, record: KafkaRecord) -> OutgoingMessage:
        """Write the body to S3 and return the pointer message; raises ObjectStoreError when S3 refuses."""
        body = message.body.encode("utf-8")
        uri = self._store.put(claim_check_key(record, message.destination), body)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        pointer = pointer_body(bucket, key)
        attributes = (*message.attributes, (CLAIM_CHECK_SIZE_ATTRIBUTE, str(len(body))))
        return dataclasses.replace(message, body=pointer, attributes=attributes,
                                   size=billed_size(pointer, attributes))
