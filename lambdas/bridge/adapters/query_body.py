"""The query protocol's form body (SNS), url-encoded once and by a table instead of twice by urllib.

botocore's query serializer leaves the body as a dict of form fields, and `AWSRequest` url-encodes that
dict every time the body is read: once to sign it (the SigV4 payload hash) and once more to send it.
For a PublishBatch of ten 1 KiB messages with three attributes each that was about half of the
client's CPU per request, and what kept the bridge CPU-bound on SNS (issue 10). `encode_form_body`,
registered on `before-call.sns` (bridge.adapters.clients), replaces the dict by the string botocore
would have produced, so it is encoded once, by `str.translate` instead of `urllib.parse.quote_plus`'s loop over bytes.

The output is byte for byte what `AWSRequest._prepare_body` produces (`urlencode` of the UTF-8 items,
`quote_plus` with no safe characters); tests/unit/test_query_body.py compares the two over generated
requests. Anything else (a body that is not a dict of strings) is left to botocore unchanged.
"""

from __future__ import annotations

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
