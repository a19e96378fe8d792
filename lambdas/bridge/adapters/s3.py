"""S3 adapter: the parking bucket for parked records too large for the bridge DLQ."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from bridge.parking import ObjectStoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ObjectStore:
    """`ObjectStore` over one bucket (botocore's standard retries cover transient errors)."""

    def __init__(self, client: S3Client, bucket: str) -> None:
        self._client = client
        self._bucket = bucket

    def put(self, key: str, body: bytes) -> str:
        """PutObject; return `s3://bucket/key`."""
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType="application/json")
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"s3://{self._bucket}/{key}: {exc}") from exc
        return f"s3://{self._bucket}/{key}"
