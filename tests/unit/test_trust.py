"""Producer attribution and signatures: each parking reason, keys fetched only when needed, key
rotation and Secrets Manager outages."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from bridge.adapters.secrets import SecretsManagerSigningKeys
from bridge.config import BridgeConfig
from bridge.records import decode_record
from bridge.service import Bridge
from bridge.signatures import sign_record
from bridge.trust import (
    KEY_REFRESH_SECONDS,
    KEY_RETRY_SECONDS,
    KEY_STALE_SECONDS,
    KEY_TTL_SECONDS,
    SigningKeyUnavailable,
    TrustPolicy,
)

from tests.helpers import (
    RECORD_TIMESTAMP,
    FakeKeys,
    header,
    kafka_event,
    kafka_record,
    make_config,
    parked_docs,
    signed_record,
)

KEYS = {"payer": b"payer-secret", "shipper": b"shipper-secret"}


def config() -> BridgeConfig:
    principal = "arn:aws:iam::123456789012:role/{}"
    return make_config(
        producers=[
            {"name": "payer", "topics": ["payments"], "aws_principal": principal.format("payer"), "signing": True},
            {"name": "shipper", "topics": ["payments", "orders"], "aws_principal": principal.format("s"),
             "signing": True},
            {"name": "stocker", "topics": ["inventory"], "aws_principal": principal.format("stocker")},
        ],
        destinations=[{"name": "ledger", "type": "sqs", "accept_from": ["payer"]}, {"name": "open", "type": "sqs"}],
        routes=[{"name": "all", "match": {}, "to": ["ledger", "open"]}],
    )


def signed(producer: str, topic: str = "payments", *, secret: bytes | None = None, offset: int = 0) -> dict[str, Any]:
    """A record signed by `producer` (with its key unless `secret` is given)."""
    return signed_record(secret or KEYS[producer], producer, topic, offset=offset, key="p-1",
                         value='{"amount": 5}', headers=[("event-type", "PaymentCaptured"), ("route", "a"),
                                                         ("route", "b")])


class FakeClock:
    """A monotonic clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def check(raw: dict[str, Any], keys: FakeKeys | None = None) -> tuple[str | None, Any, Any]:
    cfg = config()
    trust = TrustPolicy(cfg, keys or FakeKeys(dict(KEYS))).attribute(decode_record(raw))
    ledger = trust.admit(cfg.destination("ledger"))
    return trust.producer, trust.rejection, ledger


def test_valid_signature_from_listed_producer_is_admitted() -> None:
    producer, rejection, ledger = check(signed("payer"))

    assert (producer, rejection, ledger) == ("payer", None, None)


def test_missing_signature_is_unsigned() -> None:
    rec = kafka_record(topic="payments", headers=[("x-bridge-producer", "payer")])

    _, _, ledger = check(rec)

    assert ledger.reason == "unsigned"


def test_wrong_key_is_invalid_signature() -> None:
    _, _, ledger = check(signed("payer", secret=b"stolen-or-stale"))

    assert ledger.reason == "invalid_signature"


def test_signature_copied_to_another_topic_is_invalid() -> None:
    rec = signed("shipper", topic="payments")
    rec["topic"] = "orders"

    problem = TrustPolicy(config(), FakeKeys(dict(KEYS))).attribute(decode_record(rec)).verify()

    assert problem is not None
    assert problem.reason == "invalid_signature"


def test_a_producer_not_in_accept_from_is_refused_before_its_key_is_read() -> None:
    keys = FakeKeys(dict(KEYS))

    ledger = TrustPolicy(config(), keys).attribute(decode_record(signed("shipper"))).admit(
        config().destination("ledger"))

    assert ledger is not None
    assert ledger.reason == "untrusted_producer"
    assert keys.fetched == []  # on AWS the bridge may not read shipper's key at all


def test_a_verified_record_without_a_message_id_is_parked() -> None:
    rec = signed_record(KEYS["payer"], "payer", "payments", message_id=None)

    _, _, ledger = check(rec)

    assert ledger.reason == "missing_message_id"


@pytest.mark.parametrize("message_id", ["m-1\n", "m-1\r\n", "m 1", "m-1\x7f"])
def test_a_verified_record_whose_message_id_is_not_visible_ascii_is_parked(message_id: str) -> None:
    # a final newline got through: the pattern's `$` matched before it
    rec = signed_record(KEYS["payer"], "payer", "payments", message_id=message_id)

    _, _, ledger = check(rec)

    assert ledger is not None
    assert ledger.reason == "missing_message_id"


def test_a_record_older_than_the_producers_window_is_stale() -> None:
    cfg = make_config(
        producers=[{"name": "payer", "topics": ["payments"], "aws_principal": "arn:aws:iam::123456789012:role/p",
                    "signing": True, "max_age_seconds": 60}],
        destinations=[{"name": "ledger", "type": "sqs", "accept_from": ["payer"]}],
        routes=[{"name": "all", "match": {}, "to": ["ledger"]}])
    rec = decode_record(signed_record(KEYS["payer"], "payer", "payments"))

    def admit(now_ms: int) -> Any:
        return TrustPolicy(cfg, FakeKeys(dict(KEYS)), now_ms=lambda: now_ms).attribute(rec).admit(
            cfg.destination("ledger"))

    assert admit(RECORD_TIMESTAMP + 60_000) is None
    assert admit(RECORD_TIMESTAMP + 60_001).reason == "stale"


def test_valid_signature_from_producer_not_in_accept_from_is_untrusted() -> None:
    _, rejection, ledger = check(signed("shipper"))

    assert rejection is None
    assert ledger.reason == "untrusted_producer"


@pytest.mark.parametrize(("claim", "topic"), [("mallory", "payments"), ("stocker", "payments"),
                                              ("payer", "orders")])
def test_claim_of_unknown_producer_or_not_on_topic_is_producer_not_allowed(claim: str, topic: str) -> None:
    rec = kafka_record(topic=topic, headers=[("x-bridge-producer", claim)])

    _, rejection, _ = check(rec)

    assert rejection.reason == "producer_not_allowed"


def test_unclaimed_record_is_attributed_to_the_only_producer_of_its_topic_but_not_trusted() -> None:
    producer, rejection, ledger = check(kafka_record(topic="inventory"))

    assert producer == "stocker"
    assert rejection is None
    assert ledger.reason == "untrusted_producer"  # attribution alone never passes accept_from


def test_unclaimed_record_on_a_topic_with_two_producers_has_no_producer() -> None:
    producer, _, _ = check(kafka_record(topic="payments"))

    assert producer is None


def test_keys_are_fetched_only_for_destinations_with_accept_from_and_once_per_record() -> None:
    cfg = config()
    keys = FakeKeys(dict(KEYS))
    trust = TrustPolicy(cfg, keys).attribute(decode_record(signed("payer")))

    assert trust.admit(cfg.destination("open")) is None
    assert keys.fetched == []
    trust.admit(cfg.destination("ledger"))
    trust.admit(cfg.destination("ledger"))
    assert keys.fetched == ["payer"]


def test_unavailable_key_parks_under_its_own_reason_with_the_cause() -> None:
    _, _, ledger = check(signed("payer"), keys=FakeKeys({}))

    assert ledger.reason == "signing_key_unavailable"
    assert "unavailable" in ledger.detail


# --- what the signature covers, on records as Lambda delivers them ------------------------------


def _edit_headers(rec: dict[str, Any], edit: Callable[[list[dict[str, Any]]], None]) -> dict[str, Any]:
    edit(rec["headers"])
    return rec


@pytest.mark.parametrize("tamper", [
    pytest.param(lambda hs: hs.__setitem__(0, header("event-type", "PaymentRefunded")), id="header-value-changed"),
    pytest.param(lambda hs: hs.insert(0, header("correlation-id", "attacker")), id="header-added"),
    pytest.param(lambda hs: hs.pop(0), id="header-removed"),
    pytest.param(lambda hs: hs.__setitem__(slice(1, 3), [hs[2], hs[1]]), id="repeated-headers-reordered"),
])
def test_tampered_headers_are_invalid_signature(tamper: Callable[[list[dict[str, Any]]], None]) -> None:
    _, rejection, ledger = check(_edit_headers(signed("payer"), tamper))

    assert rejection is None
    assert ledger.reason == "invalid_signature"


def test_changed_timestamp_is_invalid_signature() -> None:
    rec = signed("payer")
    rec["timestamp"] += 1

    _, _, ledger = check(rec)

    assert ledger.reason == "invalid_signature"


def test_log_append_time_topic_is_named_in_the_detail() -> None:
    rec = signed("payer")
    rec["timestamp"] += 5
    rec["timestampType"] = "LOG_APPEND_TIME"

    _, _, ledger = check(rec)

    assert "LogAppendTime" in ledger.detail


def test_a_second_signature_header_is_not_signed_and_the_last_one_is_checked() -> None:
    rec = signed("payer")
    rec["headers"].insert(0, header("x-bridge-signature", "v1=" + "0" * 64))

    _, _, ledger = check(rec)

    assert ledger is None


def test_null_header_value_is_signed_as_null_not_as_empty() -> None:
    # given: a record signed over a header with a null value
    producer, message_id = ("x-bridge-producer", b"payer"), ("x-bridge-message-id", b"m-1")
    signature = sign_record(KEYS["payer"], producer="payer", topic="payments", timestamp=RECORD_TIMESTAMP, key=b"k",
                            value=b"{}", headers=[("flag", None), message_id, producer],
                            signature_header="x-bridge-signature")
    rec = kafka_record(topic="payments", key="k", value="{}",
                       headers=[("flag", b""), message_id, producer, ("x-bridge-signature", signature)])
    # when / then: delivered with the null value it verifies; with an empty value it does not
    rec["headers"][0] = {"flag": None}
    assert check(rec)[2] is None
    rec["headers"][0] = {"flag": []}
    assert check(rec)[2].reason == "invalid_signature"


# --- the producer claim is untrusted text -------------------------------------------------------


@pytest.mark.parametrize("claim", ["mallory\nlevel=ERROR forged log line", "x" * 5000, b"\xff\xfe-not-utf8"])
def test_unknown_claim_is_described_never_repeated(claim: str | bytes) -> None:
    raw = claim if isinstance(claim, bytes) else claim.encode()
    rec = kafka_record(topic="payments", headers=[("x-bridge-producer", claim)])

    producer, rejection, _ = check(rec)

    assert rejection.reason == "producer_not_allowed"
    assert producer is None
    assert f"{len(raw)} bytes" in rejection.detail
    assert ("(not valid UTF-8," if isinstance(claim, bytes) else "(valid UTF-8,") in rejection.detail
    for fragment in ("mallory", "ERROR", "xxx", "\n", "\\x"):
        assert fragment not in rejection.detail


def test_claim_of_a_configured_producer_on_the_wrong_topic_names_the_configured_producer() -> None:
    producer, rejection, _ = check(kafka_record(topic="orders", headers=[("x-bridge-producer", "payer")]))

    assert producer == "payer"
    assert rejection.detail == "x-bridge-producer names configured producer 'payer', which may not write 'orders'"


def test_parked_document_carries_no_unknown_claim(make_bridge: Callable[..., Bridge], sqs: Any) -> None:
    rec = kafka_record(topic="payments", headers=[("x-bridge-producer", "mallory")])

    make_bridge(config()).handle(kafka_event([rec]))

    (doc,) = parked_docs(sqs, "test-bridge-dev-bridge-dlq")
    assert doc["producer"] is None
    assert "mallory" not in doc["detail"]


# --- key rotation: previous key accepted, a new current key picked up ---------------------------


def test_record_signed_with_the_previous_key_is_admitted_during_a_rotation() -> None:
    keys = FakeKeys({"payer": b"new-key"}, previous={"payer": KEYS["payer"]})

    _, _, ledger = check(signed("payer"), keys)

    assert ledger is None


def test_new_current_key_is_used_once_the_cached_keys_expire() -> None:
    # given: keys cached, then the secret rotated and the old key dropped from both stages
    cfg, clock = config(), FakeClock()
    keys = FakeKeys(dict(KEYS))
    policy = TrustPolicy(cfg, keys, clock=clock)
    assert policy.attribute(decode_record(signed("payer"))).admit(cfg.destination("ledger")) is None
    keys.keys["payer"] = b"rotated"
    new_record = decode_record(signed("payer", secret=b"rotated", offset=1))
    # when / then: a record signed with the new key right after the first read refetches and verifies
    assert policy.attribute(new_record).admit(cfg.destination("ledger")) is None
    assert keys.fetched == ["payer", "payer"]
    clock.advance(KEY_TTL_SECONDS)
    assert policy.attribute(new_record).admit(cfg.destination("ledger")) is None
    assert keys.fetched == ["payer", "payer", "payer"]  # expired: read again


def test_cached_keys_keep_verifying_through_a_secrets_manager_outage() -> None:
    # given: keys read, then Secrets Manager fails once the cache has expired
    cfg, clock = config(), FakeClock()
    keys = FakeKeys(dict(KEYS))
    policy = TrustPolicy(cfg, keys, clock=clock)

    def ledger(offset: int) -> Any:
        return policy.attribute(decode_record(signed("payer", offset=offset))).admit(cfg.destination("ledger"))

    assert ledger(0) is None
    keys.fail = True
    clock.advance(KEY_TTL_SECONDS)
    # when / then: the stale keys still verify, with one failed read per retry window
    assert ledger(1) is None
    assert ledger(2) is None
    assert keys.fetched == ["payer", "payer"]
    # ... until they are too old to trust
    clock.advance(KEY_STALE_SECONDS)
    assert ledger(3).reason == "signing_key_unavailable"


def test_valid_records_use_the_cached_keys_until_they_expire() -> None:
    cfg, clock = config(), FakeClock()
    keys = FakeKeys(dict(KEYS))
    policy = TrustPolicy(cfg, keys, clock=clock)

    for i in range(50):
        clock.advance(1)
        assert policy.attribute(decode_record(signed("payer", offset=i))).admit(cfg.destination("ledger")) is None

    assert keys.fetched == ["payer"]


def test_forged_records_refetch_keys_at_most_once_per_refresh_interval() -> None:
    cfg, clock = config(), FakeClock()
    keys = FakeKeys(dict(KEYS))
    policy = TrustPolicy(cfg, keys, clock=clock)

    def forged(offset: int) -> Any:
        rec = decode_record(signed("payer", secret=b"guess", offset=offset))
        return policy.attribute(rec).admit(cfg.destination("ledger"))

    for i in range(100):
        assert forged(i).reason == "invalid_signature"
    assert keys.fetched == ["payer", "payer"]  # the first read, and one refetch on the first mismatch
    clock.advance(KEY_REFRESH_SECONDS)
    assert forged(100).reason == "invalid_signature"
    assert keys.fetched == ["payer", "payer", "payer"]


# --- Secrets Manager outage: one read, not one per record ---------------------------------------


def test_outage_parks_a_500_record_batch_as_signing_key_unavailable_after_one_read(
    make_bridge: Callable[..., Bridge], keys: FakeKeys,
) -> None:
    # given: the key store fails every read
    keys.keys.update(KEYS)
    keys.fail = True
    records = [signed("payer", offset=i) for i in range(500)]
    # when
    report = make_bridge(config()).handle(kafka_event(records))
    # then
    assert keys.fetched == ["payer"]
    assert report.summary["parked"] == {"signing_key_unavailable": 500}
    assert report.summary["delivered"] == {"open": 500}


def test_failed_read_is_retried_after_the_retry_window() -> None:
    cfg, clock = config(), FakeClock()
    keys = FakeKeys(dict(KEYS))
    keys.fail = True
    policy = TrustPolicy(cfg, keys, clock=clock)

    def ledger(offset: int) -> Any:
        return policy.attribute(decode_record(signed("payer", offset=offset))).admit(cfg.destination("ledger"))

    assert ledger(0).reason == "signing_key_unavailable"
    clock.advance(KEY_RETRY_SECONDS - 1)
    assert ledger(1).reason == "signing_key_unavailable"
    assert keys.fetched == ["payer"]
    keys.fail = False
    clock.advance(1)
    assert ledger(2) is None
    assert keys.fetched == ["payer", "payer"]


# --- the Secrets Manager adapter: exact requests --------------------------------------------------

SECRET_ID = "test-bridge-dev/producers/payer/signing-key"


def _recently() -> datetime:
    """A current version created within the grace window (a rotation a minute ago)."""
    return datetime.now(UTC) - timedelta(minutes=1)


def test_adapter_drops_the_previous_key_once_the_grace_is_over() -> None:
    sm = _secrets_client()
    rotated = datetime(2026, 1, 1, tzinfo=UTC)
    grace = make_config().settings.signing_key_grace_seconds
    with Stubber(sm) as stub:
        stub.add_response("get_secret_value", {"SecretString": "new", "CreatedDate": rotated},
                          {"SecretId": SECRET_ID, "VersionStage": "AWSCURRENT"})

        keys = SecretsManagerSigningKeys(sm, make_config(), clock=lambda: rotated + timedelta(seconds=grace + 1))

        assert keys.keys_for("payer") == (b"new",)  # AWSPREVIOUS is not even read
        stub.assert_no_pending_responses()


def _secrets_client() -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1", aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def test_adapter_reads_current_and_previous_stages() -> None:
    sm = _secrets_client()
    with Stubber(sm) as stub:
        stub.add_response("get_secret_value", {"SecretString": "new", "CreatedDate": _recently()},
                          {"SecretId": SECRET_ID, "VersionStage": "AWSCURRENT"})
        stub.add_response("get_secret_value", {"SecretString": "old"},
                          {"SecretId": SECRET_ID, "VersionStage": "AWSPREVIOUS"})

        assert SecretsManagerSigningKeys(sm, make_config()).keys_for("payer") == (b"new", b"old")
        stub.assert_no_pending_responses()


def test_adapter_without_a_previous_version_returns_the_current_key_only() -> None:
    sm = _secrets_client()
    with Stubber(sm) as stub:
        stub.add_response("get_secret_value", {"SecretString": "only", "CreatedDate": _recently()},
                          {"SecretId": SECRET_ID, "VersionStage": "AWSCURRENT"})
        stub.add_client_error("get_secret_value", "ResourceNotFoundException",
                              expected_params={"SecretId": SECRET_ID, "VersionStage": "AWSPREVIOUS"})

        assert SecretsManagerSigningKeys(sm, make_config()).keys_for("payer") == (b"only",)
        stub.assert_no_pending_responses()


@pytest.mark.parametrize(("current_error", "previous_error", "match"), [
    ("ResourceNotFoundException", None, r"AWSCURRENT.*ResourceNotFoundException"),
    (None, "ThrottlingException", r"AWSPREVIOUS.*ThrottlingException"),
])
def test_adapter_failures_raise_signing_key_unavailable(current_error: str | None, previous_error: str | None,
                                                        match: str) -> None:
    sm = _secrets_client()
    with Stubber(sm) as stub:
        if current_error:
            stub.add_client_error("get_secret_value", current_error,
                                  expected_params={"SecretId": SECRET_ID, "VersionStage": "AWSCURRENT"})
        else:
            stub.add_response("get_secret_value", {"SecretString": "k", "CreatedDate": _recently()},
                              {"SecretId": SECRET_ID, "VersionStage": "AWSCURRENT"})
            stub.add_client_error("get_secret_value", str(previous_error),
                                  expected_params={"SecretId": SECRET_ID, "VersionStage": "AWSPREVIOUS"})

        with pytest.raises(SigningKeyUnavailable, match=match):
            SecretsManagerSigningKeys(sm, make_config()).keys_for("payer")
        stub.assert_no_pending_responses()


def test_outage_through_the_real_adapter_makes_one_read_per_retry_window() -> None:
    # given: a real client whose endpoint is unreachable, each request counted by an event hook
    sm = _secrets_client()
    requests: list[str] = []

    def unreachable(request: Any, **_kw: Any) -> None:
        requests.append(json.loads(request.body)["VersionStage"])
        raise EndpointConnectionError(endpoint_url=request.url)

    sm.meta.events.register("before-send.secrets-manager.GetSecretValue", unreachable)
    cfg = config()
    policy = TrustPolicy(cfg, SecretsManagerSigningKeys(sm, make_config()), clock=FakeClock())
    # when
    reasons = {policy.attribute(decode_record(signed("payer", offset=i))).admit(cfg.destination("ledger")).reason
               for i in range(500)}
    # then: one read (botocore's own retries of it included), not one per record
    assert reasons == {"signing_key_unavailable"}
    assert set(requests) == {"AWSCURRENT"}
    assert len(requests) <= 5


def test_a_read_that_hangs_until_its_timeout_is_not_retried_by_the_next_record() -> None:
    # given: every read fails after 60 s (longer than the retry window)
    cfg, clock = config(), FakeClock()
    keys = FakeKeys(dict(KEYS))
    keys.fail = True

    class SlowKeys:
        def keys_for(self, producer: str) -> tuple[bytes, ...]:
            clock.advance(60)
            return keys.keys_for(producer)

    policy = TrustPolicy(cfg, SlowKeys(), clock=clock)
    # when
    for i in range(500):
        policy.attribute(decode_record(signed("payer", offset=i))).admit(cfg.destination("ledger"))
    # then
    assert keys.fetched == ["payer"]
