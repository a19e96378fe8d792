"""SNS adapter: one `PublishBatch` per call, entries mapped back to typed failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.adapters.batching import batch_entries
from bridge.adapters.multiplexing import BatchInFlight, DirectBatchSender
from bridge.delivery import BatchOutcome, Target
from bridge.envelope import OutgoingMessage

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class SnsBatchSender(DirectBatchSender):
    """`BatchSender` for SNS topics (destinations and the audit topic)."""

    def __init__(self, client: SNSClient) -> None:
        super().__init__(client, "PublishBatch")

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchInFlight | None:
        """PublishBatch left in flight (bridge.adapters.multiplexing), or None: `send_batch` sends it."""
        return self._start(len(messages), TopicArn=target.address,
                           PublishBatchRequestEntries=batch_entries(messages, "Message"))

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """PublishBatch; entry Ids are the positions in `messages`."""
        return self._sent(len(messages), TopicArn=target.address,
                          PublishBatchRequestEntries=batch_entries(messages, "Message"))
