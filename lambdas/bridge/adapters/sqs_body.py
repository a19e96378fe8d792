"""SendMessageBatch's JSON body (SQS), written by `json.dumps` of the request itself.

botocore's JSON serializer walks the input shape and copies every value into a new dict (a wrapper
dict per list item, an OrderedDict per structure and map) before `json.dumps`: about a quarter of the
SQS client's CPU per SendMessageBatch of ten entries with three attributes. For SQS every member the
bridge sends is a string or an integer and no member is renamed on the wire, so that walk produces a
dict equal to the request, in the same order: `json.dumps` of the request gives the same bytes
(tests/unit/test_sqs_body.py compares them over generated batches).

`SendMessageBatchSerializer` wraps the SQS client's serializer and does that for requests made only of
such values (`plain_send_message_batch`); anything else (binary attributes, system attributes, another
key order or type) goes through botocore's serializer. `install` puts it in place only when the client's
SQS model still has exactly the shapes assumed here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Entry members written as they are: strings, and DelaySeconds (an integer).
_STRING_MEMBERS = frozenset({"Id", "MessageBody", "MessageDeduplicationId", "MessageGroupId"})
_ATTRIBUTE_MEMBERS = frozenset({"DataType", "StringValue"})
_EXPECTED_ENTRY = {"Id": "string", "MessageBody": "string", "DelaySeconds": "integer", "MessageAttributes": "map",
                   "MessageSystemAttributes": "map", "MessageDeduplicationId": "string",
                   "MessageGroupId": "string"}
_EXPECTED_VALUE = {"StringValue": "string", "BinaryValue": "blob", "StringListValues": "list",
                   "BinaryListValues": "list", "DataType": "string"}


def _plain_attributes(attributes: Any) -> bool:
    if not isinstance(attributes, dict):
        return False
    for name, value in attributes.items():
        if not (isinstance(name, str) and isinstance(value, dict)):
            return False
        for member, v in value.items():
            if member not in _ATTRIBUTE_MEMBERS or not isinstance(v, str):
                return False
    return True


def _plain_entry(entry: Any) -> bool:
    if not isinstance(entry, dict):
        return False
    for key, value in entry.items():
        if key in _STRING_MEMBERS:
            if not isinstance(value, str):
                return False
        elif key == "DelaySeconds":
            if type(value) is not int:  # not bool: botocore writes what it is given, keep to the plain case
                return False
        elif key != "MessageAttributes" or not _plain_attributes(value):
            return False
    return True


def plain_send_message_batch(parameters: Mapping[str, Any]) -> bool:
    """Whether botocore's serializer would write `parameters` as they are (strings and integers only,
    in the order given), so `json.dumps(parameters)` is its body."""
    if list(parameters) != ["QueueUrl", "Entries"]:
        return False
    url, entries = parameters["QueueUrl"], parameters["Entries"]
    return (isinstance(url, str) and isinstance(entries, list) and bool(entries)
            and all(_plain_entry(e) for e in entries))


class SendMessageBatchSerializer:
    """A client serializer: a plain SendMessageBatch (`plain_send_message_batch`) by `json.dumps`, and
    everything else (and the request's method, path and headers) by botocore's own serializer."""

    def __init__(self, stock: Any) -> None:
        self._stock = stock

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        if (operation_model.name == "SendMessageBatch" and isinstance(parameters, dict)
                and plain_send_message_batch(parameters)):
            request = self._stock.serialize_to_request({"QueueUrl": parameters["QueueUrl"]}, operation_model)
            if isinstance(request, dict) and isinstance(request.get("body"), bytes):
                request["body"] = json.dumps(parameters).encode("utf-8")
                return request
        return self._stock.serialize_to_request(parameters, operation_model)


def _model_is_as_expected(client: Any) -> bool:
    """Whether the client's SendMessageBatch input has exactly the shapes `plain_send_message_batch`
    assumes, with no member renamed on the wire."""
    try:
        model = client.meta.service_model
        shape = model.operation_model("SendMessageBatch").input_shape
        entry = shape.members["Entries"].member
        attributes = entry.members["MessageAttributes"]
        value = attributes.value
        return bool(
            model.protocol == "json" and list(shape.members) == ["QueueUrl", "Entries"]
            and shape.members["QueueUrl"].type_name == "string" and shape.members["Entries"].type_name == "list"
            and {k: m.type_name for k, m in entry.members.items()} == _EXPECTED_ENTRY
            and {k: m.type_name for k, m in value.members.items()} == _EXPECTED_VALUE
            and attributes.key.type_name == "string"
            and not any("name" in m.serialization
                        for m in (*shape.members.values(), *entry.members.values(), *value.members.values())))
    except Exception:  # any surprise in the model (a missing operation...): botocore's path
        return False


def install(client: Any) -> bool:
    """Serialise the client's plain SendMessageBatch requests with `SendMessageBatchSerializer`; nothing
    changes when the client is not as expected (another protocol or shapes, or no serializer where
    botocore keeps it). True when it was installed."""
    stock = getattr(client, "_serializer", None)  # botocore's attribute; absent or different: stock path
    if not hasattr(stock, "serialize_to_request") or not _model_is_as_expected(client):
        return False
    client._serializer = SendMessageBatchSerializer(stock)  # guarded above; the tests compare the bytes
    return True
