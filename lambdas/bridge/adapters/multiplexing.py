"""Batch requests left in flight on the direct path, for a `MultiplexedRun` (bridge.delivery).

`start_batch` starts a SendMessageBatch or PublishBatch on a non-blocking connection
(`direct.DirectBatchCall.start`) and returns it as DeliveryRun's `InFlight`: the run watches its file
descriptor and calls `step` when it is ready. The answer is taken as the blocking call takes it
(`DirectBatchCall.outcome`, then `batch_outcome`), and botocore's exceptions become `SendCallError` as
the senders map them (`errors.call_error`).
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from bridge.adapters import direct
from bridge.adapters.batching import batch_outcome
from bridge.adapters.errors import call_error
from bridge.delivery import BatchOutcome


class BatchInFlight:
    """A batch request under way (DeliveryRun's `InFlight`)."""

    __slots__ = ("_call", "_count", "_exchange")

    def __init__(self, call: direct.DirectBatchCall, exchange: direct.Exchange, count: int) -> None:
        self._call, self._exchange, self._count = call, exchange, count

    @property
    def wants_write(self) -> bool:
        return self._exchange.wants_write

    @property
    def deadline(self) -> float:
        return self._exchange.deadline

    def fileno(self) -> int:
        return self._exchange.fileno()

    def step(self, expired: bool = False) -> BatchOutcome | None:
        """The outcome once the answer is whole, else None; raises SendCallError when the call failed."""
        try:
            answer = self._exchange.step(expired)
            if answer is None:
                return None
            response = self._call.outcome(answer)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise call_error(exc) from exc
        return batch_outcome(response, self._count)

    def cancel(self) -> None:
        self._exchange.cancel()


class DirectBatchSender:
    """What the SQS and SNS senders share: the batch call (on the wire directly when `clients` set the
    client up for it, bridge.adapters.direct) sent whole or left in flight, with botocore's exceptions
    mapped to `SendCallError` and the answer read by `batch_outcome` on both ways."""

    def __init__(self, client: Any, operation: str) -> None:
        self._client = client
        self._send = direct.batch_call(client, operation)
        self._direct = self._send if isinstance(self._send, direct.DirectBatchCall) else None

    @property
    def multiplexed(self) -> bool:
        """Whether `start` can leave requests in flight (the client is on the direct path, or may get there)."""
        return self._direct is not None and self._direct.multiplexable

    @property
    def ready(self) -> bool:
        """Whether `start` would leave the request in flight without waiting (`DirectBatchCall.ready`)."""
        return self._direct is not None and self._direct.ready

    def _start(self, count: int, **parameters: Any) -> BatchInFlight | None:
        return start_batch(self._direct, count, **parameters)

    def _sent(self, count: int, **parameters: Any) -> BatchOutcome:
        try:
            response = self._send(**parameters)
        except (ClientError, BotoCoreError, ResponseParserError) as exc:
            raise call_error(exc) from exc
        return batch_outcome(response, count)


def start_batch(call: direct.DirectBatchCall | None, count: int, **parameters: Any) -> BatchInFlight | None:
    """The request of `count` entries under way, or None when it must be sent through `call` itself
    (or botocore): no direct call, or not on the direct path for these parameters. Raises SendCallError
    when no connection could be opened."""
    if call is None:
        return None
    try:
        exchange = call.start(**parameters)
    except (ClientError, BotoCoreError, ResponseParserError) as exc:
        raise call_error(exc) from exc
    return None if exchange is None else BatchInFlight(call, exchange, count)
