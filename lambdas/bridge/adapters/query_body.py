"""The query protocol's form body (SNS): PublishBatch serialised straight to its url-encoded form,
every other body url-encoded once instead of twice.

botocore's query serializer walks the input shape into a dict of form fields, and `AWSRequest`
url-encodes that dict every time the body is read: once to sign it (the SigV4 payload hash) and once
more to send it. For a PublishBatch of ten 1 KiB messages with three attributes each that was about
two thirds of the client's CPU per request, and what kept the bridge CPU-bound on SNS (issue 10).

- `PublishBatchSerializer` wraps the SNS client's serializer: a PublishBatch request of the shape the
  bridge sends (`publish_batch_form`) becomes its encoded form in one pass, with the field names
  written once; any other request or entry goes through botocore's serializer unchanged. It is only
  installed when the client's service model has exactly the shapes it assumes (`install`).
- `encode_form_body`, on `before-call.sns`, replaces any dict body still left (Publish, the fallback)
  by the string `AWSRequest` would have produced, so it is encoded once.

Both produce byte for byte what botocore sends (`urlencode` of the UTF-8 items, `quote_plus` with no
safe characters, here by `str.translate`): tests/unit/test_query_body.py compares the bodies over
generated requests.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import Any

# What `urllib.parse.quote_plus(b, safe="")` leaves alone; space becomes '+', every other byte %XX.
_ALWAYS_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_ALL_SAFE = re.compile(r"[A-Za-z0-9_.~-]*")  # field names, ids, data types: returned as they are
# ASCII text goes through str.translate with one entry per code point (in C, no bytes object)...
_ASCII = [chr(b) if b in _ALWAYS_SAFE else "+" if b == 0x20 else f"%{b:02X}" for b in range(128)]


class _Utf8Quoted(dict[int, str]):
    """...and any other text through this table, which learns each code point's %XX-encoded UTF-8 once.
    A lone surrogate has no UTF-8 form: UnicodeEncodeError, as `str.encode` raises on botocore's path."""

    def __missing__(self, code_point: int) -> str:
        quoted = "".join(f"%{b:02X}" for b in chr(code_point).encode("utf-8"))
        if len(self) < 4096:  # bounded: a batch of rare characters must not grow it without end
            self[code_point] = quoted
        return quoted


_UNICODE = _Utf8Quoted(enumerate(_ASCII))


def quote_plus(text: str) -> str:
    """`urllib.parse.quote_plus(text.encode("utf-8"), safe="")`, without the bytes and the per-byte loop."""
    if _ALL_SAFE.fullmatch(text):
        return text
    return text.translate(_ASCII if text.isascii() else _UNICODE)


def form_body(fields: Mapping[str, str]) -> str:
    """The url-encoded form `AWSRequest` would send for `fields` (all keys and values str)."""
    return "&".join([f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields.items()])


def encode_form_body(params: dict[str, Any], **_: Any) -> None:
    """`before-call` handler: encode the request's form body once, here, if it is a dict of strings."""
    body = params.get("body")
    if not isinstance(body, dict):
        return
    for k, v in body.items():
        if not (isinstance(k, str) and isinstance(v, str)):
            return  # anything else (never seen from the query serializer for SNS): botocore's own path
    try:
        params["body"] = form_body(body)
    except UnicodeEncodeError:
        return  # a lone surrogate: botocore raises the same error on its own path, where it always did


# The PublishBatch input `publish_batch_form` writes: entry members that are strings, and the
# attribute value members. `install` checks the service model still says exactly this.
_ENTRY_STRINGS = frozenset({"Id", "Message", "Subject", "MessageStructure", "MessageDeduplicationId",
                            "MessageGroupId"})
_EXPECTED_ENTRY = {**dict.fromkeys(_ENTRY_STRINGS, "string"), "MessageAttributes": "map"}
_EXPECTED_VALUE = {"DataType": "string", "StringValue": "string", "BinaryValue": "blob"}
_ENTRIES = "PublishBatchRequestEntries"


class _OtherShape(Exception):
    """The request is not of the shape `publish_batch_form` writes."""


def publish_batch_form(parameters: Mapping[str, Any], version: str) -> str | None:
    """The url-encoded body of PublishBatch `parameters` as botocore would send it, or None when they
    are not of the shape written here (then botocore serialises them)."""
    if list(parameters) != ["TopicArn", _ENTRIES]:
        return None
    topic, entries = parameters["TopicArn"], parameters[_ENTRIES]
    if not (isinstance(topic, str) and isinstance(entries, list) and entries):
        return None
    parts = [f"Action=PublishBatch&Version={quote_plus(version)}&TopicArn={quote_plus(topic)}"]
    try:
        for i, entry in enumerate(entries, 1):
            _add_entry(parts, f"&{_ENTRIES}.member.{i}.", entry)
    except _OtherShape:
        return None
    return "".join(parts)


def _add_entry(parts: list[str], prefix: str, entry: Any) -> None:
    if not isinstance(entry, dict):
        raise _OtherShape
    for key, value in entry.items():
        if key in _ENTRY_STRINGS and isinstance(value, str):
            parts.append(f"{prefix}{key}={quote_plus(value)}")
        elif key == "MessageAttributes" and isinstance(value, dict):
            for j, (name, attribute) in enumerate(value.items(), 1):
                if not (isinstance(name, str) and isinstance(attribute, dict)):
                    raise _OtherShape
                field = f"{prefix}MessageAttributes.entry.{j}."
                parts.append(f"{field}Name={quote_plus(name)}")
                for member, v in attribute.items():
                    if member in ("DataType", "StringValue") and isinstance(v, str):
                        parts.append(f"{field}Value.{member}={quote_plus(v)}")
                    elif member == "BinaryValue" and isinstance(v, bytes):
                        parts.append(f"{field}Value.BinaryValue={quote_plus(base64.b64encode(v).decode('ascii'))}")
                    else:
                        raise _OtherShape
        else:
            raise _OtherShape


class PublishBatchSerializer:
    """A client serializer: PublishBatch by `publish_batch_form` when it can, everything else (and the
    request's method, path and headers) by botocore's own serializer."""

    def __init__(self, stock: Any) -> None:
        self._stock = stock

    def serialize_to_request(self, parameters: Any, operation_model: Any) -> Any:
        if operation_model.name == "PublishBatch" and isinstance(parameters, dict):
            try:
                body = publish_batch_form(parameters, operation_model.metadata["apiVersion"])
            except UnicodeEncodeError:  # a lone surrogate: botocore raises it on its own path, as before
                body = None
            if body is not None:
                request = self._stock.serialize_to_request({"TopicArn": parameters["TopicArn"]}, operation_model)
                if isinstance(request, dict) and isinstance(request.get("body"), dict):
                    request["body"] = body
                    return request
        return self._stock.serialize_to_request(parameters, operation_model)


def _model_is_as_expected(client: Any) -> bool:
    """Whether the client's PublishBatch input has exactly the shapes `publish_batch_form` writes."""
    try:
        model = client.meta.service_model
        shape = model.operation_model("PublishBatch").input_shape
        entries = shape.members[_ENTRIES]
        entry = entries.member
        attributes = entry.members["MessageAttributes"]
        value = attributes.value
        return bool(
            model.protocol == "query" and list(shape.members) == ["TopicArn", _ENTRIES]
            and not entries.serialization and not entry.serialization
            and {k: m.type_name for k, m in entry.members.items()} == _EXPECTED_ENTRY
            and all(not m.serialization for m in entry.members.values())
            and not attributes.serialization.get("flattened")
            and attributes.key.serialization.get("name") == "Name"
            and attributes.value.serialization.get("name") == "Value"
            and {k: m.type_name for k, m in value.members.items()} == _EXPECTED_VALUE
            and all(not m.serialization for m in value.members.values()))
    except Exception:  # any surprise in the model (a missing operation...): botocore's path
        return False


def install(client: Any) -> bool:
    """Serialise the client's PublishBatch requests with `PublishBatchSerializer` (and encode any other
    form body once, `encode_form_body`). Nothing changes when the client is not as expected: another
    protocol or shapes, or no serializer where botocore keeps it. True when the serializer was installed."""
    client.meta.events.register("before-call.sns", encode_form_body, unique_id="bridge-encode-form-body")
    stock = getattr(client, "_serializer", None)  # botocore's attribute; absent or different: stock path
    if not hasattr(stock, "serialize_to_request") or not _model_is_as_expected(client):
        return False
    client._serializer = PublishBatchSerializer(stock)  # guarded above; the tests compare the bytes
    return True
