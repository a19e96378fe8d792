"""SQS adapter: one `SendMessageBatch` per call, entries mapped back to typed failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from bridge.adapters.batching import batch_entries
from bridge.adapters.multiplexing import BatchInFlight, DirectBatchSender
from bridge.delivery import BatchOutcome, Target
from bridge.envelope import OutgoingMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class SqsBatchSender(DirectBatchSender):
    """`BatchSender` for SQS queues (destinations and the bridge DLQ)."""

    def __init__(self, client: SQSClient) -> None:
        super().__init__(client, "SendMessageBatch")

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchInFlight | None:
        """SendMessageBatch left in flight (bridge.adapters.multiplexing), or None: `send_batch` sends it."""
        return self._start(len(messages), QueueUrl=target.address, Entries=batch_entries(messages, "MessageBody"))

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """SendMessageBatch; entry Ids are the positions in `messages`."""
        return self._sent(len(messages), QueueUrl=target.address, Entries=batch_entries(messages, "MessageBody"))
