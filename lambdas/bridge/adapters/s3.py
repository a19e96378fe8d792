"""S3 adapter: the parking bucket for parked records too large for the bridge DLQ."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from bridge.parking import ObjectStoreError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class S3ObjectStore:
    """`ObjectStore` over one bucket (botocore's standard retries cover transient errors).

    `content_type` None leaves S3's default, as the extended client libraries do for claim-check objects.
    """

    def __init__(self, client: S3Client, bucket: str, content_type: str | None = "application/json") -> None:
        self._client = client
        self._bucket = bucket
        self._content_type = content_type

    def put(self, key: str, body: bytes) -> str:
        """PutObject; return `s3://bucket/key`."""
        try:
            if self._content_type:
                self._client.put_object(Bucket=self._bucket, Key=key, Body=body, ContentType=self._content_type)
            else:
                self._client.put_object(Bucket=self._bucket, Key=key, Body=body)
        except (ClientError, BotoCoreError) as exc:
            raise ObjectStoreError(f"s3://{self._bucket}/{key}: {exc}") from exc
        return f"s3://{self._bucket}/{key}"
