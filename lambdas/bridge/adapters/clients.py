"""AWS clients, created once per cold start with the endpoint and retry settings the bridge needs.

Every client comes from one botocore session (`shared_session`), so the loader, the endpoint data and
the credentials are read once however many services the bridge uses. The session is botocore's, not
boto3's: importing boto3 (its resources and s3transfer, which the bridge never uses) and setting up
its default session cost about 30 ms of a cold start here, for clients that are the same botocore
clients (docs/decisions.md, 2026-12-01).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING, Any

import botocore.session
from botocore.config import Config
from botocore.loaders import Loader

from bridge.adapters import direct, errors, query_body, sqs_body
from bridge.config import MAX_CONCURRENCY
from bridge.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

# SQS and SNS sends are retried by bridge.delivery (bounded by max_delivery_attempts, with jitter),
# so botocore must not retry them again underneath; S3 and Secrets Manager keep botocore's retries.
# `total_max_attempts` counts the first request; botocore's `max_attempts` counts retries only, so
# `max_attempts: 1` meant two HTTP requests per attempt (up to 8 per message with 4 attempts).
# Sends skip botocore's parameter validation (about a quarter of the client's CPU per batch): their
# entries are built by bridge.adapters.batching from typed messages (strings only, sizes and
# characters checked before packing), and a request the service still refuses comes back as a
# sender-fault error that is parked without retrying, as a ParamValidationError would be.
# Delivery sends from up to `max_concurrency` threads through one client: botocore keeps only
# `max_pool_connections` (default 10) connections, and a thread beyond them opens a new connection
# per request and throws it away afterwards (a TCP and TLS handshake each time). The pool holds
# connections as threads open them, so sizing it for the largest allowed concurrency costs nothing.
SEND_TOTAL_ATTEMPTS = 1
_SEND_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": SEND_TOTAL_ATTEMPTS},
                      connect_timeout=5, read_timeout=20, parameter_validation=False,
                      max_pool_connections=MAX_CONCURRENCY)
_OTHER_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=20)
# Signing keys are read while a batch waits; a Secrets Manager outage must fail fast (the record is
# parked signing_key_unavailable and the failure remembered), not eat the function's timeout.
_SECRETS_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 2}, connect_timeout=2, read_timeout=5)


# Checkpoints are read and written while a batch waits: a slow table must cost little, and a failed
# write only costs a possible duplicate later, so timeouts are short.
_CHECKPOINT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2,
                            read_timeout=5)


# The services the bridge creates clients for (the rotation function uses the runtime's boto3).
BRIDGE_SERVICES = ("dynamodb", "s3", "secretsmanager", "sns", "sqs")


class BridgeServicesLoader(Loader):
    """botocore's loader, except that the services it lists as available are the bridge's.

    Creating a client asks the loader for every available service, for the service model and again
    for the endpoint rules, to check that the name exists: botocore lists its data directory (about
    400 services) and probes each one's versions, about 15 ms of every cold start here, for a list the
    bridge never needs. Everything else (search paths, AWS_DATA_PATH, models, extras) is botocore's."""

    def list_available_services(self, type_name: str) -> list[str]:
        """The bridge's services that have a `type_name` model in a search path, sorted (as botocore's).

        On Lambda, botocore is the runtime's, not our pin: when this listing meets a loader or a data
        layout it does not know (an attribute gone, no service found where it looks), botocore's own
        listing answers, slower but right, rather than a client failing to be created."""
        found = set()
        try:
            for root in self.search_paths:
                for service in BRIDGE_SERVICES:
                    directory = os.path.join(root, service)
                    if os.path.isdir(directory) and any(
                            self.file_loader.exists(os.path.join(directory, version, type_name))
                            for version in os.listdir(directory)):
                        found.add(service)
        except Exception:  # any surprise in botocore's internals: its own listing
            return list(super().list_available_services(type_name))
        if not found:  # the models are not laid out where this looks
            return list(super().list_available_services(type_name))
        return sorted(found)


_session: botocore.session.Session | None = None
# botocore sessions are not thread-safe, and delivery's threads create the SQS and SNS clients on
# their first sends, possibly at once; the clients themselves are thread-safe.
_session_lock = threading.Lock()


def shared_session() -> botocore.session.Session:
    """The process's botocore session (created on first use): credentials and region from the
    environment, as boto3's default session reads them (`new_session`)."""
    global _session  # noqa: PLW0603 - one session per process, like boto3's default session
    with _session_lock:
        if _session is None:
            _session = new_session()
        return _session


def new_session() -> botocore.session.Session:
    """A botocore session whose loader is a `BridgeServicesLoader` with botocore's search paths
    (`botocore.loaders.create_loader`: the built-in data, ~/.aws/models, AWS_DATA_PATH)."""
    session = botocore.session.get_session()
    try:
        data_path = session.get_config_variable("data_path")
        extra = [os.path.expanduser(os.path.expandvars(p)) for p in data_path.split(os.pathsep)] if data_path else None
        loader = BridgeServicesLoader(extra_search_paths=extra)
    except Exception:  # a botocore whose loader API differs (the runtime's): its own loader
        return session
    session.register_component("data_loader", loader)
    return session


def _client(service: str, settings: Settings, config: Config) -> Any:
    session = shared_session()
    with _session_lock:
        return session.create_client(service, region_name=settings.region, endpoint_url=settings.endpoint_url,
                                     config=config)


def _send_directly(client: Any, settings: Settings, *, serializer: bool) -> None:
    """Install the direct call on a send client whose bridge serializer is in place, unless settings say
    off (BRIDGE_DIRECT_SENDS=off); log why not when it is not installed (the direct call itself logs
    whether it adopts a template, on the client's second batch)."""
    if not settings.direct_sends:
        direct.log_decision(client, ("settings", "BRIDGE_DIRECT_SENDS=off (settings.direct_sends: off)"))
    elif not serializer:
        direct.log_decision(client, ("client model", "the batch operation's shapes are not the bridge serializer's"))
    elif direct.install(client, keep=MAX_CONCURRENCY) is None:
        direct.log_decision(client, ("botocore internals", "this botocore's client lacks what the direct call reads"))


def sqs_client(settings: Settings) -> SQSClient:
    """SQS client for destinations and the bridge DLQ; a plain SendMessageBatch is written by `json.dumps`
    of the request instead of botocore's copy of it (bridge.adapters.sqs_body)."""
    client: SQSClient = _client("sqs", settings, _SEND_CONFIG)
    errors.guard_answers(client)  # an answer its parser cannot read: a retryable UnreadableAnswer
    _send_directly(client, settings, serializer=sqs_body.install(client))
    return client


def sns_client(settings: Settings) -> SNSClient:
    """SNS client for destinations and the audit topic; PublishBatch is serialised straight to its form
    body and any other body url-encoded once, before signing (bridge.adapters.query_body)."""
    client: SNSClient = _client("sns", settings, _SEND_CONFIG)
    errors.guard_answers(client)  # an answer its parser cannot read: a retryable UnreadableAnswer
    _send_directly(client, settings, serializer=query_body.install(client))
    return client


def s3_client(settings: Settings) -> S3Client:
    """S3 client for the parking bucket."""
    client: S3Client = _client("s3", settings, _OTHER_CONFIG)
    return client


def secrets_client(settings: Settings) -> SecretsManagerClient:
    """Secrets Manager client for producers' signing keys."""
    client: SecretsManagerClient = _client("secretsmanager", settings, _SECRETS_CONFIG)
    return client


def dynamodb_client(settings: Settings) -> DynamoDBClient:
    """DynamoDB client for the checkpoint table."""
    client: DynamoDBClient = _client("dynamodb", settings, _CHECKPOINT_CONFIG)
    return client
