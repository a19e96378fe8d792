"""SQS adapter: one `SendMessageBatch` per call, entries mapped back to typed failures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from bridge.adapters import direct
from bridge.adapters.batching import batch_entries, batch_outcome
from bridge.adapters.errors import call_error
from bridge.adapters.multiplexing import BatchInFlight, start_batch
from bridge.delivery import BatchOutcome, Target
from bridge.envelope import OutgoingMessage

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


class SqsBatchSender:
    """`BatchSender` for SQS queues (destinations and the bridge DLQ)."""

    def __init__(self, client: SQSClient) -> None:
        self._client = client
        # on the wire directly when clients.sqs_client set that up (bridge.adapters.direct)
        self._send = direct.batch_call(client, "SendMessageBatch")
        self._direct = self._send if isinstance(self._send, direct.DirectBatchCall) else None

    @property
    def multiplexed(self) -> bool:
        """Whether `start` can leave requests in flight (the client is on the direct path, or may get there)."""
        return self._direct is not None and self._direct.multiplexable

    @property
    def ready(self) -> bool:
        """Whether `start` would leave the request in flight without waiting (`DirectBatchCall.ready`)."""
        return self._direct is not None and self._direct.ready

    def start(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchInFlight | None:
        """SendMessageBatch left in flight (bridge.adapters.multiplexing), or None: `send_batch` sends it."""
        return start_batch(self._direct, len(messages), QueueUrl=target.address,
                           Entries=batch_entries(messages, "MessageBody"))

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        """SendMessageBatch; entry Ids are the positions in `messages`."""
        entries: list[Any] = batch_entries(messages, "MessageBody")
        try:
            response = self._send(QueueUrl=target.address, Entries=entries)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise call_error(exc) from exc
        return batch_outcome(response, len(entries))
