"""The SNS client's form body, encoded once by bridge.adapters.query_body, is byte for byte the body
botocore's own query serializer and `AWSRequest` send, over generated requests."""

from __future__ import annotations

import random
import string
from typing import Any
from urllib.parse import quote_plus as urllib_quote_plus

import botocore.session
import pytest
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.serialize import QuerySerializer
from bridge.adapters import clients
from bridge.adapters.query_body import (
    PublishBatchSerializer,
    encode_form_body,
    form_body,
    install,
    publish_batch_form,
    quote_plus,
)

from tests.helpers import RawBody, make_settings

TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"
FIFO_TOPIC = "arn:aws:sns:us-east-1:123456789012:orders.fifo"
# Characters that stress the encoding: every ASCII byte, latin-1, CJK, astral (emoji), the BOM.
ALPHABET = string.printable + "\x00\x01\x7f" + "éüß" + "日本語" + "😀🚀" + "\ufeff\u2028" + "+&=%;/?#"



_OK = {b"PublishBatch": b'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
                        b"<Successful/><Failed/></PublishBatchResult></PublishBatchResponse>",
       b"Publish": b'<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult>'
                   b"<MessageId>m-0</MessageId></PublishResult></PublishResponse>"}


def _capturing(client: Any) -> list[str | bytes]:
    """Bodies the client would send, as the HTTP layer gets them (type included); each request is
    answered with an empty success, nothing leaves the process."""
    bodies: list[str | bytes] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        assert request.headers["Content-Type"] == b"application/x-www-form-urlencoded; charset=utf-8"
        bodies.append(request.body)
        body = request.body if isinstance(request.body, bytes) else request.body.encode()
        action = body.split(b"&", 1)[0].removeprefix(b"Action=")
        return AWSResponse(request.url, 200, {}, RawBody(_OK[action]))

    client.meta.events.register("before-send.sns", answer)
    return bodies


@pytest.fixture
def clients_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The bridge's SNS client and a stock botocore client with the same settings."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    ours = clients.sns_client(make_settings())
    stock = botocore.session.get_session().create_client("sns", region_name="us-east-1", config=Config(
        parameter_validation=False, retries={"mode": "standard", "total_max_attempts": 1}))
    return ours, stock


def _text(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(n))


def _entry(rng: random.Random, i: int, fifo: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"Id": str(i), "Message": _text(rng, rng.choice((0, 1, 40, 1000, 3000)))}
    if rng.random() < 0.3:
        entry["Subject"] = _text(rng, 20)
    if rng.random() < 0.1:
        entry["MessageStructure"] = "json"
    attributes: dict[str, Any] = {}
    for a in range(rng.randint(0, 10)):
        kind = rng.choice(("String", "Number", "Binary", "String.Array"))
        if kind == "Binary":
            attributes[f"attr-{a}.bin"] = {"DataType": "Binary", "BinaryValue": rng.randbytes(rng.randint(1, 64))}
        else:
            value = str(rng.randint(-10**6, 10**6)) if kind == "Number" else _text(rng, rng.randint(1, 50))
            attributes[f"attr_{a}" if a % 2 else f"correlation-id-{a}"] = {"DataType": kind, "StringValue": value}
    if attributes:
        entry["MessageAttributes"] = attributes
    if fifo:
        entry["MessageGroupId"] = _text(rng, 8)
        entry["MessageDeduplicationId"] = f"{rng.getrandbits(128):032x}"
    return entry


def test_publish_batch_bodies_are_the_bytes_botocore_sends(clients_pair: tuple[Any, Any]) -> None:
    # given: 300 generated batches (unicode, binary attributes, subjects, FIFO fields, empty messages)
    ours, stock = clients_pair
    our_bodies, stock_bodies = _capturing(ours), _capturing(stock)
    rng = random.Random(10)

    for n in range(300):
        fifo = n % 3 == 0
        entries = [_entry(rng, i, fifo) for i in range(rng.randint(1, 10))]
        # when
        for client in (ours, stock):
            client.publish_batch(TopicArn=FIFO_TOPIC if fifo else TOPIC, PublishBatchRequestEntries=entries)

    # then
    assert len(our_bodies) == len(stock_bodies) == 300
    for mine, theirs in zip(our_bodies, stock_bodies, strict=True):
        assert type(mine) is type(theirs)
        assert mine == theirs


def test_single_publish_bodies_are_the_bytes_botocore_sends(clients_pair: tuple[Any, Any]) -> None:
    ours, stock = clients_pair
    our_bodies, stock_bodies = _capturing(ours), _capturing(stock)
    rng = random.Random(11)
    for _ in range(50):
        entry = _entry(rng, 0, False)
        del entry["Id"]
        for client in (ours, stock):
            client.publish(TopicArn=TOPIC, **entry)
    assert our_bodies == stock_bodies


def test_the_body_is_encoded_before_signing_so_botocore_never_encodes_it() -> None:
    # given: the request dict botocore's query serializer hands to `before-call`
    params: dict[str, Any] = {"body": {"Action": "PublishBatch", "Version": "2010-03-31",
                                       "PublishBatchRequestEntries.member.1.Message": "a b+c&d=é😀"}}

    # when
    encode_form_body(params)

    # then: a string, which AWSRequest signs and sends as it is
    assert params["body"] == ("Action=PublishBatch&Version=2010-03-31&PublishBatchRequestEntries.member.1.Message="
                              "a+b%2Bc%26d%3D%C3%A9%F0%9F%98%80")


@pytest.mark.parametrize("body", [
    {"Action": "Publish", "Count": 3},  # not a string: urlencode's own rules apply
    {"Action": "Publish", "Message": b"bytes"},
    "Action=Publish",  # already encoded
])
def test_anything_but_a_dict_of_strings_is_left_to_botocore(body: Any) -> None:
    params = {"body": body}
    encode_form_body(params)
    assert params["body"] is body


def test_a_lone_surrogate_is_left_to_botocore_which_raises_as_before(clients_pair: tuple[Any, Any]) -> None:
    ours, stock = clients_pair
    for client in (ours, stock):
        with pytest.raises(UnicodeEncodeError):
            client.publish(TopicArn=TOPIC, Message="half \ud800 a pair")


def test_quote_plus_matches_urllib_on_every_code_point_class() -> None:
    samples = ["", "plain", "a b", "~._-", "%", "+", "\x00", "\x7f", "\x80", "é", "\u07ff", "\u0800", "\uffff",
               "\U00010000", "\U0010ffff", "".join(map(chr, range(128)))]
    for s in samples:
        assert quote_plus(s) == urllib_quote_plus(s.encode("utf-8"), safe="")
    assert form_body({"a b": "c&d", "e": ""}) == "a+b=c%26d&e="


def test_the_bridge_client_signs_and_sends_the_string_it_encoded_once(clients_pair: tuple[Any, Any]) -> None:
    # given: what each client holds as the request body when it signs (the first of botocore's two encodings)
    ours, stock = clients_pair
    signed: dict[str, type] = {}
    for name, client in (("ours", ours), ("stock", stock)):
        _capturing(client)
        client.meta.events.register("before-sign.sns", lambda request, name=name, **_: signed.__setitem__(
            name, type(request.data)))

    # when
    for client in (ours, stock):
        client.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=[{"Id": "0", "Message": "m"}])

    # then: botocore still holds a dict it will encode twice; the bridge's client an encoded string
    assert signed == {"ours": str, "stock": dict}


def _stock_body(client: Any, parameters: dict[str, Any]) -> str:
    """What botocore's own serializer and AWSRequest make of PublishBatch `parameters`."""
    model = client.meta.service_model.operation_model("PublishBatch")
    request = QuerySerializer().serialize_to_request(parameters, model)
    body: str = AWSRequest(method="POST", url="https://sns.us-east-1.amazonaws.com/",
                           data=request["body"]).body.decode()
    return body


def test_publish_batch_form_is_botocores_body_for_every_generated_batch(clients_pair: tuple[Any, Any]) -> None:
    _, stock = clients_pair
    rng = random.Random(12)
    for n in range(300):
        fifo = n % 2 == 0
        parameters = {"TopicArn": FIFO_TOPIC if fifo else TOPIC,
                      "PublishBatchRequestEntries": [_entry(rng, i, fifo) for i in range(rng.randint(1, 10))]}
        mine = publish_batch_form(parameters, "2010-03-31")
        assert mine is not None  # every generated shape is one the fast path writes
        assert mine == _stock_body(stock, parameters)


@pytest.mark.parametrize("parameters", [
    {"PublishBatchRequestEntries": [{"Id": "0", "Message": "m"}], "TopicArn": TOPIC},  # another order
    {"TopicArn": TOPIC, "PublishBatchRequestEntries": []},  # botocore writes an empty list as ''
    {"TopicArn": TOPIC, "PublishBatchRequestEntries": [{"Id": "0", "Message": "m", "NewMember": "x"}]},
    {"TopicArn": TOPIC, "PublishBatchRequestEntries": [{"Id": 0, "Message": "m"}]},
    {"TopicArn": TOPIC, "PublishBatchRequestEntries": [
        {"Id": "0", "Message": "m", "MessageAttributes": {"a": {"DataType": "Binary", "BinaryValue": "str"}}}]},
    {"TopicArn": TOPIC, "PublishBatchRequestEntries": [
        {"Id": "0", "Message": "m", "MessageAttributes": {"a": {"DataType": "String", "StringListValues": []}}}]},
])
def test_any_other_shape_is_left_to_botocores_serializer(clients_pair: tuple[Any, Any],
                                                         parameters: dict[str, Any]) -> None:
    # given
    ours, stock = clients_pair
    assert publish_batch_form(parameters, "2010-03-31") is None
    our_bodies, stock_bodies = _capturing(ours), _capturing(stock)

    # when: sent anyway (no parameter validation on these clients)
    outcomes = []
    for client in (ours, stock):
        try:
            client.publish_batch(**parameters)
            outcomes.append(None)
        except Exception as exc:  # whatever botocore does, both clients must do it
            outcomes.append(type(exc))

    # then: the same bytes (botocore's), or the same error from botocore's serializer
    assert outcomes[0] == outcomes[1]
    assert our_bodies == stock_bodies


def test_the_serializer_is_installed_only_on_the_model_it_was_written_for(clients_pair: tuple[Any, Any]) -> None:
    ours, _ = clients_pair
    assert isinstance(ours._serializer, PublishBatchSerializer)  # the bridge's client: installed

    # a model whose entry gained a member the fast path does not write: botocore's serializer stays
    session = botocore.session.get_session()
    model = session.get_service_data("sns")
    model["shapes"]["PublishBatchRequestEntry"]["members"]["Priority"] = {"shape": "String"}
    loader = session.get_component("data_loader")
    original = loader.load_service_model
    loader.load_service_model = lambda name, type_name, api_version=None: (
        model if (name, type_name) == ("sns", "service-2") else original(name, type_name, api_version))
    changed = session.create_client("sns", region_name="us-east-1", aws_access_key_id="a",
                                    aws_secret_access_key="b")

    assert install(changed) is False
    assert not isinstance(changed._serializer, PublishBatchSerializer)
    assert install(session.create_client("sqs", region_name="us-east-1", aws_access_key_id="a",
                                         aws_secret_access_key="b")) is False


def test_a_client_without_botocores_private_serializer_is_left_as_it_is() -> None:
    # given: a botocore that keeps its serializer elsewhere than `client._serializer`
    client = botocore.session.get_session().create_client("sns", region_name="us-east-1", aws_access_key_id="a",
                                                          aws_secret_access_key="b")
    del client._serializer
    # then: nothing is installed and nothing raises
    assert install(client) is False
    assert not hasattr(client, "_serializer")
