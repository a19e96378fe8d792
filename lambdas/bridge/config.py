"""The bridge's declarative configuration: one typed model read by the CDK app and the handler.

The model is plain dataclasses over the standard library so that the Lambda package needs nothing
beyond Powertools and boto3. `BridgeConfig.from_dict` validates everything at once and raises a
`ConfigError` whose lines each name the field and say how to fix it.

The CDK app reads YAML (`load_config_file`), and writes the same document as JSON next to the
handler code; the handler validates it again at cold start with the same function.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import field
from pathlib import Path
from typing import Any, Literal

from bridge.frozen import frozen

# --- AWS service limits, named once -------------------------------------------------------------

SQS_MAX_MESSAGE_BYTES = 1_048_576  # SQS message and batch payload, raised to 1 MiB in Aug 2025
SNS_DEFAULT_MAX_MESSAGE_BYTES = 262_144  # SNS message and PublishBatch payload unless raised
SQS_EXISTING_QUEUE_DEFAULT_BYTES = 262_144  # assumed for an existing queue that does not state its limit
SNS_MAX_MESSAGE_BYTES = 1_048_576  # the ceiling a topic's MaximumMessageSize may be raised to
MAX_BATCH_ENTRIES = 10  # SendMessageBatch and PublishBatch
MAX_CONCURRENCY = 64  # settings.max_concurrency: send threads (and pooled connections) per invocation
MAX_MESSAGE_ATTRIBUTES = 10  # SQS; SNS raw delivery to SQS drops messages with more
SQS_QUEUE_NAME_MAX = 80
# settings.operator_role_arns: every role is a principal of the bridge DLQ's policy and of each queue `bridge
# replay` reads or writes, and is named again in their Deny statements. SQS allows 50 principals and 8,192
# bytes per queue policy (SQS Developer Guide, "Amazon SQS policy quotas"), and those policies hold about
# 1,500 bytes and 3 principals without operators: 40 roles whose ARNs are 2,800 characters together (70 on
# average) fit, with room for a destination's consumers and direct producers. Each role also gets its own
# statement in the live alias's policy (Lambda: 20 KB) and is named in four statements of the parking
# bucket's (S3: 20 KB): both stay under half their quota. infra.policy_sizes checks every policy on synth.
MAX_OPERATOR_ROLES = 40
MAX_OPERATOR_ARN_CHARS = 2_800
# Each operator role is also the Principal of one AWS::Lambda::Permission on the live alias, which CloudFormation
# takes only up to 256 characters (the resource's schema: Principal maxLength 256, as cfn-lint bundles it), though
# IAM allows a role path of 512 characters and botocore's lambda model a Principal of 2,048: a longer ARN fails
# the deploy when it reaches that permission.
MAX_OPERATOR_ARN_LENGTH = 256
SQS_MIN_RETENTION_SECONDS = 60  # MessageRetentionPeriod
SQS_MAX_RETENTION_SECONDS = 1_209_600  # 14 days: every dead-letter queue keeps messages this long
FIFO_DEDUP_ID_MAX = 128
ESM_MAX_BATCH_SIZE = 10_000
ESM_MAX_BATCHING_WINDOW_SECONDS = 300
ESM_MAX_RECORD_AGE_SECONDS = 604_800  # MaximumRecordAgeInSeconds ceiling; the age a redelivery can reach
# Checkpoints outlive the oldest record the mapping can still redeliver by a day, for redrives of
# its S3 on-failure objects after an outage is fixed.
CHECKPOINT_TTL_MARGIN_SECONDS = 86_400
OUTAGE_RETRY_MAX_SECONDS = 3_600  # failing a batch back longer than this blocks its partitions for too long
ESM_MAX_CONSUMER_GROUP_ID = 200

# Attributes the bridge sets itself (content-encoding only on a raw body that is not UTF-8; `producer`
# names a verified producer, `producer-unverified` an unverified attribution, in the same slot);
# header attributes share the rest of the 10.
RESERVED_ATTRIBUTES = ("correlation-id", "record-id", "message-id", "producer", "content-encoding")
UNVERIFIED_PRODUCER_ATTRIBUTE = "producer-unverified"
MAX_HEADER_ATTRIBUTES = MAX_MESSAGE_ATTRIBUTES - len(RESERVED_ATTRIBUTES)
# A claim-check pointer carries one more: the extended client libraries' `ExtendedPayloadSize`.
CLAIM_CHECK_SIZE_ATTRIBUTE = "ExtendedPayloadSize"
MAX_CLAIM_CHECK_HEADER_ATTRIBUTES = MAX_HEADER_ATTRIBUTES - 1
# SQS keeps a message at most 14 days (its DLQ counts from the first enqueue): a claim-check object
# must outlive every message pointing to it.
CLAIM_CHECK_DEFAULT_RETENTION_DAYS = 15
MAX_MESSAGE_ID_CHARS = 128  # a producer's signed message id; the attribute adds `<producer>:`

# Stages whose `production` flag defaults to true; any other name defaults to false.
PRODUCTION_ENVIRONMENTS = ("prod", "production")
# Validation uses fullmatch (a `$` matches before a trailing newline) and ASCII classes ([0-9], not `\d` or
# `\w`, which match any Unicode digit or letter) as AWS's own patterns do (botocore's models are Java regexes,
# where \w and \d are ASCII): a value validation passes must be one the deploy can use.
_ENVIRONMENT_RE = re.compile(r"^[a-z][a-z0-9]{0,15}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,38}[a-z0-9]$")
# SQS message attribute names: letters, digits, '_', '-' and '.', but no leading, trailing or doubled '.'
_ATTRIBUTE_RE = re.compile(r"^(?=.{1,256}$)[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")
_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_MSK_CLUSTER_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kafka:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):"
    r"cluster/(?P<cluster>[A-Za-z0-9-]+)/(?P<uuid>[A-Za-z0-9-]+)$"
)
_ARN_RE = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):"
    r"(?P<account>[0-9]{12}|):(?P<resource>\S+)$"  # \S: `.` took spaces, tabs and CRs
)
# An imported destination's name, the last part of its ARN: the stack grants the bridge sqs:SendMessage or
# sns:Publish on that ARN as written, so `*` or `orders*` would be every queue (topic) of the account, or of that
# prefix. SQS: letters, digits, `-`, `_`, at most 80 characters with a FIFO queue's `.fifo` (botocore sqs
# CreateQueue QueueName; SQS FIFO quotas: "The suffix counts towards the 80-character queue name quota"). SNS: the
# same characters, 1-256 (botocore sns topicName), and `.fifo` for a FIFO topic.
_DESTINATION_NAME_RE = {
    "sqs": re.compile(r"^(?=.{1,80}$)[A-Za-z0-9_-]+(?:\.fifo)?$"),
    "sns": re.compile(r"^[A-Za-z0-9_-]{1,256}(?:\.fifo)?$"),
}
# Key ARNs only: an IAM statement on an alias ARN does not grant use of the key behind it.
_KMS_KEY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/[A-Za-z0-9-]+$")

StartingPosition = Literal["TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"]
SourceKind = Literal["msk", "self-managed"]
DestinationType = Literal["sqs", "sns"]
BodyFormat = Literal["raw", "envelope"]
OversizeAction = Literal["park", "claim-check"]
UnmatchedAction = Literal["park", "skip", "route"]
SelfManagedAuth = Literal["sasl_scram_256", "sasl_scram_512", "mtls"]


class ConfigError(ValueError):
    """The configuration is invalid; `problems` lists one `field: what is wrong. Fix: ...` each."""

    def __init__(self, problems: Sequence[str], source: str = "config") -> None:
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


class _Problems:
    """Collects every problem in one pass so a user fixes the file once, not once per error."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}")


# --- Routing conditions -------------------------------------------------------------------------

NumericOp = Literal["=", "<", "<=", ">", ">="]
_NUMERIC_OPS: tuple[str, ...] = ("=", "<", "<=", ">", ">=")


@frozen
class Condition:
    """One test on one field of a record.

    kind:
      equals  - the field equals `value` (string, number or boolean; compared as JSON values)
      prefix  - the field is a string starting with `value`
      exists  - the field is present (`value` True) or absent (`value` False)
      numeric - the field is a number satisfying every (op, bound) in `comparisons`
      any_of  - any of `alternatives` holds
    """

    kind: Literal["equals", "prefix", "exists", "numeric", "any_of"]
    value: Any = None
    comparisons: tuple[tuple[NumericOp, float], ...] = ()
    alternatives: tuple[Condition, ...] = ()


@frozen
class Match:
    """All conditions must hold. Empty match = every record."""

    topic: Condition | None = None
    key: Condition | None = None
    headers: tuple[tuple[str, Condition], ...] = ()
    body: tuple[tuple[str, Condition], ...] = ()  # dotted JSON paths into the record value


@frozen
class Route:
    """Records matching `match` go to each destination named in `to`."""

    name: str
    match: Match
    to: tuple[str, ...]


@frozen
class Unmatched:
    """What happens to a record no route matches: parked, skipped or routed to `to`."""

    action: UnmatchedAction = "park"
    to: tuple[str, ...] = ()


# --- Source, producers, destinations ------------------------------------------------------------


@frozen
class Network:
    """The VPC, subnets and security groups the event-source mapping reaches the cluster through."""

    vpc_id: str | None = None
    subnet_ids: tuple[str, ...] = ()
    security_group_ids: tuple[str, ...] = ()


@frozen
class ProvisionedPollers:
    """Provisioned mode of the event-source mapping: the least and most event pollers."""

    minimum: int
    maximum: int


@frozen
class SourceRetry:
    """Retry controls of the event-source mapping; AWS allows them for Kafka only in provisioned mode."""

    max_attempts: int = 3
    max_record_age_seconds: int = 21_600
    bisect_on_error: bool = True


SchemaRegistryKind = Literal["glue", "confluent"]
SchemaRegistryAuth = Literal["basic", "client_certificate"]
_GLUE_REGISTRY_ARN_RE = re.compile(r"^arn:aws[a-z-]*:glue:[a-z0-9-]+:[0-9]{12}:registry/[A-Za-z0-9_$#.-]{1,255}$")
_SECRET_ARN_RE = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:\S+$")
_SCHEMA_ID_RE = re.compile(r"^([0-9]{1,10}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")


@frozen
class SchemaRegistry:
    """The mapping decodes records serialized with a schema registry (Avro, Protobuf, JSON Schema)
    and hands the function JSON, so body routes work unchanged. Provisioned mode only."""

    kind: SchemaRegistryKind
    uri: str  # glue: the registry ARN; confluent: https:// URL
    auth: SchemaRegistryAuth | None = None  # confluent: how Lambda authenticates, with secret_arn
    secret_arn: str | None = None
    attributes: tuple[str, ...] = ("value",)  # what the mapping decodes and validates: value and/or key
    # local runs only: schema id (Confluent) or schema version UUID (Glue) -> Avro schema file, which
    # the local poller decodes with as the mapping would with the registry
    local_schemas: tuple[tuple[str, str], ...] = ()

    @property
    def registry_name(self) -> str:
        return self.uri.rsplit("/", 1)[1] if self.kind == "glue" else ""


@frozen
class Source:
    """Where records come from: the Kafka cluster, topics and event-source mapping settings."""

    kind: SourceKind
    topics: tuple[str, ...]
    consumer_group_id: str
    batch_size: int = 500
    batching_window_seconds: int = 1
    starting_position: StartingPosition = "TRIM_HORIZON"
    starting_position_timestamp: float | None = None
    cluster_arn: str | None = None  # msk
    bootstrap_servers: tuple[str, ...] = ()  # self-managed
    auth: SelfManagedAuth | None = None  # self-managed
    secret_arn: str | None = None  # self-managed: SASL/SCRAM credentials or mTLS client certificate
    network: Network = field(default_factory=Network)
    provisioned_pollers: ProvisionedPollers | None = None
    retry: SourceRetry | None = None
    kms_key_arn: str | None = None  # self-managed: the customer-managed key encrypting secret_arn
    # routes as the mappings' filter criteria: records no route selects never reach the function
    # (bridge.filter_pushdown); needs unmatched: skip
    filter_pushdown: bool = False
    schema_registry: SchemaRegistry | None = None

    def group_id_for(self, topic: str) -> str:
        """Lambda requires a distinct consumer group per event-source mapping, so one per topic."""
        return f"{self.consumer_group_id}-{topic}"

    @property
    def cluster_parts(self) -> dict[str, str]:
        """partition, region, account, cluster, uuid of the MSK cluster ARN (msk only)."""
        m = _MSK_CLUSTER_ARN_RE.fullmatch(self.cluster_arn or "")
        if not m:
            raise ValueError("source.cluster_arn is not an MSK cluster ARN")
        return m.groupdict()


@frozen
class OidcIdentity:
    """An OIDC identity (issuer, audience, subject) a producer assumes its role with."""

    issuer: str  # https://token.actions.githubusercontent.com, https://example.okta.com/oauth2/default
    audience: str
    subject: str
    provider_arn: str | None = None  # an existing IAM OIDC provider; otherwise derived from issuer

    @property
    def issuer_host(self) -> str:
        return self.issuer.removeprefix("https://").rstrip("/")


@frozen
class Producer:
    """A service that writes to the bridge's topics, with its identity and what it may do."""

    name: str
    topics: tuple[str, ...]
    aws_principal: str | None = None
    oidc: OidcIdentity | None = None
    signing: bool = False  # a per-producer HMAC key in Secrets Manager; records carry a signature
    direct_send_to: tuple[str, ...] = ()  # SQS destinations this producer may also write directly
    # a principal in another account may assume the role only with this sts:ExternalId ...
    external_id: str | None = None
    # ... or only from within this AWS Organization (aws:PrincipalOrgID)
    org_id: str | None = None
    # signed records older than this (by their signed timestamp) are parked `stale`; None: no limit,
    # because reprocessing a topic from the start is a normal operation
    max_age_seconds: int | None = None


@frozen
class Subscription:
    """An SQS destination subscribed to an SNS destination (raw delivery, its own DLQ)."""

    queue: str
    filter_policy: Mapping[str, Any] | None = None
    raw_message_delivery: bool = True


@frozen
class Destination:
    """A queue or topic records are delivered to, created by the stack or existing (`arn`)."""

    name: str
    type: DestinationType
    fifo: bool = False
    arn: str | None = None  # an existing queue/topic; otherwise the stack creates it
    group_id: str = "key"  # FIFO: key | topic | partition | header:<name> | static:<value>
    header_attributes: tuple[str, ...] = ()  # Kafka headers copied into message attributes
    body: BodyFormat = "raw"
    max_receive_count: int = 5  # SQS: receives before a message moves to the destination's DLQ
    # SNS: the topic's MaximumMessageSize (default 256 KiB). SQS: a created queue's MaximumMessageSize, or
    # an existing queue's actual limit (default 1 MiB). Either way, the bridge packs messages to fit it.
    max_message_bytes: int | None = None
    accept_from: tuple[str, ...] = ()  # only records signed by one of these producers
    subscriptions: tuple[Subscription, ...] = ()  # SNS only
    kms_key_arn: str | None = None  # existing queue/topic under its own customer-managed key
    # over message_limit: park the record (too_large), or store the message in S3 and send a pointer in
    # the AWS extended client libraries' format
    oversize: OversizeAction = "park"
    retention_seconds: int | None = None  # a created queue's MessageRetentionPeriod (None: SQS's 4 days)
    consumers: tuple[str, ...] = ()  # created SQS: the only roles that may receive, delete and purge

    @property
    def created(self) -> bool:
        return self.arn is None

    @property
    def message_limit(self) -> int:
        """The largest message (and batch payload) the queue or topic takes."""
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        if self.type == "sqs":
            # An existing queue keeps the MaximumMessageSize it was created with; queues from before
            # the 1 MiB change hold 256 KiB, so that is the safe assumption until max_message_bytes says.
            return SQS_MAX_MESSAGE_BYTES if self.created else SQS_EXISTING_QUEUE_DEFAULT_BYTES
        return SNS_DEFAULT_MAX_MESSAGE_BYTES

    def physical_name(self, bridge_name: str) -> str:
        """The queue or topic name in AWS; FIFO names end in `.fifo` as AWS requires."""
        if self.arn:
            return self.arn.rsplit(":", 1)[1]
        base = f"{bridge_name}-{self.name}"
        return f"{base}.fifo" if self.fifo else base

    def dlq_physical_name(self, bridge_name: str) -> str:
        base = f"{bridge_name}-{self.name}-dlq"
        return f"{base}.fifo" if self.fifo else base


@frozen
class BridgeSettings:
    """The document's `settings:` block: header names, delivery, checkpoints, keys and runtime switches."""

    correlation_header: str = "correlation-id"
    producer_header: str = "x-bridge-producer"
    signature_header: str = "x-bridge-signature"
    message_id_header: str = "x-bridge-message-id"
    max_delivery_attempts: int = 4
    retry_base_delay_ms: int = 100
    max_concurrency: int = 32  # see docs/decisions.md, 2026-12-02 "Thirty-two send threads at most"
    memory_mb: int = 512
    timeout_seconds: int = 120
    audit_max_correlation_ids: int = 100
    # Record per batch what reached which destination so a redelivered batch skips it
    # (bridge.checkpoints). None in a document means "the stage's default": on in production.
    checkpoints: bool = False
    # With checkpoints on: send requests to standard queues and topics (all together) under way at once,
    # each until its checkpoint is written, so a crash re-sends at most this many requests of 10 messages.
    # FIFO destinations are not capped (SQS drops their re-sends by deduplication id).
    checkpoint_in_flight: int = 1
    # With checkpoints on: messages per send request to standard queues and topics (FIFO keeps 10). What a
    # crash re-sends is checkpoint_in_flight x this; 5 halves it against 10, at twice the requests.
    checkpoint_request_entries: int = 4
    # Fail a batch back to the event-source mapping, for its own retries, for up to this many
    # seconds before parking what a destination or Secrets Manager outage kept back (0 = park now).
    outage_retry_seconds: int = 0
    claim_check_retention_days: int = CLAIM_CHECK_DEFAULT_RETENTION_DAYS  # lifecycle of claim-check objects
    # parked payloads (parking bucket objects, current and noncurrent versions) expire after this many days
    parking_retention_days: int = 30
    # roles that may read parked payloads besides the bridge (whoever runs `bridge redrive`)
    operator_role_arns: tuple[str, ...] = ()
    # after a signing key rotation, the previous key verifies for this long, then never again
    signing_key_grace_seconds: int = 86_400
    # signing keys are rotated (a new random key) every this many days; 0: only when rotated by hand
    signing_key_rotation_days: int = 90
    # The Powertools Tracer (X-Ray SDK, a subsegment per AWS call). Off: Lambda's own active tracing
    # only; the SDK adds 115-400 ms to a cold start (benchmarks/RESULTS.md).
    tracing: bool = False
    # Lambda SnapStart on published versions (python3.12+): new environments resume from a snapshot
    # taken after init; caveats in docs/config.md.
    snapstart: bool = False
    # SendMessageBatch and PublishBatch on the wire directly (bridge.adapters.direct). Off: through
    # botocore, the stack sets BRIDGE_DIRECT_SENDS=off; the switch should AWS answer what the direct
    # path does not expect (docs/runbook.md).
    direct_sends: bool = True


_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_SNS_TOPIC_ARN_RE = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}$")


@frozen
class Alarms:
    """CloudWatch alarms of the stack (infra/constructs/alarms.py; docs/runbook.md says what each means).

    Notifications go to `topic_arn` (an existing topic) or to a topic the stack creates, which `email`
    addresses subscribe to. Thresholds count per 5-minute period unless their name says otherwise.
    """

    enabled: bool = True
    topic_arn: str | None = None
    email: tuple[str, ...] = ()
    offset_lag: int = 10_000  # records behind, per mapping, for 3 periods in a row
    bridge_dlq_max_age_seconds: int = 3_600  # oldest parked record not yet redriven
    audit_queue_max_age_seconds: int = 1_800  # oldest audit event nobody consumed
    duration_percent_of_timeout: int = 80  # slowest invocation, as a share of the function timeout
    parked_records: int = 1  # records parked for one reason
    function_errors: int = 1
    throttles: int = 1
# CloudWatch Logs accepts only these retention periods (botocore logs PutRetentionPolicyRequest.retentionInDays).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
RolloutStrategy = Literal["all_at_once", "canary", "linear"]


@frozen
class Rollout:
    """How a deploy shifts the function's `live` alias to the new version (CodeDeploy), and what rolls it back.

    canary: `percent` of invocations for `interval_minutes`, then the rest; linear: `percent` more every
    `interval_minutes`; all_at_once: at once (the alarms still roll back a deploy that is in progress).
    """

    strategy: RolloutStrategy = "canary"
    percent: int = 10
    interval_minutes: int = 5
    # rollback when more records than this are parked in one minute while the deploy runs
    max_parked_per_minute: int = 10


@frozen
class Deployment:
    """Stage-dependent deployment choices (infra only; the handler ignores them). Defaults read `production`."""

    test_events: bool = True  # console test events; production ships only those that deliver nothing
    reserved_concurrency: int | None = None
    log_retention_days: int = 30
    rollout: Rollout = field(default_factory=Rollout)


@frozen
class BridgeConfig:
    """The whole validated document: source, producers, destinations, routes and settings of one bridge."""

    name: str
    source: Source
    producers: tuple[Producer, ...]
    destinations: tuple[Destination, ...]
    routes: tuple[Route, ...]
    unmatched: Unmatched
    settings: BridgeSettings
    # The deployment stage (dev, staging, prod, ...) and whether it is a production one: defaults
    # that differ between stages (console test events, checkpoints, retention) read `production`.
    environment: str = "dev"
    production: bool = False
    alarms: Alarms = field(default_factory=Alarms)
    deployment: Deployment = field(default_factory=Deployment)

    @property
    def prefix(self) -> str:
        """`<name>-<environment>`: every resource name starts with it, so the stages of one bridge never
        share a queue, topic or secret, even in one account."""
        return resource_prefix(self.name, self.environment)

    # names of the bridge's own resources, shared by the CDK stack and the local stack
    @property
    def checkpoint_table_name(self) -> str:
        return f"{self.prefix}-checkpoints"

    @property
    def checkpoint_ttl_seconds(self) -> int:
        """How long progress is kept: past the oldest record the mapping may still redeliver."""
        age = self.source.retry.max_record_age_seconds if self.source.retry else -1
        return (age if age > 0 else ESM_MAX_RECORD_AGE_SECONDS) + CHECKPOINT_TTL_MARGIN_SECONDS

    @property
    def bridge_dlq_name(self) -> str:
        return f"{self.prefix}-bridge-dlq"

    @property
    def audit_topic_name(self) -> str:
        return f"{self.prefix}-audit"

    @property
    def audit_queue_name(self) -> str:
        return f"{self.prefix}-audit-monitor"

    @property
    def audit_queue_dlq_name(self) -> str:
        return f"{self.prefix}-audit-monitor-dlq"

    @property
    def audit_subscription_dlq_name(self) -> str:
        return f"{self.prefix}-audit-subscription-dlq"

    def subscription_dlq_name(self, topic: Destination, queue: str) -> str:
        """The DLQ of the subscription of SQS destination `queue` to SNS destination `topic`."""
        return subscription_dlq_name(self.prefix, topic, queue)

    def signing_secret_name(self, producer: str) -> str:
        return f"{self.prefix}/producers/{producer}/signing-key"

    def destination(self, name: str) -> Destination:
        for d in self.destinations:
            if d.name == name:
                return d
        raise KeyError(name)

    def producer(self, name: str) -> Producer | None:
        return next((p for p in self.producers if p.name == name), None)

    @property
    def claim_check(self) -> bool:
        """Whether any destination stores oversize messages in S3 (the stack then creates the bucket)."""
        return any(d.oversize == "claim-check" for d in self.destinations)

    def routed_destinations(self) -> tuple[Destination, ...]:
        """Destinations the bridge itself sends to (routes and the unmatched policy), in config order."""
        used = {n for r in self.routes for n in r.to} | set(self.unmatched.to)
        return tuple(d for d in self.destinations if d.name in used)

    def producers_for_topic(self, topic: str) -> tuple[Producer, ...]:
        return tuple(p for p in self.producers if topic in p.topics)

    @classmethod
    def from_dict(cls, data: Any, source: str = "config") -> BridgeConfig:
        """Validate a parsed config document; raise ConfigError listing every problem."""
        return _parse(data, source)


def resource_prefix(name: str, environment: str) -> str:
    """The prefix of every resource name of bridge `name` in stage `environment`."""
    return f"{name}-{environment}"


def subscription_dlq_name(bridge_name: str, topic: Destination, queue: str) -> str:
    """The DLQ of the subscription of SQS destination `queue` to SNS destination `topic` (FIFO if the topic is)."""
    base = f"{bridge_name}-{topic.name}-to-{queue}-dlq"
    return f"{base}.fifo" if topic.fifo else base


def load_config_file(path: str | Path) -> BridgeConfig:
    """Read and validate a YAML (`.yaml`/`.yml`) or JSON config file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError([f"file not found: {p}. Fix: pass an existing file, e.g. config/dev.yaml"], str(p))
    text = p.read_text(encoding="utf-8")
    if p.suffix in (".yaml", ".yml"):
        import yaml  # noqa: PLC0415 - only the CDK app and local tools read YAML; the Lambda reads JSON

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([f"not valid YAML: {exc}"], str(p)) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError([f"not valid JSON: {exc}"], str(p)) from None
    return BridgeConfig.from_dict(data, str(p))


# --- Parsing ------------------------------------------------------------------------------------


def _parse(data: Any, source: str) -> BridgeConfig:
    pb = _Problems()
    if not isinstance(data, Mapping):
        raise ConfigError(["the document must be a mapping with name, source, destinations, routes"], source)
    _unknown(pb, "", data, {"name", "environment", "production", "source", "producers", "destinations", "routes",
                            "unmatched", "settings", "alarms", "deployment"})

    name = data.get("name")
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        pb.add("name", f"{name!r} is not a valid bridge name. Fix: 2-40 lowercase letters, digits and hyphens, "
                       "starting with a letter (it prefixes every queue and topic name)")
        name = "invalid"

    environment = _str(pb, "environment", data.get("environment", "dev"), pattern=_ENVIRONMENT_RE,
                       hint="1-16 lowercase letters and digits, starting with a letter, e.g. dev or prod") or "dev"
    production = _bool(pb, "production", data.get("production"), environment in PRODUCTION_ENVIRONMENTS)

    src = _parse_source(pb, data.get("source"))
    producers = _parse_list(pb, "producers", data.get("producers", []), _parse_producer)
    destinations = _parse_list(pb, "destinations", data.get("destinations"), _parse_destination, required=True)
    routes = _parse_list(pb, "routes", data.get("routes"), _parse_route, required=True)
    unmatched = _parse_unmatched(pb, data.get("unmatched", {"action": "park"}))
    settings = _parse_settings(pb, data.get("settings", {}), production)
    alarms = _parse_alarms(pb, data.get("alarms", {}))
    deployment = _parse_deployment(pb, data.get("deployment"), production)

    _cross_check(pb, resource_prefix(name, environment), src, producers, destinations, routes, unmatched, settings)
    if pb.items:
        raise ConfigError(pb.items, source)
    assert src is not None
    return BridgeConfig(name, src, tuple(producers), tuple(destinations), tuple(routes), unmatched, settings,
                        environment, production, alarms, deployment)


def _unknown(pb: _Problems, path: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for k in data:
        if k not in allowed:
            where = f"{path}.{k}" if path else str(k)
            pb.add(where, f"unknown field. Fix: remove it or use one of: {', '.join(sorted(allowed))}")


def _parse_list(pb: _Problems, path: str, raw: Any, parse: Any, required: bool = False) -> list[Any]:
    if raw is None:
        if required:
            pb.add(path, "is required. Fix: add a list (see config/dev.yaml)")
        return []
    if not isinstance(raw, list):
        pb.add(path, "must be a list")
        return []
    out = []
    for i, item in enumerate(raw):
        p = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            pb.add(p, "must be a mapping")
            continue
        parsed = parse(pb, p, item)
        if parsed is not None:
            out.append(parsed)
    return out


def _whitespace_around(value: str) -> str:
    return (f"{value!r} has whitespace around it (a YAML `|` or `>` block keeps the final newline). "
            "Fix: remove it, or write the block as `|-`")


def _str(pb: _Problems, path: str, raw: Any, required: bool = True, pattern: re.Pattern[str] | None = None,
         hint: str = "") -> str | None:
    if raw is None:
        if required:
            pb.add(path, f"is required. Fix: {hint or 'add it'}")
        return None
    if not isinstance(raw, str) or not raw:
        pb.add(path, f"must be a non-empty string. Fix: {hint or 'quote the value'}")
        return None
    if pattern and not pattern.fullmatch(raw):  # fullmatch: `$` alone would let a trailing newline through
        if raw.strip() != raw and pattern.fullmatch(raw.strip()):
            pb.add(path, _whitespace_around(raw))
        else:
            pb.add(path, f"{raw!r} is not valid. Fix: {hint}")
        return None
    return raw


# Characters no provider issues in a claim and that hide in a config file: controls (Cc: a newline, a tab, DEL,
# NEL), line and paragraph separators (Zl, Zp), every space but the ASCII one (Zs: a no-break space reads as a
# space and is not one), the zero-width space and the BOM (U+200B, U+FEFF: invisible, picked up by copy-paste), and
# surrogates (Cs: no UTF-8 token carries one). Other format characters (Cf) are written text: ZWNJ U+200C in
# Persian words, ZWJ U+200D in emoji sequences, RLM in right-to-left names; git takes them in a branch name. A code
# point this Python's Unicode tables do not know (Cn: an emoji newer than Unicode 14) is let through too.
# Refused among the format characters (review s10 R13): the bidi embedding, override and isolate controls, which make
# a value display as another ("Trojan Source": `refs/heads/` + U+202E + `niam` reads `refs/heads/main` in a review,
# and git takes it as a branch anyone with push access can create), and the invisible soft hyphen, word joiner,
# invisible operators and Mongolian vowel separator.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp", "Zs"})
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_INVISIBLE = frozenset("\u200b\ufeff\u00ad\u2060\u2061\u2062\u2063\u2064\u180e") | _BIDI_CONTROLS


def _hidden(c: str) -> bool:
    return c != " " and (c in _INVISIBLE or unicodedata.category(c) in _HIDDEN_CATEGORIES)


def _claim(pb: _Problems, path: str, raw: Any, claim: str, hint: str) -> str | None:
    """An OIDC claim's value (audience, subject) that a role trusts with `StringEquals`, compared as written.

    No pattern: a provider issues what it likes (GitHub's subject carries branch and environment names, which may
    hold spaces inside, `#`, `@`, `$` or non-ASCII letters; Auth0's has `|`), and IAM's client id type is any
    1-255 characters. Refused: whitespace around it and any invisible or control character (`_hidden`: no token
    carries them, so the role would trust nobody, silently), `${`, which IAM reads in a condition value as a policy
    variable: the token is then compared with the variable's value, not with the text, and
    `${<issuer host>:sub}` is every subject of the issuer; and `*` or `?`: `StringEquals` compares them as
    written, so `repo:org/*` (GitHub's `StringLike` example) trusts no token, silently. Git refuses both in a
    branch name (`git check-ref-format --branch 'feat*'`)."""
    value = _str(pb, path, raw, hint=hint)
    if value is None:
        return None
    if value.strip() != value:
        pb.add(path, _whitespace_around(value))
        return None
    hidden = next((c for c in value if _hidden(c)), None)
    if hidden is not None:
        why = (f"a bidirectional control: the value displays as text it is not (a reviewer reads one {claim}, the "
               "role trusts another)" if hidden in _BIDI_CONTROLS
               else f"a control or invisible character no token's {claim} carries")
        pb.add(path, f"{value!r} contains {hidden!r}, {why}. Fix: {hint}")
        return None
    if "${" in value:
        pb.add(path, f"{value!r} contains `${{`, which IAM reads as a policy variable: the role would compare the "
               f"token's {claim} with the variable's value, not with this text. Fix: {hint}")
        return None
    wildcard = next((c for c in value if c in "*?"), None)
    if wildcard is not None:
        pb.add(path, f"{value!r} contains {wildcard!r}, compared as written (StringEquals): a wildcard matches only "
               f"itself. Fix: {hint}")
        return None
    return value


def _int(pb: _Problems, path: str, raw: Any, default: int, lo: int, hi: int) -> int:
    if raw is None:
        return default
    problem = _int_problem(raw, lo, hi)
    if problem:
        pb.add(path, f"{problem}. Fix: a whole number from {lo} to {hi}")
        return default
    return int(raw)


def _optional_int(pb: _Problems, path: str, raw: Any, lo: int, hi: int) -> int | None:
    if raw is None:
        return None
    problem = _int_problem(raw, lo, hi)
    if problem:
        pb.add(path, f"{problem}. Fix: a whole number from {lo} to {hi}, or leave it out")
        return None
    return int(raw)


def _int_problem(raw: Any, lo: int, hi: int) -> str:
    """What is wrong with an integer setting's value, or "" when nothing is: the wrong type (a string, a
    float, a bool: YAML reads `true` and `2.5` as such) is a different mistake from a number out of range."""
    if isinstance(raw, bool) or not isinstance(raw, int):
        return f"must be a whole number, got {raw!r}"
    if not lo <= raw <= hi:
        return f"{raw!r} is out of range"
    return ""


def _bool(pb: _Problems, path: str, raw: Any, default: bool) -> bool:
    if raw is None:
        return default
    if not isinstance(raw, bool):
        pb.add(path, f"{raw!r} is not a boolean. Fix: true or false")
        return default
    return raw


def _str_list(pb: _Problems, path: str, raw: Any, pattern: re.Pattern[str] | None = None,
              hint: str = "", required: bool = False) -> tuple[str, ...]:
    if raw is None:
        if required:
            pb.add(path, f"is required. Fix: {hint or 'add a list'}")
        return ()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        pb.add(path, f"must be a list of strings. Fix: {hint or 'write [a, b]'}")
        return ()
    out = []
    for i, v in enumerate(raw):
        s = _str(pb, f"{path}[{i}]", v, pattern=pattern, hint=hint)
        if s is not None:
            out.append(s)
    if len(set(out)) != len(out):
        pb.add(path, "lists a value twice. Fix: remove the duplicate")
    return tuple(out)


def _choice(pb: _Problems, path: str, raw: Any, choices: tuple[str, ...], default: str | None) -> Any:
    if raw is None:
        if default is None:
            pb.add(path, f"is required. Fix: one of {', '.join(choices)}")
        return default
    if raw not in choices:
        pb.add(path, f"{raw!r} is not allowed. Fix: one of {', '.join(choices)}")
        return default
    return raw


def _parse_source(pb: _Problems, raw: Any) -> Source | None:
    path = "source"
    if not isinstance(raw, Mapping):
        pb.add(path, "is required: the Kafka cluster to read. Fix: add source.kind, source.topics, "
                     "source.consumer_group_id and source.cluster_arn (see config/dev.yaml)")
        return None
    _unknown(pb, path, raw, {"kind", "topics", "consumer_group_id", "batch_size", "batching_window_seconds",
                             "starting_position", "starting_position_timestamp", "cluster_arn",
                             "bootstrap_servers", "auth", "secret_arn", "kms_key_arn", "network",
                             "provisioned_pollers", "retry", "filter_pushdown", "schema_registry"})
    kind = _choice(pb, f"{path}.kind", raw.get("kind"), ("msk", "self-managed"), "msk")
    topics = _str_list(pb, f"{path}.topics", raw.get("topics"), _TOPIC_RE,
                       "list the Kafka topics to consume (letters, digits, '.', '_' and '-')", required=True)
    if raw.get("topics") is not None and not topics:
        pb.add(f"{path}.topics", "is empty. Fix: list at least one topic to consume")
    group = _str(pb, f"{path}.consumer_group_id", raw.get("consumer_group_id"),
                 pattern=re.compile(r"^[A-Za-z0-9._-]{1,200}$"),
                 hint="a Kafka consumer group id; the bridge appends -<topic> for each topic") or "invalid"
    longest = max(topics, key=len, default="")
    if len(f"{group}-{longest}") > ESM_MAX_CONSUMER_GROUP_ID:
        # Lambda's CreateEventSourceMapping (ConsumerGroupId) takes at most 200 characters
        pb.add(f"{path}.consumer_group_id", f"with -{longest} appended it is {len(group) + 1 + len(longest)} "
               f"characters, over the {ESM_MAX_CONSUMER_GROUP_ID} an event-source mapping takes. Fix: shorten it")
    batch_size = _int(pb, f"{path}.batch_size", raw.get("batch_size"), 500, 1, ESM_MAX_BATCH_SIZE)
    window = _int(pb, f"{path}.batching_window_seconds", raw.get("batching_window_seconds"), 1, 0,
                  ESM_MAX_BATCHING_WINDOW_SECONDS)
    start = _choice(pb, f"{path}.starting_position", raw.get("starting_position"),
                    ("TRIM_HORIZON", "LATEST", "AT_TIMESTAMP"), "TRIM_HORIZON")
    ts = raw.get("starting_position_timestamp")
    if start == "AT_TIMESTAMP" and not isinstance(ts, (int, float)):
        pb.add(f"{path}.starting_position_timestamp", "is required with AT_TIMESTAMP. Fix: Unix seconds, "
                                                     "e.g. 1767225600")
    cluster_arn = raw.get("cluster_arn")
    servers: tuple[str, ...] = ()
    auth = None
    secret_arn = raw.get("secret_arn")
    kms_key_arn = _kms_key_arn(pb, f"{path}.kms_key_arn", raw.get("kms_key_arn"),
                               "the customer-managed key encrypting the Kafka credentials secret")
    if kind == "msk":
        if not isinstance(cluster_arn, str) or not _MSK_CLUSTER_ARN_RE.fullmatch(cluster_arn):
            what = "is required" if cluster_arn is None else f"{cluster_arn!r} is not an MSK cluster ARN"
            pb.add(f"{path}.cluster_arn", f"{what}. Fix: "
                   "arn:aws:kafka:<region>:<account>:cluster/<name>/<uuid> (aws kafka list-clusters-v2)")
        for k in ("bootstrap_servers", "auth", "kms_key_arn"):
            if raw.get(k) is not None:
                pb.add(f"{path}.{k}", "applies to kind: self-managed only. Fix: remove it (MSK uses IAM auth)")
    else:
        servers = _str_list(pb, f"{path}.bootstrap_servers", raw.get("bootstrap_servers"),
                            re.compile(r"^[A-Za-z0-9.-]+:[0-9]{1,5}$"), "host:port entries", required=True)
        auth = _choice(pb, f"{path}.auth", raw.get("auth"), ("sasl_scram_256", "sasl_scram_512", "mtls"), None)
        if not isinstance(secret_arn, str) or not _SECRET_ARN_RE.fullmatch(secret_arn):
            what = "is required for self-managed Kafka" if secret_arn is None else f"{secret_arn!r} is not valid"
            pb.add(f"{path}.secret_arn", f"{what}. Fix: the Secrets Manager ARN "
                                         "holding the SASL/SCRAM credentials or the mTLS client certificate")
        if cluster_arn is not None:
            pb.add(f"{path}.cluster_arn", "applies to kind: msk only. Fix: remove it")
    network = _parse_network(pb, f"{path}.network", raw.get("network"), kind)
    pollers = None
    if raw.get("provisioned_pollers") is not None:
        pp = raw["provisioned_pollers"]
        if not isinstance(pp, Mapping):
            pb.add(f"{path}.provisioned_pollers", "must be a mapping. Fix: {minimum: 1, maximum: 3}")
        else:
            lo = _int(pb, f"{path}.provisioned_pollers.minimum", pp.get("minimum"), 1, 1, 200)
            hi = _int(pb, f"{path}.provisioned_pollers.maximum", pp.get("maximum"), max(lo, 1), 1, 2000)
            if hi < lo:
                pb.add(f"{path}.provisioned_pollers", "maximum is below minimum. Fix: maximum >= minimum")
            pollers = ProvisionedPollers(lo, hi)
    retry = None
    if raw.get("retry") is not None:
        rr = raw["retry"]
        if pollers is None:
            pb.add(f"{path}.retry", "needs provisioned mode: AWS accepts Kafka retry settings only with "
                                    "provisioned pollers. Fix: add source.provisioned_pollers or remove retry")
        if not isinstance(rr, Mapping):
            pb.add(f"{path}.retry", "must be a mapping. Fix: {max_attempts: 3, max_record_age_seconds: 21600}")
        else:
            _unknown(pb, f"{path}.retry", rr, {"max_attempts", "max_record_age_seconds", "bisect_on_error"})
            retry = SourceRetry(
                _int(pb, f"{path}.retry.max_attempts", rr.get("max_attempts"), 3, 0, 10_000),
                _int(pb, f"{path}.retry.max_record_age_seconds", rr.get("max_record_age_seconds"), 21_600,
                     60, 604_800),
                _bool(pb, f"{path}.retry.bisect_on_error", rr.get("bisect_on_error"), True),
            )
    return Source(kind, topics, group, batch_size, window, start, ts if start == "AT_TIMESTAMP" else None,
                  cluster_arn if kind == "msk" else None, servers, auth,
                  secret_arn if kind == "self-managed" else None, network, pollers, retry,
                  kms_key_arn if kind == "self-managed" else None,
                  _bool(pb, f"{path}.filter_pushdown", raw.get("filter_pushdown"), False),
                  _parse_schema_registry(pb, f"{path}.schema_registry", raw.get("schema_registry"), pollers))


def _parse_schema_registry(pb: _Problems, path: str, raw: Any,
                           pollers: ProvisionedPollers | None) -> SchemaRegistry | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        pb.add(path, "must be a mapping. Fix: {kind: glue, uri: arn:aws:glue:<region>:<account>:registry/<name>}")
        return None
    _unknown(pb, path, raw, {"kind", "uri", "auth", "secret_arn", "attributes", "local_schemas"})
    if pollers is None:
        pb.add(path, "needs provisioned mode: Lambda decodes schema-registry records only with provisioned "
                     "pollers. Fix: add source.provisioned_pollers, or remove schema_registry")
    kind = _choice(pb, f"{path}.kind", raw.get("kind"), ("glue", "confluent"), None)
    if kind == "glue":
        uri = _str(pb, f"{path}.uri", raw.get("uri"), pattern=_GLUE_REGISTRY_ARN_RE,
                   hint="the Glue registry ARN, arn:aws:glue:<region>:<account>:registry/<name>")
    else:
        uri = _str(pb, f"{path}.uri", raw.get("uri"), pattern=re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]+)?(/\S*)?$"),
                   hint="the registry's https:// URL (plain http would send the credentials in clear)")
    auth = _choice(pb, f"{path}.auth", raw.get("auth"), ("basic", "client_certificate"), "basic")
    secret = _str(pb, f"{path}.secret_arn", raw.get("secret_arn"), required=kind == "confluent",
                  pattern=_SECRET_ARN_RE, hint="the Secrets Manager ARN holding the registry credentials")
    if kind == "glue" and (raw.get("auth") is not None or secret is not None):
        pb.add(path, "auth and secret_arn apply to a Confluent registry; Lambda reads a Glue registry with the "
                     "function's role. Fix: remove them")
    attributes = _str_list(pb, f"{path}.attributes", raw.get("attributes", ["value"]), re.compile(r"^(key|value)$"),
                           "key and/or value")
    if not attributes:
        pb.add(f"{path}.attributes", "is empty. Fix: [value], [key] or [key, value]")
    local: list[tuple[str, str]] = []
    raw_local = raw.get("local_schemas") or {}
    if not isinstance(raw_local, Mapping):
        pb.add(f"{path}.local_schemas", "must map schema ids to Avro schema files. Fix: {\"1\": schemas/order.avsc}")
    else:
        for sid, file in raw_local.items():
            if not _SCHEMA_ID_RE.fullmatch(str(sid)) or not isinstance(file, str) or not file:
                pb.add(f"{path}.local_schemas.{sid}", "needs a Confluent schema id (digits) or a Glue schema version "
                       "UUID, mapped to an .avsc file. Fix: {\"1\": schemas/order.avsc}")
            else:
                local.append((str(sid), file))
    if kind is None or uri is None:
        return None
    return SchemaRegistry(kind, uri, auth if kind == "confluent" else None, secret if kind == "confluent" else None,
                          attributes, tuple(local))


def _parse_network(pb: _Problems, path: str, raw: Any, kind: str) -> Network:
    if raw is None:
        if kind == "self-managed":
            pb.add(path, "is required for self-managed Kafka in a VPC. Fix: add vpc_id, subnet_ids and "
                         "security_group_ids the event-source mapping can reach the brokers from")
        return Network()
    if not isinstance(raw, Mapping):
        pb.add(path, "must be a mapping with vpc_id, subnet_ids, security_group_ids")
        return Network()
    _unknown(pb, path, raw, {"vpc_id", "subnet_ids", "security_group_ids"})
    network = Network(
        _str(pb, f"{path}.vpc_id", raw.get("vpc_id"), required=False, pattern=re.compile(r"^vpc-[0-9a-f]+$"),
             hint="vpc-0123abcd"),
        _str_list(pb, f"{path}.subnet_ids", raw.get("subnet_ids"), re.compile(r"^subnet-[0-9a-f]+$"),
                  "subnet-0123abcd"),
        _str_list(pb, f"{path}.security_group_ids", raw.get("security_group_ids"),
                  re.compile(r"^sg-[0-9a-f]+$"), "sg-0123abcd"),
    )
    if kind == "self-managed" and bool(network.subnet_ids) != bool(network.security_group_ids):
        pb.add(path, "subnet_ids and security_group_ids go together. Fix: list both so the event-source mapping "
                     "can reach the brokers, or neither for brokers reachable without a VPC")
    if kind == "msk" and (network.subnet_ids or network.security_group_ids):
        pb.add(path, "MSK mappings use the cluster's own subnets and security groups. Fix: remove source.network")
    return network


def _parse_producer(pb: _Problems, path: str, raw: Mapping[str, Any]) -> Producer | None:
    _unknown(pb, path, raw, {"name", "topics", "aws_principal", "oidc", "signing", "direct_send_to",
                             "external_id", "org_id", "max_age_seconds"})
    name = _str(pb, f"{path}.name", raw.get("name"), pattern=_NAME_RE,
                hint="2-40 lowercase letters, digits and hyphens") or "invalid"
    topics = _str_list(pb, f"{path}.topics", raw.get("topics"), _TOPIC_RE, "the Kafka topics it writes",
                       required=True)
    principal = raw.get("aws_principal")
    oidc_raw = raw.get("oidc")
    oidc = None
    if (principal is None) == (oidc_raw is None):
        pb.add(path, "needs exactly one identity. Fix: set aws_principal (an IAM role/user ARN) or oidc "
                     "(issuer, audience, subject), not both")
    if principal is not None:
        m = _ARN_RE.fullmatch(principal) if isinstance(principal, str) else None
        if isinstance(principal, str) and not m and _ARN_RE.fullmatch(principal.strip()):
            # before the :root check: `...:root ` is a resource "root " that check would not recognize
            pb.add(f"{path}.aws_principal", _whitespace_around(principal))
        elif not m or m["service"] != "iam" or "*" in principal or not principal.isascii():  # IAM names are ASCII
            pb.add(f"{path}.aws_principal", f"{principal!r} is not an IAM principal ARN. Fix: "
                   "arn:aws:iam::<account>:role/<name>; wildcards are not allowed")
        elif m["resource"] == "root":
            # An account root principal lets every role and user of that account whose own policy allows
            # sts:AssumeRole become this producer, not one service.
            pb.add(f"{path}.aws_principal", f"{principal!r} is a whole account (:root), which lets any of its "
                   "roles and users assume the producer role. Fix: name the producer's own role, "
                   "arn:aws:iam::<account>:role/<name>")
    external_id = _str(pb, f"{path}.external_id", raw.get("external_id"), required=False,
                       pattern=re.compile(r"^[A-Za-z0-9_+=,.@:/-]{2,1224}$"),
                       hint="2-1224 letters, digits and +=,.@:/-, agreed with the producer's account")
    org_id = _str(pb, f"{path}.org_id", raw.get("org_id"), required=False,
                  pattern=re.compile(r"^o-[a-z0-9]{10,32}$"), hint="an AWS Organizations id, o-xxxxxxxxxx")
    if (external_id or org_id) and principal is None:
        pb.add(path, "external_id and org_id apply to aws_principal only (oidc trusts an exact subject). "
                     "Fix: remove them")
    if oidc_raw is not None:
        if not isinstance(oidc_raw, Mapping):
            pb.add(f"{path}.oidc", "must be a mapping with issuer, audience, subject")
        else:
            _unknown(pb, f"{path}.oidc", oidc_raw, {"issuer", "audience", "subject", "provider_arn"})
            issuer = _str(pb, f"{path}.oidc.issuer", oidc_raw.get("issuer"), pattern=re.compile(r"^https://\S+$"),
                          hint="the https:// issuer URL, e.g. https://token.actions.githubusercontent.com")
            aud = _claim(pb, f"{path}.oidc.audience", oidc_raw.get("audience"), "audience",
                         hint="the client id the provider issues tokens for, e.g. sts.amazonaws.com")
            sub = _claim(pb, f"{path}.oidc.subject", oidc_raw.get("subject"), "subject",
                         hint="the exact subject claim, e.g. repo:org/repo:ref:refs/heads/main")
            prov = _str(pb, f"{path}.oidc.provider_arn", oidc_raw.get("provider_arn"), required=False,
                        pattern=re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/\S+$"),
                        hint="arn:aws:iam::<account>:oidc-provider/<issuer host>")
            if issuer and aud and sub:
                oidc = OidcIdentity(issuer, aud, sub, prov)
    return Producer(name, topics, principal if isinstance(principal, str) else None, oidc,
                    _bool(pb, f"{path}.signing", raw.get("signing"), False),
                    _str_list(pb, f"{path}.direct_send_to", raw.get("direct_send_to"), _NAME_RE,
                              "names of SQS destinations"), external_id, org_id,
                    _optional_int(pb, f"{path}.max_age_seconds", raw.get("max_age_seconds"), 1, 31_536_000))


def _parse_destination(pb: _Problems, path: str, raw: Mapping[str, Any]) -> Destination | None:
    _unknown(pb, path, raw, {"name", "type", "fifo", "arn", "group_id", "header_attributes", "body",
                             "max_receive_count", "max_message_bytes", "accept_from", "subscriptions",
                             "kms_key_arn", "oversize", "retention_seconds", "consumers"})
    name = _str(pb, f"{path}.name", raw.get("name"), pattern=_NAME_RE,
                hint="2-40 lowercase letters, digits and hyphens") or "invalid"
    dtype: DestinationType = _choice(pb, f"{path}.type", raw.get("type"), ("sqs", "sns"), None) or "sqs"
    fifo = _bool(pb, f"{path}.fifo", raw.get("fifo"), False)
    arn = raw.get("arn")
    if arn is not None:
        m = _ARN_RE.fullmatch(arn) if isinstance(arn, str) else None
        if isinstance(arn, str) and not m and _ARN_RE.fullmatch(arn.strip()):
            pb.add(f"{path}.arn", _whitespace_around(arn))
        elif not m or m["service"] != dtype or not m["region"] or not m["account"]:
            pb.add(f"{path}.arn", f"{arn!r} is not an {dtype.upper()} ARN. Fix: "
                   f"arn:aws:{dtype}:<region>:<account>:<name>, or remove arn to let the stack create it")
        elif not _DESTINATION_NAME_RE[dtype].fullmatch(m["resource"]):
            what, rule = (("queue", "at most 80 characters with .fifo") if dtype == "sqs"
                          else ("topic", "1-256 of them, then .fifo for a FIFO topic"))
            pb.add(f"{path}.arn", f"{arn!r}: {m['resource']!r} is not an {dtype.upper()} {what} name (a wildcard "
                   f"would grant the bridge every {what} it matches). Fix: the exact {what} name: letters, "
                   f"digits, - and _, {rule}")
        elif fifo != arn.endswith(".fifo"):
            pb.add(f"{path}.fifo", "does not match the ARN. Fix: fifo: true exactly when the name ends in .fifo")
    group_id = raw.get("group_id", "key")
    if raw.get("group_id") is not None and not fifo:
        pb.add(f"{path}.group_id", "applies to FIFO destinations only. Fix: set fifo: true or remove group_id")
    if not isinstance(group_id, str) or not (
        group_id in ("key", "topic", "partition")
        or (group_id.startswith("header:") and len(group_id) > 7)
        or (group_id.startswith("static:") and len(group_id) > 7)
    ):
        pb.add(f"{path}.group_id", f"{group_id!r} is not a group id source. Fix: key, topic, partition, "
               "header:<name> or static:<value>")
        group_id = "key"
    attrs = _str_list(pb, f"{path}.header_attributes", raw.get("header_attributes"), _ATTRIBUTE_RE,
                      "Kafka header names (letters, digits, '_', '-' and '.', not at the start or end and "
                      "never two in a row)")
    if len(attrs) > MAX_HEADER_ATTRIBUTES:
        pb.add(f"{path}.header_attributes", f"lists {len(attrs)} headers but a message has room for "
               f"{MAX_HEADER_ATTRIBUTES} (SQS and SNS raw delivery allow {MAX_MESSAGE_ATTRIBUTES} attributes, "
               f"the bridge uses {len(RESERVED_ATTRIBUTES)}: {', '.join(RESERVED_ATTRIBUTES)}). Fix: keep at most "
               f"{MAX_HEADER_ATTRIBUTES}, or use body: envelope to carry all headers in the body")
    for a in attrs:
        if a.lower() in (*RESERVED_ATTRIBUTES, UNVERIFIED_PRODUCER_ATTRIBUTE) or \
                a.lower().startswith(("aws.", "amazon.")):
            pb.add(f"{path}.header_attributes", f"{a!r} is reserved. Fix: remove it")
    body = _choice(pb, f"{path}.body", raw.get("body"), ("raw", "envelope"), "raw")
    oversize = _choice(pb, f"{path}.oversize", raw.get("oversize"), ("park", "claim-check"), "park")
    if oversize == "claim-check" and len(attrs) > MAX_CLAIM_CHECK_HEADER_ATTRIBUTES:
        pb.add(f"{path}.header_attributes", f"lists {len(attrs)} headers but a claim-check pointer has room for "
               f"{MAX_CLAIM_CHECK_HEADER_ATTRIBUTES} (the extended client libraries add {CLAIM_CHECK_SIZE_ATTRIBUTE} "
               "to the 10 attributes). Fix: drop one, or use body: envelope to carry all headers in the body")
    mrc = _int(pb, f"{path}.max_receive_count", raw.get("max_receive_count"), 5, 1, 1000)
    mmb = raw.get("max_message_bytes")
    if mmb is not None:
        ceiling = SNS_MAX_MESSAGE_BYTES if dtype == "sns" else SQS_MAX_MESSAGE_BYTES
        mmb = _int(pb, f"{path}.max_message_bytes", mmb, ceiling, 1024, ceiling)
    kms_key_arn = _kms_key_arn(pb, f"{path}.kms_key_arn", raw.get("kms_key_arn"),
                               f"the customer-managed key the existing {dtype.upper()} "
                               f"{'queue' if dtype == 'sqs' else 'topic'} is encrypted with")
    if kms_key_arn is not None and arn is None:
        pb.add(f"{path}.kms_key_arn", "applies to existing destinations (arn) only; the stack encrypts the queues "
                                      "and topics it creates with its own keys. Fix: remove it, or set arn")
        kms_key_arn = None
    subs: list[Subscription] = []
    raw_subs = raw.get("subscriptions")
    if raw_subs is not None:
        if dtype != "sns":
            pb.add(f"{path}.subscriptions", "applies to SNS topics only. Fix: remove it")
        elif arn is not None:
            pb.add(f"{path}.subscriptions", "needs a topic the stack creates. Fix: remove arn, or subscribe "
                                            "queues to the existing topic outside the bridge")
        else:
            for i, s in enumerate(raw_subs if isinstance(raw_subs, list) else []):
                sp = f"{path}.subscriptions[{i}]"
                if not isinstance(s, Mapping):
                    pb.add(sp, "must be a mapping with queue (and filter_policy)")
                    continue
                _unknown(pb, sp, s, {"queue", "filter_policy", "raw_message_delivery"})
                q = _str(pb, f"{sp}.queue", s.get("queue"), pattern=_NAME_RE, hint="the name of an SQS destination")
                fp = s.get("filter_policy")
                if fp is not None and not isinstance(fp, Mapping):
                    pb.add(f"{sp}.filter_policy", "must be an SNS filter policy mapping")
                    fp = None
                if q:
                    subs.append(Subscription(q, fp, _bool(pb, f"{sp}.raw_message_delivery",
                                                          s.get("raw_message_delivery"), True)))
    if oversize == "claim-check" and any(not s.raw_message_delivery for s in subs):
        pb.add(f"{path}.subscriptions", "raw_message_delivery: false wraps the claim-check pointer in SNS's JSON, "
               "which the SQS extended client library does not resolve. Fix: raw_message_delivery: true, or "
               "oversize: park")
    retention = _optional_int(pb, f"{path}.retention_seconds", raw.get("retention_seconds"), SQS_MIN_RETENTION_SECONDS,
                              SQS_MAX_RETENTION_SECONDS)
    consumers = _role_arns(pb, f"{path}.consumers", raw.get("consumers"))
    for field_name, value in (("retention_seconds", retention), ("consumers", consumers)):
        if value and (dtype != "sqs" or arn is not None):
            pb.add(f"{path}.{field_name}", "applies to SQS queues the stack creates only. Fix: remove it")
    return Destination(name, dtype, fifo, arn if isinstance(arn, str) else None, group_id, attrs, body, mrc,
                       mmb, _str_list(pb, f"{path}.accept_from", raw.get("accept_from"), _NAME_RE,
                                      "names of producers"), tuple(subs), kms_key_arn, oversize, retention, consumers)


def _kms_key_arn(pb: _Problems, path: str, raw: Any, what: str) -> str | None:
    return _str(pb, path, raw, required=False, pattern=_KMS_KEY_ARN_RE,
                hint=f"the key ARN of {what}: arn:aws:kms:<region>:<account>:key/<key id> (not an alias)")


_CONDITION_OPS = ("equals", "prefix", "exists", "numeric", "any_of")


def parse_condition(pb: _Problems, path: str, raw: Any) -> Condition | None:  # noqa: PLR0911 - one return per form
    """`value` -> equals; `[a, b]` -> any_of; `{prefix: x}`, `{exists: true}`, `{numeric: [">=", 1]}`, ..."""
    if isinstance(raw, (str, int, float, bool)) and not isinstance(raw, Mapping):
        return Condition("equals", raw)
    if isinstance(raw, list):
        alts = [parse_condition(pb, f"{path}[{i}]", v) for i, v in enumerate(raw)]
        if not raw:
            pb.add(path, "is an empty any-of list. Fix: list at least one value")
        return Condition("any_of", alternatives=tuple(a for a in alts if a is not None))
    if isinstance(raw, Mapping) and len(raw) == 1:
        op, arg = next(iter(raw.items()))
        if op == "equals" and isinstance(arg, (str, int, float, bool)):
            return Condition("equals", arg)
        if op == "prefix" and isinstance(arg, str) and arg:
            return Condition("prefix", arg)
        if op == "exists" and isinstance(arg, bool):
            return Condition("exists", arg)
        if op == "any_of" and isinstance(arg, list):
            return parse_condition(pb, path, arg)
        if op == "numeric" and isinstance(arg, list) and len(arg) in (2, 4):
            pairs = [(arg[i], arg[i + 1]) for i in range(0, len(arg), 2)]
            if all(o in _NUMERIC_OPS and isinstance(v, (int, float)) and not isinstance(v, bool) for o, v in pairs):
                return Condition("numeric", comparisons=tuple((o, float(v)) for o, v in pairs))
        pb.add(path, f"{dict(raw)!r} is not a valid condition. Fix: one of {{equals: v}}, {{prefix: \"s\"}}, "
               "{exists: true}, {numeric: [\">=\", 10]} or {numeric: [\">\", 0, \"<=\", 5]}, {any_of: [...]}")
        return None
    pb.add(path, f"{raw!r} is not a condition. Fix: a value (exact match), a list (any of), or a mapping with "
           f"one of: {', '.join(_CONDITION_OPS)}")
    return None


def _parse_fields(pb: _Problems, path: str, raw: Any) -> tuple[tuple[str, Condition], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        pb.add(path, "must be a mapping of name -> condition")
        return ()
    out = []
    for k, v in raw.items():
        c = parse_condition(pb, f"{path}.{k}", v)
        if c is not None:
            out.append((str(k), c))
    return tuple(out)


def _parse_route(pb: _Problems, path: str, raw: Mapping[str, Any]) -> Route | None:
    _unknown(pb, path, raw, {"name", "match", "to"})
    name = _str(pb, f"{path}.name", raw.get("name"), pattern=_NAME_RE,
                hint="2-40 lowercase letters, digits and hyphens") or "invalid"
    m = raw.get("match", {})
    if not isinstance(m, Mapping):
        pb.add(f"{path}.match", "must be a mapping with topic, key, headers and/or body")
        m = {}
    _unknown(pb, f"{path}.match", m, {"topic", "key", "headers", "body"})
    match = Match(
        parse_condition(pb, f"{path}.match.topic", m["topic"]) if "topic" in m else None,
        parse_condition(pb, f"{path}.match.key", m["key"]) if "key" in m else None,
        _parse_fields(pb, f"{path}.match.headers", m.get("headers")),
        _parse_fields(pb, f"{path}.match.body", m.get("body")),
    )
    to = _str_list(pb, f"{path}.to", raw.get("to"), _NAME_RE, "destination names", required=True)
    if raw.get("to") is not None and not to:
        pb.add(f"{path}.to", "is empty. Fix: name at least one destination")
    return Route(name, match, to)


def _parse_unmatched(pb: _Problems, raw: Any) -> Unmatched:
    if isinstance(raw, str):
        raw = {"action": raw}
    if not isinstance(raw, Mapping):
        pb.add("unmatched", "must be a mapping. Fix: {action: park} (or skip, or route with to: [...])")
        return Unmatched()
    _unknown(pb, "unmatched", raw, {"action", "to"})
    action = _choice(pb, "unmatched.action", raw.get("action"), ("park", "skip", "route"), "park")
    to = _str_list(pb, "unmatched.to", raw.get("to"), _NAME_RE, "destination names")
    if action == "route" and not to:
        pb.add("unmatched.to", "is required with action: route. Fix: name the destinations for unmatched records")
    if action != "route" and to:
        pb.add("unmatched.to", f"is only used with action: route, not {action}. Fix: remove it")
    return Unmatched(action, to)


def _on_off(pb: _Problems, path: str, raw: Any, default: bool) -> bool:
    """`on`/`off` (YAML 1.1 reads bare on/off as booleans, quoted ones arrive as strings), or a boolean."""
    if isinstance(raw, str) and raw.lower() in ("on", "off"):
        return raw.lower() == "on"
    if raw is None or isinstance(raw, bool):
        return default if raw is None else raw
    pb.add(path, f"{raw!r} is not on or off. Fix: on or off")
    return default


def _parse_settings(pb: _Problems, raw: Any, production: bool = False) -> BridgeSettings:
    if not isinstance(raw, Mapping):
        pb.add("settings", "must be a mapping")
        return BridgeSettings(checkpoints=production)
    d = BridgeSettings()
    _unknown(pb, "settings", raw, set(BridgeSettings.__dataclass_fields__))
    hdr = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
    return BridgeSettings(
        _str(pb, "settings.correlation_header", raw.get("correlation_header", d.correlation_header), pattern=hdr,
             hint="a Kafka header name") or d.correlation_header,
        _str(pb, "settings.producer_header", raw.get("producer_header", d.producer_header), pattern=hdr,
             hint="a Kafka header name") or d.producer_header,
        _str(pb, "settings.signature_header", raw.get("signature_header", d.signature_header), pattern=hdr,
             hint="a Kafka header name") or d.signature_header,
        _str(pb, "settings.message_id_header", raw.get("message_id_header", d.message_id_header), pattern=hdr,
             hint="a Kafka header name") or d.message_id_header,
        _int(pb, "settings.max_delivery_attempts", raw.get("max_delivery_attempts"), d.max_delivery_attempts, 1, 10),
        _int(pb, "settings.retry_base_delay_ms", raw.get("retry_base_delay_ms"), d.retry_base_delay_ms, 0, 10_000),
        _int(pb, "settings.max_concurrency", raw.get("max_concurrency"), d.max_concurrency, 1, MAX_CONCURRENCY),
        _int(pb, "settings.memory_mb", raw.get("memory_mb"), d.memory_mb, 128, 10_240),
        _int(pb, "settings.timeout_seconds", raw.get("timeout_seconds"), d.timeout_seconds, 10, 900),
        _int(pb, "settings.audit_max_correlation_ids", raw.get("audit_max_correlation_ids"),
             d.audit_max_correlation_ids, 0, 1000),
        _on_off(pb, "settings.checkpoints", raw.get("checkpoints"), production),
        _int(pb, "settings.checkpoint_in_flight", raw.get("checkpoint_in_flight"), d.checkpoint_in_flight, 1, 64),
        _int(pb, "settings.checkpoint_request_entries", raw.get("checkpoint_request_entries"),
             d.checkpoint_request_entries, 1, MAX_BATCH_ENTRIES),
        _int(pb, "settings.outage_retry_seconds", raw.get("outage_retry_seconds"), d.outage_retry_seconds, 0,
             OUTAGE_RETRY_MAX_SECONDS),
        _int(pb, "settings.claim_check_retention_days", raw.get("claim_check_retention_days"),
             d.claim_check_retention_days, 15, 3650),
        _int(pb, "settings.parking_retention_days", raw.get("parking_retention_days"), d.parking_retention_days,
             1, 3650),
        _role_arns(pb, "settings.operator_role_arns", raw.get("operator_role_arns"), MAX_OPERATOR_ROLES,
                   MAX_OPERATOR_ARN_CHARS, MAX_OPERATOR_ARN_LENGTH),
        _int(pb, "settings.signing_key_grace_seconds", raw.get("signing_key_grace_seconds"),
             d.signing_key_grace_seconds, 0, 30 * 86_400),
        _int(pb, "settings.signing_key_rotation_days", raw.get("signing_key_rotation_days"),
             d.signing_key_rotation_days, 0, 1000),
        _on_off(pb, "settings.tracing", raw.get("tracing"), d.tracing),
        _on_off(pb, "settings.snapstart", raw.get("snapstart"), d.snapstart),
        _on_off(pb, "settings.direct_sends", raw.get("direct_sends"), d.direct_sends),
    )


def _parse_alarms(pb: _Problems, raw: Any) -> Alarms:
    if not isinstance(raw, Mapping):
        pb.add("alarms", "must be a mapping. Fix: {email: [ops@example.com]} or {topic_arn: arn:aws:sns:...}")
        return Alarms()
    d = Alarms()
    _unknown(pb, "alarms", raw, set(Alarms.__dataclass_fields__))
    topic_arn = _str(pb, "alarms.topic_arn", raw.get("topic_arn"), required=False, pattern=_SNS_TOPIC_ARN_RE,
                     hint="an existing SNS topic ARN, arn:aws:sns:<region>:<account>:<name>, or remove it to let "
                          "the stack create one")
    email = _str_list(pb, "alarms.email", raw.get("email"), _EMAIL_RE, "e-mail addresses, e.g. ops@example.com")
    if topic_arn and email:
        pb.add("alarms.email", "subscribes to the alarm topic the stack creates, but alarms.topic_arn names an "
                               "existing one. Fix: subscribe the addresses to that topic, or remove topic_arn")
    return Alarms(
        _bool(pb, "alarms.enabled", raw.get("enabled"), d.enabled), topic_arn, email,
        _int(pb, "alarms.offset_lag", raw.get("offset_lag"), d.offset_lag, 1, 1_000_000_000),
        _int(pb, "alarms.bridge_dlq_max_age_seconds", raw.get("bridge_dlq_max_age_seconds"),
             d.bridge_dlq_max_age_seconds, 60, 1_209_600),
        _int(pb, "alarms.audit_queue_max_age_seconds", raw.get("audit_queue_max_age_seconds"),
             d.audit_queue_max_age_seconds, 60, 1_209_600),
        _int(pb, "alarms.duration_percent_of_timeout", raw.get("duration_percent_of_timeout"),
             d.duration_percent_of_timeout, 10, 100),
        _int(pb, "alarms.parked_records", raw.get("parked_records"), d.parked_records, 1, 1_000_000),
        _int(pb, "alarms.function_errors", raw.get("function_errors"), d.function_errors, 1, 1_000_000),
        _int(pb, "alarms.throttles", raw.get("throttles"), d.throttles, 1, 1_000_000),
    )


def _parse_deployment(pb: _Problems, raw: Any, production: bool) -> Deployment:
    path = "deployment"
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        pb.add(path, "must be a mapping. Fix: see config/prod.yaml")
        return Deployment()
    _unknown(pb, path, raw, {"test_events", "reserved_concurrency", "log_retention_days", "rollout"})
    reserved = raw.get("reserved_concurrency")
    if reserved is not None and (isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 1):
        # 0 would throttle every invocation: the mappings would stop and records would age out
        pb.add(f"{path}.reserved_concurrency", f"{reserved!r} is not valid. Fix: a whole number of at least 1, "
               "or leave it out for none")
        reserved = None
    retention = raw.get("log_retention_days", 365 if production else 30)
    if retention not in LOG_RETENTION_DAYS or isinstance(retention, bool):
        pb.add(f"{path}.log_retention_days", f"{retention!r} is not a CloudWatch Logs retention. Fix: one of "
               f"{', '.join(map(str, LOG_RETENTION_DAYS))}")
        retention = 365 if production else 30
    return Deployment(
        test_events=_bool(pb, f"{path}.test_events", raw.get("test_events"), True),
        reserved_concurrency=reserved,
        log_retention_days=retention,
        rollout=_parse_rollout(pb, f"{path}.rollout", raw.get("rollout"), production),
    )


def _parse_rollout(pb: _Problems, path: str, raw: Any, production: bool) -> Rollout:
    raw = {} if raw is None else raw
    if not isinstance(raw, Mapping):
        pb.add(path, "must be a mapping. Fix: strategy, percent, interval_minutes, max_parked_per_minute")
        return Rollout()
    _unknown(pb, path, raw, {"strategy", "percent", "interval_minutes", "max_parked_per_minute"})
    d = Rollout(strategy="linear" if production else "canary")
    return Rollout(
        strategy=_choice(pb, f"{path}.strategy", raw.get("strategy"), ("all_at_once", "canary", "linear"),
                         d.strategy),
        percent=_int(pb, f"{path}.percent", raw.get("percent"), d.percent, 1, 99),
        interval_minutes=_int(pb, f"{path}.interval_minutes", raw.get("interval_minutes"), d.interval_minutes, 1, 60),
        max_parked_per_minute=_int(pb, f"{path}.max_parked_per_minute", raw.get("max_parked_per_minute"),
                                   d.max_parked_per_minute, 0, 1_000_000),
    )


_ROLE_ARN_RE = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,512}$")


def _role_arns(pb: _Problems, path: str, raw: Any, most: int | None = None,
               most_chars: int | None = None, longest: int | None = None) -> tuple[str, ...]:
    arns = _str_list(pb, path, raw, _ROLE_ARN_RE, "IAM role ARNs, arn:aws:iam::<account>:role/<name> (not :root, "
                                                  "no wildcards)")
    for arn in arns:
        if longest is not None and len(arn) > longest:
            pb.add(path, f"role {arn[:40]}... is {len(arn)} characters long, more than the {longest} CloudFormation "
                   "takes as the Principal of the Lambda permission that lets it invoke the live alias (the deploy "
                   "would fail there). Fix: use a role with a shorter path or name")
    if most is not None and len(arns) > most:
        pb.add(path, f"lists {len(arns)} roles, more than the {most} the stack's resource policies can name. "
               "Fix: let the operators assume fewer roles")
    elif most_chars is not None and sum(map(len, arns)) > most_chars:
        pb.add(path, f"its {len(arns)} role ARNs are {sum(map(len, arns)):,} characters together, more than the "
               f"{most_chars:,} the SQS queue policies that name them can hold (8,192 bytes each). Fix: let the "
               "operators assume fewer roles, or roles with shorter names and paths")
    return arns


def _cross_check(pb: _Problems, name: str, src: Source | None, producers: Iterable[Producer],
                 destinations: Iterable[Destination], routes: Iterable[Route], unmatched: Unmatched,
                 settings: BridgeSettings) -> None:
    dests = {d.name: d for d in destinations}
    prods = {p.name: p for p in producers}
    topics = set(src.topics) if src else set()
    if len(dests) != len(list(destinations)):
        pb.add("destinations", "two destinations share a name. Fix: give each a unique name")
    if len(prods) != len(list(producers)):
        pb.add("producers", "two producers share a name. Fix: give each a unique name")
    if len({r.name for r in routes}) != len(list(routes)):
        pb.add("routes", "two routes share a name. Fix: give each a unique name")
    if settings.outage_retry_seconds and not settings.checkpoints:
        pb.add("settings.outage_retry_seconds", "needs settings.checkpoints: on, or every retry of the batch "
               "would deliver again what it already delivered. Fix: set checkpoints: on, or outage_retry_seconds: 0")
    for d in dests.values():
        where = f"destinations[{d.name}]"
        if d.created and len(d.dlq_physical_name(name)) > SQS_QUEUE_NAME_MAX:
            pb.add(f"{where}.name", f"makes the queue name {d.dlq_physical_name(name)!r} longer than "
                   f"{SQS_QUEUE_NAME_MAX} characters. Fix: shorten the bridge or destination name")
        for a in d.accept_from:
            if a not in prods:
                pb.add(f"{where}.accept_from", f"names unknown producer {a!r}. Fix: one of {sorted(prods)}")
            elif not prods[a].signing:
                pb.add(f"{where}.accept_from", f"producer {a!r} does not sign its records, so the bridge cannot "
                       f"verify it. Fix: set producers[{a}].signing: true")
        for s in d.subscriptions:
            q = dests.get(s.queue)
            if q is not None and q.accept_from and not (d.accept_from and set(d.accept_from) <= set(q.accept_from)):
                # the topic delivers whatever it is given; only its own accept_from would keep others out
                pb.add(f"{where}.subscriptions", f"{s.queue!r} accepts signed records only (accept_from), but "
                       f"records from any producer would reach it through topic {d.name}. Fix: route to "
                       f"{s.queue} directly, or give {d.name} accept_from within {list(q.accept_from)}")
            if q is None or q.type != "sqs":
                pb.add(f"{where}.subscriptions", f"{s.queue!r} is not an SQS destination. Fix: name a queue "
                                                 "from destinations")
            elif q.fifo != d.fifo:
                pb.add(f"{where}.subscriptions", f"{s.queue!r}: a {'FIFO' if d.fifo else 'standard'} topic needs a "
                       f"{'FIFO' if d.fifo else 'standard'} queue. Fix: match the fifo settings")
            elif not q.created:
                pb.add(f"{where}.subscriptions", f"{s.queue!r} is an existing queue; the stack cannot change its "
                       "policy to let the topic deliver. Fix: subscribe it outside the bridge")
            elif q.message_limit < d.message_limit:
                pb.add(f"{where}.subscriptions", f"{s.queue!r} takes at most {q.message_limit} bytes but the topic "
                       f"takes {d.message_limit}, so larger messages would end in the subscription DLQ. Fix: "
                       f"raise destinations[{s.queue}].max_message_bytes or lower this topic's")
            sub_dlq = subscription_dlq_name(name, d, s.queue)
            if len(sub_dlq) > SQS_QUEUE_NAME_MAX:
                pb.add(f"{where}.subscriptions", f"the subscription DLQ name {sub_dlq!r} is longer than "
                       f"{SQS_QUEUE_NAME_MAX} characters. Fix: shorten the bridge, topic or queue name")
    for r in routes:
        for t in r.to:
            if t not in dests:
                pb.add(f"routes[{r.name}].to", f"names unknown destination {t!r}. Fix: one of {sorted(dests)}")
        for c in _topic_literals(r.match.topic):
            if topics and c not in topics:
                pb.add(f"routes[{r.name}].match.topic", f"{c!r} is not consumed by the bridge. Fix: add it to "
                       "source.topics or correct the name")
    if src is not None and src.filter_pushdown and unmatched.action != "skip":
        pb.add("source.filter_pushdown", f"drops records no route selects before the bridge sees them, but "
               f"unmatched.action is {unmatched.action}, so they must reach it. Fix: unmatched: {{action: skip}}, "
               "or remove filter_pushdown")
    for t in unmatched.to:
        if t not in dests:
            pb.add("unmatched.to", f"names unknown destination {t!r}. Fix: one of {sorted(dests)}")
        elif dests[t].accept_from or _reaches_signed_only(dests[t], dests):
            pb.add("unmatched.to", f"{t!r} is (or feeds) a signed-only queue (accept_from); records no route "
                   "selects must not be sent there. Fix: route them to an open destination, or use action: park")
    account = _stack_account(src)
    for p in prods.values():
        m = _ARN_RE.fullmatch(p.aws_principal or "")
        if m and m["resource"] != "root" and account and m["account"] != account and not (p.external_id or p.org_id):
            pb.add(f"producers[{p.name}].aws_principal", f"is in account {m['account']}, not this bridge's "
                   f"({account}), and nothing limits who there may assume the role. Fix: set "
                   f"producers[{p.name}].external_id (agreed with that account) or org_id (your organization)")
    for p in prods.values():
        for t in p.topics:
            if topics and t not in topics:
                pb.add(f"producers[{p.name}].topics", f"{t!r} is not in source.topics. Fix: add it there, or "
                       "remove it from the producer")
        for qname in p.direct_send_to:
            target = dests.get(qname)
            if target is None or target.type != "sqs" or not target.created:
                pb.add(f"producers[{p.name}].direct_send_to", f"{qname!r} is not an SQS destination the stack creates. "
                       "Fix: name one of the created queues")
            elif target.accept_from:
                # a direct send carries no signature check, so it would bypass accept_from
                pb.add(f"producers[{p.name}].direct_send_to", f"{qname!r} accepts signed records only "
                       "(accept_from). Fix: remove it")
    for d in dests.values():
        if settings.signature_header.lower() in (a.lower() for a in d.header_attributes):
            pb.add(f"destinations[{d.name}].header_attributes", f"{settings.signature_header!r} is the producers' "
                   "signature, which never leaves the bridge. Fix: remove it")
    headers = [settings.correlation_header, settings.producer_header, settings.signature_header,
               settings.message_id_header]
    if len({h.lower() for h in headers}) != len(headers):
        pb.add("settings", "correlation_header, producer_header, signature_header and message_id_header must "
                           "differ. Fix: rename one of them")


def _reaches_signed_only(d: Destination, dests: Mapping[str, Destination]) -> bool:
    """A topic subscribed by a queue with accept_from."""
    return any(dests[s.queue].accept_from for s in d.subscriptions if s.queue in dests)


def _stack_account(src: Source | None) -> str | None:
    """The account the bridge runs in, as the config states it: the MSK cluster's, or for self-managed
    Kafka the credentials secret's (the event-source mapping reads it, so it is in the stack's account)."""
    arn = (src.cluster_arn if src.kind == "msk" else src.secret_arn) if src else None
    m = _ARN_RE.fullmatch(arn or "")
    return m["account"] if m else None


def _topic_literals(c: Condition | None) -> list[str]:
    if c is None:
        return []
    if c.kind == "equals" and isinstance(c.value, str):
        return [c.value]
    if c.kind == "any_of":
        return [v for a in c.alternatives for v in _topic_literals(a)]
    return []


def config_to_json(data: Mapping[str, Any]) -> str:
    """Serialize a validated config document for the Lambda package (stable, so asset hashes are)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
