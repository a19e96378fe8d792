"""What SendMessageBatch (SQS) and PublishBatch (SNS) share: request entries and the `Failed` list.

The two APIs name the body differently (`MessageBody` / `Message`) and otherwise agree: entry `Id`,
`MessageAttributes`, `MessageGroupId` and `MessageDeduplicationId` in the request, and
`Failed: [{Id, Code, Message, SenderFault}]` in the response.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from bridge.delivery import BatchOutcome, EntryFailure
from bridge.envelope import OutgoingMessage, attribute_type


def batch_entries(messages: Sequence[OutgoingMessage], body_field: Literal["MessageBody", "Message"],
                  ) -> list[dict[str, Any]]:
    """Request entries whose `Id` is the message's position in `messages`; `body_field` names the body."""
    entries: list[dict[str, Any]] = []
    for i, m in enumerate(messages):
        entry: dict[str, Any] = {"Id": str(i), body_field: m.body}
        if m.attributes:
            entry["MessageAttributes"] = {
                name: {"DataType": attribute_type(name), "StringValue": value} for name, value in m.attributes
            }
        if m.group_id is not None:
            entry["MessageGroupId"] = m.group_id
        if m.dedup_id is not None:
            entry["MessageDeduplicationId"] = m.dedup_id
        entries.append(entry)
    return entries


def batch_outcome(failed: Iterable[Mapping[str, Any]]) -> BatchOutcome:
    """The response's `Failed` entries as typed failures, indexed by the positions `batch_entries` gave."""
    return BatchOutcome(tuple(
        EntryFailure(int(f["Id"]), str(f["Code"]), str(f.get("Message", "")), bool(f["SenderFault"]))
        for f in failed
    ))
