"""What SendMessageBatch (SQS) and PublishBatch (SNS) share: request entries and the `Failed` list.

The two APIs name the body differently (`MessageBody` / `Message`) and otherwise agree: entry `Id`,
`MessageAttributes`, `MessageGroupId` and `MessageDeduplicationId` in the request, and
`Failed: [{Id, Code, Message, SenderFault}]` in the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


# An entry the answer names neither Successful nor Failed (retried: SQS and SNS answer for every entry).
NOT_IN_ANSWER = "NotInAnswer"


def batch_outcome(response: Mapping[str, Any], count: int) -> BatchOutcome:
    """The response's `Failed` entries as typed failures, indexed by the positions `batch_entries` gave,
    and a retryable failure for each of the `count` entries it names in neither list: a 200 whose body
    is not the service's answer (cut short, or a proxy's JSON; botocore parses both to an empty result)
    must not count the batch delivered."""
    failures = [EntryFailure(int(f["Id"]), str(f["Code"]), str(f.get("Message", "")), bool(f["SenderFault"]))
                for f in response.get("Failed", [])]
    answered = {str(s.get("Id")) for s in response.get("Successful", []) if isinstance(s, Mapping)}
    answered.update(str(f.index) for f in failures)
    if len(answered) < count:
        failures += [EntryFailure(i, NOT_IN_ANSWER, "the answer names this entry neither Successful nor Failed")
                     for i in range(count) if str(i) not in answered]
    return BatchOutcome(tuple(failures))
