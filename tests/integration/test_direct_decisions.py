"""Operators can see whether a send client writes its batches directly: one log line per client.

`direct sends on` (with the client's service and endpoint host) when the direct call adopts its
template on the client's second batch, or `direct sends off` with the reason it stays on botocore:
`settings` (BRIDGE_DIRECT_SENDS=off), `client model`, `botocore internals`, `hooked client`, `proxy`,
`unknown header`, `signature mismatch`. Each is provoked for real against a loopback endpoint.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import botocore.endpoint
import pytest
from bridge.adapters import clients, direct, sqs_body
from bridge.adapters.sns import SnsBatchSender
from bridge.adapters.sqs import SqsBatchSender
from bridge.delivery import Target
from bridge.envelope import OutgoingMessage

from tests.helpers import BatchEndpoint, make_settings

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def decisions(self) -> list[tuple[str, str, str, str | None]]:
        return [(r.getMessage(), r.__dict__["client"], r.__dict__["endpoint_host"], r.__dict__.get("reason"))
                for r in self.records]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """The direct-send decision lines (on the logger itself: the handler's Powertools logger does not
    propagate to the root, where caplog listens)."""
    handler, logger = Lines(), direct.decisions
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture
def endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchEndpoint]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = BatchEndpoint()
    yield server
    server.close()


def _messages() -> list[OutgoingMessage]:
    return [OutgoingMessage(record_id=f"orders-0-{i}", destination="orders", body=f"body {i}",
                            attributes=(("correlation-id", f"c-{i}"),), correlation_id=f"c-{i}", size=20)
            for i in range(10)]


def _send_three(client: Any, service: str = "sqs") -> None:
    """Three batches through the bridge's sender: the second is where the direct call decides."""
    if service == "sqs":
        sender: Any = SqsBatchSender(client)
        target = Target("orders", "sqs", QUEUE, 262_144)
    else:
        sender = SnsBatchSender(client)
        target = Target("orders", "sns", TOPIC, 262_144)
    for _ in range(3):
        assert sender.send_batch(target, _messages()).failures == ()


@pytest.mark.parametrize("service", ["sqs", "sns"])
def test_a_client_that_sends_directly_says_so_once(endpoint: BatchEndpoint, lines: Lines, service: str) -> None:
    # given: the bridge's send client
    make = clients.sqs_client if service == "sqs" else clients.sns_client
    client = make(make_settings(endpoint_url=endpoint.url))
    # when: it sends three batches
    _send_three(client, service)
    # then: one line, on its second batch, naming the service and the endpoint's host
    assert lines.decisions() == [("direct sends on", service, "127.0.0.1", None)]


def test_the_line_is_json_with_the_reason_through_the_handlers_logger(endpoint: BatchEndpoint, lines: Lines) -> None:
    # given: the function's Powertools logger, whose child the decision logger is
    from bridge.handler import logger  # noqa: PLC0415 - Powertools only for this test
    assert direct.decisions.name.startswith(f"{logger.service}.")
    # when: a client with direct sends off is created
    clients.sqs_client(make_settings(endpoint_url=endpoint.url, direct_sends=False))
    # then: the line, as the function writes it, is structured JSON with the reason and no payload
    line = json.loads(logger.registered_formatter.format(lines.records[-1]))
    assert (line["message"], line["client"], line["reason"]) == ("direct sends off", "sqs", "settings")
    assert line["endpoint_host"] == "127.0.0.1"


def test_settings_off(endpoint: BatchEndpoint, lines: Lines) -> None:
    client = clients.sqs_client(make_settings(endpoint_url=endpoint.url, direct_sends=False))
    _send_three(client)
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "settings")]


def test_a_client_model_the_serializer_does_not_know(endpoint: BatchEndpoint, lines: Lines,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # given: SendMessageBatch's entry shape with a member the bridge's serializer does not know (as a
    # newer botocore could bring)
    monkeypatch.setitem(sqs_body._EXPECTED_ENTRY, "SomethingNew", "string")
    client = clients.sqs_client(make_settings(endpoint_url=endpoint.url))
    _send_three(client)
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "client model")]


def test_a_botocore_without_what_the_direct_call_reads(endpoint: BatchEndpoint, lines: Lines,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a botocore whose endpoint has no `_add_modeled_error_fields` (the direct call's error path)
    monkeypatch.delattr(botocore.endpoint.Endpoint, "_add_modeled_error_fields")
    client = clients.sqs_client(make_settings(endpoint_url=endpoint.url))
    _send_three(client)
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "botocore internals")]


def test_a_hooked_client(endpoint: BatchEndpoint, lines: Lines) -> None:
    # given: a handler registered on the client after it was set up (a user's hook, a Stubber)
    client = clients.sqs_client(make_settings(endpoint_url=endpoint.url))
    client.meta.events.register("before-send.sqs.SendMessageBatch", lambda **_: None)
    _send_three(client)
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "hooked client")]


def test_a_proxy(endpoint: BatchEndpoint, lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: an HTTP proxy for the endpoint (the loopback server answers the proxied requests itself)
    monkeypatch.setenv("HTTP_PROXY", endpoint.url)
    client = clients.sqs_client(make_settings(endpoint_url=endpoint.url))
    _send_three(client)
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "proxy")]
    assert all(request.startswith(f"POST {endpoint.url}/ ".encode()) for request in endpoint.requests)


def _set_up_with(handler_event: str, handler: Any, endpoint: BatchEndpoint) -> Any:
    """A send client with `handler` registered before the direct call is installed (so it is not a
    hooked client): how a header or a signature the direct call does not reproduce reaches it."""
    client = clients._client("sqs", make_settings(endpoint_url=endpoint.url), clients._SEND_CONFIG)
    client.meta.events.register(handler_event, handler)
    assert sqs_body.install(client)
    assert direct.install(client, keep=4) is not None
    return client


def test_an_unknown_header(endpoint: BatchEndpoint, lines: Lines) -> None:
    def add_header(request: Any, **_: Any) -> None:
        request.headers["X-Custom-Thing"] = "1"

    _send_three(_set_up_with("before-sign.sqs.SendMessageBatch", add_header, endpoint))
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "unknown header")]
    assert lines.records[0].__dict__["detail"] == "x-custom-thing"


def test_a_signature_it_does_not_reproduce(endpoint: BatchEndpoint, lines: Lines) -> None:
    def resign(request: Any, **_: Any) -> None:  # a signature botocore's request carries but SigV4 would not give
        signature = request.headers["Authorization"]
        request.headers["Authorization"] = signature[:-4] + (b"0000" if isinstance(signature, bytes) else "0000")

    _send_three(_set_up_with("before-send.sqs.SendMessageBatch", resign, endpoint))
    assert lines.decisions() == [("direct sends off", "sqs", "127.0.0.1", "signature mismatch")]
