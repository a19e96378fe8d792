"""The checkpoint table in the local AWS, shaped as infra/constructs/checkpoints.py creates it.

Created by `bridge up` (provisioning) whatever `settings.checkpoints` says, so switching the setting
needs no re-provisioning; the handler uses it only when the setting is on. No KMS key and no TTL
locally (the local AWS forgets everything when it stops anyway).
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError
from bridge.adapters.dynamodb import PARTITION_KEY, SORT_KEY
from bridge.config import BridgeConfig

TABLE_READY_SECONDS = 10.0


def ensure_checkpoint_table(dynamodb: Any, config: BridgeConfig) -> str:
    """Create the table unless it exists, wait until it is ACTIVE; return its name. Idempotent."""
    name = config.checkpoint_table_name
    try:
        dynamodb.create_table(
            TableName=name, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                                  {"AttributeName": SORT_KEY, "AttributeType": "S"}],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
                       {"AttributeName": SORT_KEY, "KeyType": "RANGE"}],
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    deadline = time.monotonic() + TABLE_READY_SECONDS
    while dynamodb.describe_table(TableName=name)["Table"]["TableStatus"] != "ACTIVE":
        if time.monotonic() > deadline:
            raise RuntimeError(f"checkpoint table {name} is not ACTIVE after {TABLE_READY_SECONDS:.0f} s")
        time.sleep(0.1)  # polling a table we just created, bounded by the deadline
    return name
