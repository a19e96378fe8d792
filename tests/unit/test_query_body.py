"""The SNS client's form body, encoded once by bridge.adapters.query_body, is byte for byte the body
botocore's own query serializer and `AWSRequest` send, over generated requests."""

from __future__ import annotations

import random
import string
from typing import Any
from urllib.parse import quote_plus as urllib_quote_plus

import botocore.session
import pytest
from botocore.awsrequest import AWSResponse
from bridge.adapters import clients
from bridge.adapters.query_body import encode_form_body, form_body, quote_plus

from tests.helpers import make_settings

TOPIC = "arn:aws:sns:us-east-1:123456789012:orders"
FIFO_TOPIC = "arn:aws:sns:us-east-1:123456789012:orders.fifo"
# Characters that stress the encoding: every ASCII byte, latin-1, CJK, astral (emoji), the BOM.
ALPHABET = string.printable + "\x00\x01\x7f" + "éüß" + "日本語" + "😀🚀" + "\ufeff\u2028" + "+&=%;/?#"


class _Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_: Any) -> Any:
        yield self.data

    def read(self, *_: Any) -> bytes:
        return self.data


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
        return AWSResponse(request.url, 200, {}, _Body(_OK[action]))

    client.meta.events.register("before-send.sns", answer)
    return bodies


@pytest.fixture
def clients_pair(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The bridge's SNS client and a stock botocore client with the same settings."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    ours = clients.sns_client(make_settings())
    stock = botocore.session.get_session().create_client("sns", region_name="us-east-1",
                                                          config=ours.meta.config)
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
