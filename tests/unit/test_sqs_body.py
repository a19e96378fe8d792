"""The SQS client's SendMessageBatch body, written by bridge.adapters.sqs_body, is byte for byte the body
botocore's own JSON serializer sends, over generated requests; anything else is botocore's."""

from __future__ import annotations

import json
import random
import string
from typing import Any

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from bridge.adapters import clients
from bridge.adapters.sqs_body import SendMessageBatchSerializer, install, plain_send_message_batch

from tests.helpers import RawBody, make_settings

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
ALPHABET = string.printable + "\x00\x01\x7f" + "éüß" + "日本語" + "😀🚀" + "\ufeff\u2028" + '"\\/'



def _capturing(client: Any) -> list[tuple[bytes, dict[str, Any]]]:
    """(body, headers) of each request the client would send; answered with an empty success."""
    sent: list[tuple[bytes, dict[str, Any]]] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in ("x-amz-date", "authorization", "amz-sdk-invocation-id", "user-agent")}
        sent.append((request.body, headers))
        return AWSResponse(request.url, 200, {"Content-Type": "application/x-amz-json-1.0"},
                           RawBody(b'{"Successful": [], "Failed": []}'))

    client.meta.events.register("before-send.sqs", answer)
    return sent


@pytest.fixture
def clients_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The bridge's SQS client and a stock botocore client, neither validating parameters."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    ours = clients.sqs_client(make_settings())
    stock = botocore.session.get_session().create_client("sqs", region_name="us-east-1", config=Config(
        parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 1}))
    return ours, stock


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def _entry(rng: random.Random, i: int, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(i), "MessageBody": _text(rng, rng.choice((1, 40, 1000, 3000)))}
    if rng.random() < 0.2:
        entry["DelaySeconds"] = rng.randint(0, 900)
    attributes = {f"attr-{a}": {"DataType": rng.choice(("String", "Number", "String.custom")),
                                "StringValue": _text(rng, rng.randint(1, 50))} for a in range(rng.randint(0, 10))}
    if attributes:
        entry["MessageAttributes"] = attributes
    if fifo:
        entry["MessageGroupId"] = _text(rng, 8)
        entry["MessageDeduplicationId"] = f"{rng.getrandbits(128):032x}"
    return entry


def test_send_message_batch_bodies_are_the_bytes_botocore_sends(clients_pair: tuple[Any, Any]) -> None:
    # given: 300 generated batches (unicode, JSON escapes, delays, up to 10 attributes, FIFO fields)
    ours, stock = clients_pair
    our_requests, stock_requests = _capturing(ours), _capturing(stock)
    rng = random.Random(20)

    for n in range(300):
        entries = [_entry(rng, i, n % 3 == 0) for i in range(rng.randint(1, 10))]
        assert plain_send_message_batch({"QueueUrl": QUEUE, "Entries": entries})
        # when
        for client in (ours, stock):
            client.send_message_batch(QueueUrl=QUEUE, Entries=entries)

    # then: the same bytes and the same headers (target, content type, query-compatible mode)
    assert len(our_requests) == len(stock_requests) == 300
    for mine, theirs in zip(our_requests, stock_requests, strict=True):
        assert mine == theirs


def test_the_bridge_client_writes_the_request_as_it_is(clients_pair: tuple[Any, Any]) -> None:
    ours, _ = clients_pair
    sent = _capturing(ours)
    entries = [{"Id": "0", "MessageBody": "é \"q\"", "MessageAttributes": {
        "tenant": {"DataType": "String", "StringValue": "acme"}}}]
    ours.send_message_batch(QueueUrl=QUEUE, Entries=entries)
    assert isinstance(ours._serializer, SendMessageBatchSerializer)
    assert sent[0][0] == json.dumps({"QueueUrl": QUEUE, "Entries": entries}).encode()


@pytest.mark.parametrize("parameters", [
    {"Entries": [{"Id": "0", "MessageBody": "m"}], "QueueUrl": QUEUE},  # another order
    {"QueueUrl": QUEUE, "Entries": []},
    {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "MessageBody": "m", "NewMember": "x"}]},
    {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "MessageBody": "m", "DelaySeconds": True}]},
    {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "MessageBody": "m", "MessageAttributes": {
        "a": {"DataType": "Binary", "BinaryValue": b"\x00\xff"}}}]},  # botocore writes base64
    {"QueueUrl": QUEUE, "Entries": [{"Id": "0", "MessageBody": "m", "MessageSystemAttributes": {
        "AWSTraceHeader": {"DataType": "String", "StringValue": "Root=1-5759e988-bd862e3fe1be46a994272793"}}}]},
])
def test_any_other_request_is_left_to_botocores_serializer(clients_pair: tuple[Any, Any],
                                                           parameters: dict[str, Any]) -> None:
    # given
    ours, stock = clients_pair
    assert not plain_send_message_batch(parameters)
    our_requests, stock_requests = _capturing(ours), _capturing(stock)

    # when: sent anyway (no parameter validation on these clients)
    outcomes = []
    for client in (ours, stock):
        try:
            client.send_message_batch(**parameters)
            outcomes.append(None)
        except Exception as exc:  # whatever botocore does, both clients must do it
            outcomes.append(type(exc))

    # then
    assert outcomes[0] == outcomes[1]
    assert our_requests == stock_requests


def test_the_serializer_is_installed_only_on_the_model_it_was_written_for() -> None:
    session = botocore.session.get_session()
    model = session.get_service_data("sqs")
    model["shapes"]["SendMessageBatchRequestEntry"]["members"]["MessageBody"]["locationName"] = "Body"
    loader = session.get_component("data_loader")
    original = loader.load_service_model
    loader.load_service_model = lambda name, type_name, api_version=None: (
        model if (name, type_name) == ("sqs", "service-2") else original(name, type_name, api_version))
    renamed = session.create_client("sqs", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")

    assert install(renamed) is False
    assert not isinstance(renamed._serializer, SendMessageBatchSerializer)
    assert install(session.create_client("sns", region_name="us-east-1", aws_access_key_id="a",
                                         aws_secret_access_key="b")) is False


def _sqs_client(protocol: str | None = None) -> Any:
    session = botocore.session.get_session()
    if protocol is not None:  # the SQS model before botocore moved SQS to JSON (1.34.0 still has query)
        model = session.get_service_data("sqs")
        model["metadata"]["protocol"] = protocol
        model["metadata"].pop("protocols", None)
        loader = session.get_component("data_loader")
        original = loader.load_service_model
        loader.load_service_model = lambda name, type_name, api_version=None: (
            model if (name, type_name) == ("sqs", "service-2") else original(name, type_name, api_version))
    return session.create_client("sqs", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")


def test_an_sqs_model_on_the_query_protocol_keeps_botocores_serializer() -> None:
    client = _sqs_client("query")
    stock = client._serializer
    assert install(client) is False
    assert client._serializer is stock


def test_a_client_without_botocores_private_serializer_is_left_as_it_is() -> None:
    # given: a botocore that keeps its serializer elsewhere than `client._serializer`
    client = _sqs_client()
    del client._serializer
    # then: nothing is installed and nothing raises
    assert install(client) is False
    assert not hasattr(client, "_serializer")
