"""DynamoDB adapter: the checkpoint table (bridge.checkpoints), one item per progress entry.

Item: `shard` (partition key), `entry` (sort key: kind, destination and a random suffix, so
concurrent writers never overwrite each other), `tokens` (the records, space-separated) and
`expires_at` (the table's TTL attribute). Writes are BatchWriteItem calls of up to 25 items; reads
are one strongly consistent Query per shard (a write just before a crash must be seen by the retry).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from bridge.checkpoints import CheckpointUnavailable, Kind, ProgressEntry

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# The table's attribute names, shared with the CDK construct and the local stack.
PARTITION_KEY = "shard"
SORT_KEY = "entry"
TTL_ATTRIBUTE = "expires_at"
# `bridge redrive`'s ledger (bridge_local.redrive) shares the table under partition keys of its own. They can
# never be a progress shard: those are `{topic}-{partition}/...` (a Kafka topic name has no "/", and a
# partition is a number) or `outage/...`. The stack grants the operators' roles these keys and no others.
REDRIVE_LEDGER_DOCUMENT_PREFIX = "redriven/"
REDRIVE_LEDGER_RECORD_PREFIX = "redriven-record/"
REDRIVE_LEDGER_PREFIXES = (REDRIVE_LEDGER_DOCUMENT_PREFIX, REDRIVE_LEDGER_RECORD_PREFIX)
MAX_BATCH_WRITE_ITEMS = 25  # BatchWriteItem
UNPROCESSED_RETRIES = 3  # resubmissions of UnprocessedItems before the write counts as failed
UNPROCESSED_BACKOFF_SECONDS = 0.05
_KIND_CODES: dict[Kind, str] = {"delivered": "d", "parked": "p", "outage": "o"}
_KINDS: dict[str, Kind] = {v: k for k, v in _KIND_CODES.items()}


class DynamoDbCheckpointStore:
    """`CheckpointStore` over one table; items expire `ttl_seconds` after they are written."""

    def __init__(self, client: DynamoDBClient, table: str, ttl_seconds: int, *,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep) -> None:
        self._client = client
        self._table = table
        self._ttl_seconds = ttl_seconds
        self._clock = clock
        self._sleep = sleep

    def read(self, shards: Sequence[str]) -> list[ProgressEntry]:
        """Every entry of these shards (one paginated Query each)."""
        entries: list[ProgressEntry] = []
        try:
            for shard in shards:
                kwargs: dict[str, Any] = {
                    "TableName": self._table, "ConsistentRead": True,
                    "KeyConditionExpression": "#s = :s", "ExpressionAttributeNames": {"#s": PARTITION_KEY},
                    "ExpressionAttributeValues": {":s": {"S": shard}},
                }
                while True:
                    page = self._client.query(**kwargs)
                    entries.extend(_entry(item) for item in page.get("Items", []))
                    if "LastEvaluatedKey" not in page:
                        break
                    kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        except (ClientError, BotoCoreError) as exc:
            raise CheckpointUnavailable(f"{self._table}: {exc}") from exc
        return entries

    def write(self, entries: Sequence[ProgressEntry]) -> None:
        """BatchWriteItem in chunks of 25; unprocessed items are resubmitted a few times."""
        expires_at = str(int(self._clock()) + self._ttl_seconds)
        requests: list[Any] = [{"PutRequest": {"Item": {
            PARTITION_KEY: {"S": e.shard},
            SORT_KEY: {"S": f"{_KIND_CODES[e.kind]}#{e.destination}#{uuid.uuid4().hex[:16]}"},
            "tokens": {"S": " ".join(e.tokens)},
            TTL_ATTRIBUTE: {"N": expires_at},
        }}} for e in entries]
        try:
            for i in range(0, len(requests), MAX_BATCH_WRITE_ITEMS):
                pending: Any = {self._table: requests[i:i + MAX_BATCH_WRITE_ITEMS]}
                for attempt in range(UNPROCESSED_RETRIES + 1):
                    if attempt:
                        self._sleep(UNPROCESSED_BACKOFF_SECONDS * 2 ** (attempt - 1))
                    pending = self._client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                    if not pending:
                        break
                if pending:
                    raise CheckpointUnavailable(f"{self._table}: items left unprocessed (throttled)")
        except (ClientError, BotoCoreError) as exc:
            raise CheckpointUnavailable(f"{self._table}: {exc}") from exc


def _entry(item: dict[str, Any]) -> ProgressEntry:
    kind_code, destination, _ = item[SORT_KEY]["S"].split("#", 2)
    return ProgressEntry(item[PARTITION_KEY]["S"], _KINDS[kind_code], destination, tuple(item["tokens"]["S"].split()))
