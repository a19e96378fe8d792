"""SNS adapter: one `PublishBatch` per call, entries mapped back to typed failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from bridge.adapters.errors import call_error
from bridge.delivery import BatchOutcome, EntryFailure, Target
from bridge.envelope import ATTRIBUTE_TYPE, OutgoingMessage

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class SnsBatchSender:
    """`BatchSender` for SNS topics (destinations and the audit topic)."""

    def __init__(self, client: SNSClient) -> None:
        self._client = client

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """PublishBatch; entry Ids are the positions in `messages`."""
        entries: list[Any] = []
        for i, m in enumerate(messages):
            entry: dict[str, Any] = {"Id": str(i), "Message": m.body}
            if m.attributes:
                entry["MessageAttributes"] = {
                    name: {"DataType": ATTRIBUTE_TYPE, "StringValue": value} for name, value in m.attributes
                }
            if m.group_id is not None:
                entry["MessageGroupId"] = m.group_id
            if m.dedup_id is not None:
                entry["MessageDeduplicationId"] = m.dedup_id
            entries.append(entry)
        try:
            response = self._client.publish_batch(TopicArn=target.address, PublishBatchRequestEntries=entries)
        except (ClientError, BotoCoreError) as exc:
            raise call_error(exc) from exc
        return BatchOutcome(tuple(
            EntryFailure(int(f["Id"]), f["Code"], f.get("Message", ""), bool(f["SenderFault"]))
            for f in response.get("Failed", [])
        ))
