"""Settings from the environment, addresses, and the handler's entry-point behaviour."""

from __future__ import annotations

import gc
import traceback
from pathlib import Path

import pytest
from bridge import handler
from bridge.config import Destination
from bridge.records import ForeignEventError, InvalidEventError
from bridge.settings import DEFAULT_CONFIG_PATH, Settings, SettingsError

from tests.helpers import DEV_CONFIG, kafka_event, kafka_record, make_settings

ENV = {"BRIDGE_ACCOUNT_ID": "123456789012", "AWS_REGION": "eu-west-1", "BRIDGE_PARKING_BUCKET": "bkt"}


def test_settings_defaults() -> None:
    s = Settings.from_env(ENV)

    assert (s.account_id, s.region, s.parking_bucket, s.partition) == ("123456789012", "eu-west-1", "bkt", "aws")
    assert s.config_path == DEFAULT_CONFIG_PATH
    assert s.endpoint_url is None
    assert (s.service_name, s.metrics_namespace) == ("kafka-bridge", "KafkaBridge")


def test_settings_from_the_process_environment_see_only_what_the_test_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # The function's own environment, read from os.environ as Lambda does: a BRIDGE_* or POWERTOOLS_* variable
    # from the developer's shell or an earlier e2e fixture must not change it (tests/unit/conftest.py)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    s = Settings.from_env()

    assert s.config_path == DEFAULT_CONFIG_PATH
    assert s.endpoint_url is None
    assert (s.service_name, s.metrics_namespace) == ("kafka-bridge", "KafkaBridge")


def test_settings_read_every_contract_variable() -> None:
    s = Settings.from_env({**ENV, "BRIDGE_CONFIG_PATH": "/x/c.json", "BRIDGE_PARTITION": "aws-cn",
                           "AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "POWERTOOLS_SERVICE_NAME": "svc"})

    assert s.config_path == Path("/x/c.json")
    assert s.partition == "aws-cn"
    assert s.endpoint_url == "http://127.0.0.1:5000"
    assert s.service_name == "svc"
    assert s.queue_url("q") == "https://sqs.eu-west-1.amazonaws.com.cn/123456789012/q"


def test_missing_variables_are_named_with_the_fix() -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"AWS_REGION": "us-east-1"})

    assert "BRIDGE_ACCOUNT_ID" in str(err.value)
    assert "BRIDGE_PARKING_BUCKET" in str(err.value)
    assert "AWS_REGION (" not in str(err.value)  # it was set
    assert "Fix:" in str(err.value)


def test_invalid_account_is_refused() -> None:
    with pytest.raises(SettingsError, match="12-digit"):
        Settings.from_env({**ENV, "BRIDGE_ACCOUNT_ID": "12345"})


def test_addresses_of_created_and_existing_destinations() -> None:
    s = make_settings()

    assert s.destination_address(Destination("q1", "sqs", fifo=True), "b1") == \
        "https://sqs.us-east-1.amazonaws.com/123456789012/b1-q1.fifo"
    assert s.destination_address(Destination("t1", "sns"), "b1") == "arn:aws:sns:us-east-1:123456789012:b1-t1"
    existing = Destination("q2", "sqs", arn="arn:aws:sqs:eu-west-1:210987654321:theirs")
    assert s.destination_address(existing, "b1") == "https://sqs.eu-west-1.amazonaws.com/210987654321/theirs"


def test_console_test_event_raises_one_line_from_the_undecorated_entry_point() -> None:
    try:
        handler.lambda_handler({"key1": "value1", "key2": "value2", "key3": "value3"}, None)
    except InvalidEventError as exc:
        frames = traceback.extract_tb(exc.__traceback__)
        message = str(exc)
    else:
        pytest.fail("no InvalidEventError")

    assert [f.name for f in frames][1:] == ["lambda_handler"]  # one frame below this test
    assert "\n" not in message
    assert "got an object with keys key1, key2, key3" in message


def test_first_invocation_without_environment_names_the_missing_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    handler.new_execution_environment()

    with pytest.raises(SettingsError, match="BRIDGE_ACCOUNT_ID"):
        handler.get_bridge()


def test_local_context_satisfies_powertools() -> None:
    ctx = handler.LocalContext()

    assert ctx.function_name
    assert ctx.aws_request_id
    assert ctx.get_remaining_time_in_millis() > 0


def test_the_handler_turns_the_cyclic_gc_back_on_after_a_batch_that_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    # given the function's environment and an event from another cluster, refused inside the batch's GC pause
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BRIDGE_CONFIG_PATH", str(DEV_CONFIG))
    handler.new_execution_environment()
    event = kafka_event([kafka_record()])
    event["eventSourceArn"] = "arn:aws:kafka:us-east-1:123456789012:cluster/other/1"

    # when the handler runs it
    with pytest.raises(ForeignEventError):
        handler.lambda_handler(event, None)

    # then the collector is on again
    assert gc.isenabled()
    handler.new_execution_environment()


@pytest.mark.parametrize(("value", "expected"), [(None, True), ("on", True), ("off", False), (" OFF ", False)])
def test_direct_sends_are_on_unless_bridge_direct_sends_is_off(value: str | None, expected: bool) -> None:
    env = ENV if value is None else {**ENV, "BRIDGE_DIRECT_SENDS": value}

    assert Settings.from_env(env).direct_sends is expected


def test_a_direct_sends_value_that_is_neither_on_nor_off_is_refused_with_the_fix() -> None:
    with pytest.raises(SettingsError, match=r"BRIDGE_DIRECT_SENDS='false' is neither on nor off\. Fix: .* off"):
        Settings.from_env({**ENV, "BRIDGE_DIRECT_SENDS": "false"})
