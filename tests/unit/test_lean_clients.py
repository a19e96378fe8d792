"""Lean clients: created on first use (cold start), and sends without botocore's parameter validation
(CPU per request) still park a request the service refuses, at once, as before."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse
from botocore.loaders import Loader
from bridge.adapters import clients, defaults
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import SQS_MAX_MESSAGE_BYTES
from bridge.delivery import Deliverer, Target
from bridge.envelope import OutgoingMessage
from bridge.service import Bridge

from tests.helpers import DEV_CONFIG, RawBody, dev_config, make_settings


@pytest.fixture
def clients_created(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The services whose clients were created, through the bridge's shared botocore session."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    created: list[str] = []

    def seen(event_name: str, **_: Any) -> None:
        created.append(event_name.rsplit(".", 1)[1])

    events = clients.shared_session().get_component("event_emitter")
    events.register("creating-client-class", seen, unique_id="test-clients-created")
    yield created
    events.unregister("creating-client-class", unique_id="test-clients-created")


def test_building_the_bridge_creates_no_client(clients_created: list[str]) -> None:
    Bridge(dev_config(), make_settings())

    assert clients_created == []


def test_each_port_creates_its_client_once_on_first_use(clients_created: list[str]) -> None:
    settings = make_settings()
    sqs, store = defaults.sqs_sender(settings), defaults.parking_store(settings)

    first = sqs.port()  # type: ignore[attr-defined]
    again = sqs.port()  # type: ignore[attr-defined]

    assert first is again
    assert clients_created == ["sqs"]
    store.port()  # type: ignore[attr-defined]
    assert clients_created == ["sqs", "s3"]



def test_a_request_the_service_refuses_is_parked_at_once_without_botocore_validation(
    clients_created: list[str],
) -> None:
    # given: the bridge's own SQS client (no parameter validation) and an endpoint that refuses, as SQS
    # does, an attribute value that is not a string
    sqs = clients.sqs_client(make_settings())
    sent: list[dict[str, Any]] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        body = json.loads(request.body)
        sent.append(body)
        value = body["Entries"][0]["MessageAttributes"]["n"]["StringValue"]
        assert not isinstance(value, str), "botocore did not check the type: the service does"
        error = {"__type": "com.amazonaws.sqs#InvalidParameterValue", "message": "StringValue must be a string"}
        return AWSResponse(request.url, 400, {"x-amzn-query-error": "InvalidParameterValue;Sender"},
                           RawBody(json.dumps(error).encode()))

    sqs.meta.events.register("before-send.sqs.SendMessageBatch", answer)
    bad = OutgoingMessage("orders-0-0", "q", "body", (("n", 5),), "c0", 10)  # type: ignore[arg-type]
    sleeps: list[float] = []
    deliverer = Deliverer({"sqs": SqsBatchSender(sqs), "sns": SqsBatchSender(sqs)}, max_attempts=4,
                          base_delay_ms=100, sleep=sleeps.append)

    # when
    (receipt,) = deliverer.deliver([(Target("q", "sqs", "https://sqs.us-east-1.amazonaws.com/1/q",
                                            SQS_MAX_MESSAGE_BYTES), [bad])])

    # then: one request, no retry, a sender fault: parked at once, as a ParamValidationError was
    assert len(sent) == 1
    assert (receipt.delivered, receipt.attempts, receipt.sender_fault) == (False, 1, True)
    assert receipt.code == "InvalidParameterValue"
    assert sleeps == []


def _import_handler(extra_env: dict[str, str]) -> dict[str, Any]:
    """Import bridge.handler in a fresh process (as a Lambda cold start does); report what it loaded."""
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "BRIDGE_", "AWS_"))}
    env.update({"PYTHONPATH": str(root / "lambdas"), "AWS_LAMBDA_FUNCTION_NAME": "bridge",
                "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR", **extra_env})
    code = ("import json, sys\n"
            "from bridge.adapters import clients\n"
            "created = []\n"
            "clients.shared_session().get_component('event_emitter').register('creating-client-class', "
            "lambda event_name, **_: created.append(event_name.rsplit('.', 1)[1]))\n"
            "import bridge.handler as h\n"
            "print(json.dumps({'xray': 'aws_xray_sdk' in sys.modules, 'built': h._bridge is not None, "
            "'clients': sorted(created)}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_the_xray_sdk_is_loaded_only_when_tracing_is_on() -> None:
    assert _import_handler({"POWERTOOLS_TRACE_DISABLED": "true"})["xray"] is False
    assert _import_handler({})["xray"] is True


def test_under_snapstart_the_bridge_and_its_sqs_and_sns_clients_are_built_during_init() -> None:
    env = {"POWERTOOLS_TRACE_DISABLED": "true", "BRIDGE_ACCOUNT_ID": "123456789012",
           "BRIDGE_PARKING_BUCKET": "b", "BRIDGE_CONFIG_PATH": str(DEV_CONFIG)}
    assert _import_handler(env)["built"] is False
    assert _import_handler(env)["clients"] == []
    snapshot = _import_handler({**env, "BRIDGE_SNAPSTART": "true"})
    assert snapshot["built"] is True
    # with the clients of every invocation (destinations and the audit topic): their service models
    # and endpoint rules are loaded inside the snapshot, not after each restore
    assert snapshot["clients"] == ["sns", "sqs"]
    # a missing variable does not fail the init: the first invocation reports it
    assert _import_handler({"BRIDGE_SNAPSTART": "true", "POWERTOOLS_TRACE_DISABLED": "true"})["built"] is False


def test_clients_share_one_session_and_can_be_created_from_several_threads_at_once(
    clients_created: list[str],
) -> None:
    # given: delivery's threads creating the SQS and SNS clients on their first sends, at the same moment
    settings = make_settings()
    start = threading.Barrier(4)

    def create(build: Any) -> Any:
        start.wait()
        return build(settings)

    # when
    with ThreadPoolExecutor(4) as pool:
        made = list(pool.map(create, [clients.sqs_client, clients.sns_client, clients.sqs_client,
                                      clients.sns_client]))

    # then: four working clients over one loader (service models and endpoint data read once), no boto3
    assert sorted(clients_created) == ["sns", "sns", "sqs", "sqs"]
    assert len({id(c._loader) for c in made}) == 1
    assert [c.meta.service_model.service_name for c in made] == ["sqs", "sns", "sqs", "sns"]


def test_a_cold_start_never_imports_boto3() -> None:
    # given: a fresh process, as a Lambda cold start is
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POWERTOOLS_", "BRIDGE_", "AWS_"))}
    env.update({"PYTHONPATH": str(root / "lambdas"), "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"})
    code = ("import json, sys, bridge.handler\n"
            "from pathlib import Path\n"
            "from bridge.adapters import clients\n"
            "from bridge.settings import Settings\n"
            "s = Settings(Path('c.json'), '123456789012', 'us-east-1', 'b')\n"
            "clients.sqs_client(s); clients.sns_client(s)\n"
            "print(json.dumps('boto3' in sys.modules))")

    # when: the handler is imported and the clients of a first invocation are created
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)

    # then: boto3 (its resources, s3transfer) was never loaded, only botocore
    assert json.loads(out.stdout.strip().splitlines()[-1]) is False


def test_the_loader_lists_the_bridges_services_and_every_client_the_bridge_uses_can_be_created(
    clients_created: list[str],
) -> None:
    # given: the shared session's loader, which lists only the bridge's services (botocore lists ~400
    # directories for each model type on a client's creation, to check the name)
    loader = clients.shared_session().get_component("data_loader")
    assert isinstance(loader, clients.BridgeServicesLoader)
    for type_name in ("service-2", "endpoint-rule-set-1"):
        assert loader.list_available_services(type_name) == sorted(clients.BRIDGE_SERVICES)

    # when: every client the bridge creates
    settings = make_settings(checkpoint_table="t")
    made = [clients.sqs_client(settings), clients.sns_client(settings), clients.s3_client(settings),
            clients.secrets_client(settings), clients.dynamodb_client(settings)]

    # then
    assert sorted(clients_created) == ["dynamodb", "s3", "secrets-manager", "sns", "sqs"]
    assert [c.meta.service_model.service_name for c in made] == ["sqs", "sns", "s3", "secretsmanager", "dynamodb"]


def test_the_loader_keeps_botocores_search_paths_aws_data_path_included(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    # given: a model directory named by AWS_DATA_PATH, as botocore reads it
    monkeypatch.setenv("AWS_DATA_PATH", str(tmp_path))

    # when
    loader = clients.new_session().get_component("data_loader")

    # then: searched first, then botocore's own data, as botocore.loaders.create_loader does
    assert loader.search_paths[0] == str(tmp_path)
    assert loader.search_paths[1:] == Loader().search_paths


class _MovedOs:
    """`os` as clients.py sees it, on a botocore whose data layout or loader surprises the listing."""

    def __init__(self, surprise: str) -> None:
        self.surprise = surprise
        self.path = self
        self.pathsep = os.pathsep

    def join(self, *parts: str) -> str:
        return os.path.join(*parts)

    def isdir(self, path: str) -> bool:
        if self.surprise == "raises":
            raise AttributeError("'Loader' object has no attribute 'file_loader'")
        return False  # "empty": no model where the listing looks

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)


@pytest.mark.parametrize("surprise", ["raises", "empty"])
def test_a_loader_the_listing_does_not_know_falls_back_to_botocores_listing(
        monkeypatch: pytest.MonkeyPatch, surprise: str) -> None:
    # given: the runtime's botocore, whose loader internals or data layout the bridge's listing misreads
    loader = clients.new_session().get_component("data_loader")
    monkeypatch.setattr(clients, "os", _MovedOs(surprise))

    # when
    listed = loader.list_available_services("service-2")

    # then: botocore's own listing answers (every service it has), so the clients are still created
    assert set(clients.BRIDGE_SERVICES) <= set(listed)
    assert listed == Loader().list_available_services("service-2")


def test_a_botocore_whose_loader_cannot_be_built_keeps_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    # given: a botocore whose Loader takes other arguments than this one
    def changed_loader(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("Loader.__init__() got an unexpected keyword argument 'extra_search_paths'")

    monkeypatch.setattr(clients, "BridgeServicesLoader", changed_loader)

    # when
    session = clients.new_session()

    # then: botocore's loader, and a client the bridge uses is created from it
    assert type(session.get_component("data_loader")) is Loader
    sqs = session.create_client("sqs", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b")
    assert sqs.meta.service_model.service_name == "sqs"


@pytest.mark.parametrize("make_client", [clients.sqs_client, clients.sns_client])
def test_with_direct_sends_off_the_send_clients_send_their_batches_through_botocore(
        make_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # given: the operators' switch (BRIDGE_DIRECT_SENDS=off) and the default, with credentials at hand
    from bridge.adapters import direct  # noqa: PLC0415
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    operation = "SendMessageBatch" if make_client is clients.sqs_client else "PublishBatch"
    on, off = make_client(make_settings()), make_client(make_settings(direct_sends=False))

    # then: the default sends directly; with the switch off the batch call is the client's own method
    assert isinstance(direct.batch_call(on, operation), direct.DirectBatchCall)
    call = direct.batch_call(off, operation)
    assert not isinstance(call, direct.DirectBatchCall)
    assert call.__name__ == ("send_message_batch" if operation == "SendMessageBatch" else "publish_batch")
