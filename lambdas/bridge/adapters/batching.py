"""What SendMessageBatch (SQS) and PublishBatch (SNS) share: request entries and the `Failed` list.

The two APIs name the body differently (`MessageBody` / `Message`) and otherwise agree: entry `Id`,
`MessageAttributes`, `MessageGroupId` and `MessageDeduplicationId` in the request, and
`Failed: [{Id, Code, Message, SenderFault}]` in the response.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from bridge.adapters.errors import UNREADABLE_ANSWER
from bridge.config import MAX_BATCH_ENTRIES
from bridge.delivery import BatchOutcome, EntryFailure, SendCallError
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

# The entry Ids of a request of n entries (`batch_entries`: positions), by Id.
_SENT_IDS = tuple({str(i): i for i in range(n)} for n in range(MAX_BATCH_ENTRIES + 1))


def batch_outcome(response: Mapping[str, Any], count: int) -> BatchOutcome:
    """The response's `Failed` entries as typed failures, indexed by the positions `batch_entries` gave,
    and a retryable failure for each of the `count` entries it names in neither list: a 200 whose body
    is not the service's answer (cut short, or a proxy's JSON; botocore parses both to an empty result)
    must not count the batch delivered.

    An answer that is not made of the service's entries (a list that is not a list of objects, an Id the
    request did not send, a Code that is not a string, a SenderFault that is not a boolean) cannot be
    trusted in any part: the whole call fails with a retryable `UnreadableAnswer`, never a delivery."""
    sent = _SENT_IDS[count] if count < len(_SENT_IDS) else {str(i): i for i in range(count)}
    try:
        failures = [EntryFailure(sent[f["Id"]], f["Code"], str(f.get("Message", "")), f["SenderFault"])
                    for f in response.get("Failed") or ()]
    except (AttributeError, LookupError, TypeError) as exc:
        raise _unreadable("Failed is not a list of entries with an Id the request sent, a Code and a SenderFault",
                          exc) from exc
    try:
        answered = {s["Id"] for s in response.get("Successful") or ()}
    except (LookupError, TypeError) as exc:
        raise _unreadable("Successful is not a list of entries with an Id", exc) from exc
    if not answered <= sent.keys():
        raise _unreadable("Successful names an Id the request did not send")
    for f in failures:
        if type(f.code) is not str or type(f.sender_fault) is not bool:
            raise _unreadable("a Failed entry's Code is not a string or its SenderFault not a boolean")
    if len(answered) < count:
        answered.update(str(f.index) for f in failures)
        failures += [EntryFailure(i, NOT_IN_ANSWER, "the answer names this entry neither Successful nor Failed")
                     for i in range(count) if str(i) not in answered]
    return BatchOutcome(tuple(failures))


def _unreadable(what: str, exc: Exception | None = None) -> SendCallError:
    cause = f" ({type(exc).__name__})" if exc is not None else ""
    return SendCallError(UNREADABLE_ANSWER, f"the batch's answer is not the service's: {what}{cause}", retryable=True)
