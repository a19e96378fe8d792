"""Synth-time check of every property the template sets against the limits in botocore's service models.

CloudFormation passes resource properties to the service APIs, so a value the API refuses fails the
deploy, usually after minutes and halfway through a rollout. The check runs on the synthesized
template (app.py, after `app.synth()`), before anything reaches AWS, and fails with one line per
problem naming the resource (its construct path), the property and the limit.

How a property finds its limit: each resource type maps to the input shape of the API call that
CloudFormation makes for it (`RESOURCE_APIS`); a property matches the member of the same name
(case-insensitive, recursively through structures, lists and maps) unless `ResourceApi.members`
maps it elsewhere (a member of another call, e.g. `ReservedConcurrentExecutions` ->
`PutFunctionConcurrency`). From the model it checks `min`/`max` (string length, list and map sizes,
number ranges), `pattern` and `enum`. Some limits are documented only in a member's prose (SQS queue
attributes, topic and queue names): `DOCUMENTED_LIMITS` names them with the sentence they come from,
and tests assert that botocore's documentation still says it.

Values that CloudFormation resolves at deploy time (`Ref`, `Fn::GetAtt`, ...) cannot be checked
whole; their literal parts still give a lower bound on length, which is checked against `max`.
Properties with no API member and no documented limit are listed by `unchecked_properties`, and a
test keeps that list equal to `NO_API_LIMIT`, where each has its reason.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import botocore.session
from botocore.model import ListShape, MapShape, Shape, StructureShape

from infra.policy_sizes import policy_problems


class LimitError(ValueError):
    """One or more template values exceed a documented AWS limit; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class ResourceApi:
    """The API input shape CloudFormation calls for a resource type, and properties that go elsewhere.

    `members`: property -> (shape, member) of another input shape, or (shape, None) when the property's
    value *is* that whole shape (e.g. GenerateSecretString -> GetRandomPasswordRequest).
    """

    service: str
    shape: str
    members: Mapping[str, tuple[str, str | None]] = field(default_factory=dict)


RESOURCE_APIS: dict[str, ResourceApi] = {
    "AWS::Lambda::Function": ResourceApi("lambda", "CreateFunctionRequest", {
        "ReservedConcurrentExecutions": ("PutFunctionConcurrencyRequest", "ReservedConcurrentExecutions")}),
    "AWS::Lambda::EventSourceMapping": ResourceApi("lambda", "CreateEventSourceMappingRequest"),
    "AWS::Lambda::Version": ResourceApi("lambda", "PublishVersionRequest"),
    "AWS::Lambda::Alias": ResourceApi("lambda", "CreateAliasRequest"),
    "AWS::IAM::Role": ResourceApi("iam", "CreateRoleRequest", {"Policies": ("PutRolePolicyRequest", None)}),
    "AWS::IAM::Policy": ResourceApi("iam", "PutRolePolicyRequest"),
    "AWS::IAM::OIDCProvider": ResourceApi("iam", "CreateOpenIDConnectProviderRequest"),
    "AWS::KMS::Key": ResourceApi("kms", "CreateKeyRequest", {"KeyPolicy": ("CreateKeyRequest", "Policy")}),
    "AWS::Logs::LogGroup": ResourceApi("logs", "CreateLogGroupRequest", {
        "RetentionInDays": ("PutRetentionPolicyRequest", "retentionInDays")}),
    "AWS::Logs::QueryDefinition": ResourceApi("logs", "PutQueryDefinitionRequest"),
    "AWS::DynamoDB::Table": ResourceApi("dynamodb", "CreateTableInput", {
        "TimeToLiveSpecification": ("UpdateTimeToLiveInput", "TimeToLiveSpecification")}),
    "AWS::SQS::Queue": ResourceApi("sqs", "CreateQueueRequest"),
    "AWS::SQS::QueuePolicy": ResourceApi("sqs", "SetQueueAttributesRequest"),
    "AWS::SNS::Topic": ResourceApi("sns", "CreateTopicInput", {"TopicName": ("CreateTopicInput", "Name")}),
    "AWS::SNS::TopicPolicy": ResourceApi("sns", "SetTopicAttributesInput"),
    "AWS::SNS::Subscription": ResourceApi("sns", "SubscribeInput"),
    "AWS::SecretsManager::Secret": ResourceApi("secretsmanager", "CreateSecretRequest", {
        "GenerateSecretString": ("GetRandomPasswordRequest", None)}),
    "AWS::Lambda::Permission": ResourceApi("lambda", "AddPermissionRequest"),
    "AWS::SecretsManager::ResourcePolicy": ResourceApi("secretsmanager", "PutResourcePolicyRequest"),
    "AWS::SecretsManager::RotationSchedule": ResourceApi("secretsmanager", "RotateSecretRequest"),
    "AWS::EventSchemas::Schema": ResourceApi("schemas", "CreateSchemaRequest"),
    "AWS::EventSchemas::Registry": ResourceApi("schemas", "CreateRegistryRequest"),
    "AWS::S3::Bucket": ResourceApi("s3", "CreateBucketRequest"),
    "AWS::S3::BucketPolicy": ResourceApi("s3", "PutBucketPolicyRequest"),
    "AWS::CloudWatch::Alarm": ResourceApi("cloudwatch", "PutMetricAlarmInput"),
    "AWS::CloudWatch::Dashboard": ResourceApi("cloudwatch", "PutDashboardInput"),
    "AWS::CodeDeploy::Application": ResourceApi("codedeploy", "CreateApplicationInput"),
    "AWS::CodeDeploy::DeploymentGroup": ResourceApi("codedeploy", "CreateDeploymentGroupInput"),
    "AWS::CodeDeploy::DeploymentConfig": ResourceApi("codedeploy", "CreateDeploymentConfigInput"),
}


@dataclass(frozen=True)
class DocumentedLimit:
    """A limit botocore states only in a member's documentation; `phrase` is quoted from it."""

    service: str
    shape: str
    member: str
    phrase: str
    min: int | None = None
    max: int | None = None
    pattern: str | None = None  # full match
    length: bool = False  # min/max bound the value's length, not the value
    # The property is a JSON document (under this key of it, "" for the whole value) that the API takes as a
    # string: its length is measured as `_literal_length` does (intrinsics as "", compact JSON), a lower bound.
    document: str | None = None


# CloudFormation property of the type -> its documented limit.
DOCUMENTED_LIMITS: dict[tuple[str, str], DocumentedLimit] = {
    ("AWS::SQS::Queue", "QueueName"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "QueueName", "A queue name can have up to 80 characters.", 1, 80,
        r"[A-Za-z0-9_-]{1,75}(\.fifo)?|[A-Za-z0-9_-]{1,80}", length=True),
    ("AWS::SQS::Queue", "MaximumMessageSize"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes",
        "An integer from 1,024 bytes (1 KiB) to 1,048,576 bytes (1 MiB).", 1024, 1_048_576),
    ("AWS::SQS::Queue", "MessageRetentionPeriod"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes",
        "An integer from 60 seconds (1 minute) to 1,209,600 seconds (14 days).", 60, 1_209_600),
    ("AWS::SQS::Queue", "VisibilityTimeout"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes", "An integer from 0 to 43,200 (12 hours).", 0, 43_200),
    ("AWS::SQS::Queue", "DelaySeconds"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes", "An integer from 0 to 900 seconds (15 minutes).", 0, 900),
    ("AWS::SQS::Queue", "ReceiveMessageWaitTimeSeconds"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes", "An integer from 0 to 20 (seconds).", 0, 20),
    ("AWS::SQS::Queue", "DeduplicationScope"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes", "Valid values are messageGroup and queue.",
        pattern="messageGroup|queue"),
    ("AWS::SQS::Queue", "FifoThroughputLimit"): DocumentedLimit(
        "sqs", "CreateQueueRequest", "Attributes", "Valid values are perQueue and perMessageGroupId.",
        pattern="perQueue|perMessageGroupId"),
    ("AWS::SNS::Topic", "MaximumMessageSize"): DocumentedLimit(
        "sns", "CreateTopicInput", "Attributes", "Valid values are 1024 to 1048576 (1 MiB).", 1024, 1_048_576),
    ("AWS::SNS::Topic", "TopicName"): DocumentedLimit(
        "sns", "CreateTopicInput", "Name", "must be between 1 and 256 characters long", 1, 256,
        r"[A-Za-z0-9_-]{1,251}(\.fifo)?|[A-Za-z0-9_-]{1,256}", length=True),
    # CloudFormation's {PolicyDocument: {...}} is CreateTable's ResourcePolicy string. "20 KB" read as 20,000
    # characters: the measure is a lower bound, so the check errs on the refusing side.
    ("AWS::DynamoDB::Table", "ResourcePolicy"): DocumentedLimit(
        "dynamodb", "CreateTableInput", "ResourcePolicy",
        "The maximum size supported for a resource-based policy document is 20 KB.", max=20_000, length=True,
        document="PolicyDocument"),
}

# Properties no API member or documented limit constrains, and why (kept exact by a test).
NO_API_LIMIT: dict[tuple[str, str], str] = {
    ("AWS::SQS::Queue", "FifoQueue"): "a boolean queue attribute",
    ("AWS::SQS::Queue", "ContentBasedDeduplication"): "a boolean queue attribute",
    ("AWS::SQS::Queue", "KmsMasterKeyId"): "a key reference resolved at deploy time; the key is in the stack",
    ("AWS::SQS::Queue", "RedrivePolicy"): "the DLQ ARN is resolved at deploy time; maxReceiveCount is "
                                          "validated by the config model (bridge.config, 1-1000)",
    ("AWS::SQS::Queue", "RedriveAllowPolicy"): "a queue attribute whose one limit (at most 10 source queue ARNs) "
                                               "is documented only in prose; the stack names one source or none",
    ("AWS::SQS::QueuePolicy", "Queues"): "queue URLs resolved at deploy time",
    ("AWS::SQS::QueuePolicy", "PolicyDocument"): "SQS takes it as the Policy attribute, whose size limit is "
                                                  "documented only in its developer guide",
    ("AWS::SNS::TopicPolicy", "PolicyDocument"): "SNS takes it as the Policy attribute, whose size limit is "
                                                  "documented only in its developer guide",
    ("AWS::SNS::Topic", "KmsMasterKeyId"): "a key reference resolved at deploy time; the key is in the stack",
    ("AWS::SNS::Topic", "FifoTopic"): "a boolean topic attribute",
    ("AWS::SNS::Topic", "ContentBasedDeduplication"): "a boolean topic attribute",
    ("AWS::SNS::TopicPolicy", "Topics"): "topic ARNs resolved at deploy time",
    ("AWS::SNS::Subscription", "FilterPolicy"): "SNS documents filter-policy quotas (values, nesting) only in "
                                                "its developer guide; the config model builds the policies",
    ("AWS::SNS::Subscription", "RawMessageDelivery"): "a boolean subscription attribute",
    ("AWS::SNS::Subscription", "RedrivePolicy"): "the DLQ ARN is resolved at deploy time",
    ("AWS::S3::Bucket", "BucketEncryption"): "set from CDK's encryption enum (SSE-S3)",
    ("AWS::S3::Bucket", "OwnershipControls"): "set from CDK's ObjectOwnership enum",
    ("AWS::S3::Bucket", "PublicAccessBlockConfiguration"): "four booleans",
    ("AWS::S3::Bucket", "VersioningConfiguration"): "set from CDK's versioned flag (Enabled)",
    ("AWS::S3::Bucket", "LifecycleConfiguration"): "rules written by the stack; day counts come from the config model",
    ("AWS::S3::BucketPolicy", "PolicyDocument"): "S3 documents the 20 KB bucket-policy limit only in its "
                                                  "user guide; the stack writes a few statements",
    ("AWS::S3::BucketPolicy", "Bucket"): "a bucket reference resolved at deploy time",
    ("AWS::KMS::Key", "EnableKeyRotation"): "a boolean (EnableKeyRotation call)",
    ("AWS::IAM::Role", "Policies"): "checked item by item as PutRolePolicyRequest",
    ("AWS::IAM::Policy", "Roles"): "role references resolved at deploy time",
    ("AWS::CodeDeploy::DeploymentGroup", "AlarmConfiguration"): "alarm names resolved at deploy time",
    ("AWS::CodeDeploy::DeploymentGroup", "DeploymentStyle"): "set from CDK's Lambda deployment style",
    ("AWS::CodeDeploy::DeploymentConfig", "TrafficRoutingConfig"): "percent and minutes validated by the "
                                                                      "config model (deployment.rollout)",
    ("AWS::Lambda::Alias", "ProvisionedConcurrencyConfig"): "not set by this stack",
    ("AWS::DynamoDB::Table", "SSESpecification.SSEEnabled"): "a boolean (the API calls it Enabled)",
}


@functools.cache
def _service(service: str) -> Any:
    return botocore.session.get_session().get_service_model(service)


def api_shape(service: str, shape: str) -> StructureShape:
    found = _service(service).shape_for(shape)
    assert isinstance(found, StructureShape), f"{service} {shape} is not an input structure"
    return found


@dataclass(frozen=True)
class ApiLimit:
    """What one member's model says about its values."""

    min: int | float | None
    max: int | float | None
    pattern: str | None
    enum: tuple[str, ...]


def api_limit(service: str, shape: str, member: str) -> ApiLimit:
    """The model's limits on `shape.member`, e.g. `api_limit("schemas", "CreateSchemaInput", "Content")`."""
    m = api_shape(service, shape).members[member]
    return ApiLimit(m.metadata.get("min"), m.metadata.get("max"), m.metadata.get("pattern"),
                    tuple(getattr(m, "enum", None) or ()))


# --- values -------------------------------------------------------------------------------------

_INTRINSICS = ("Ref", "Fn::GetAtt", "Fn::Join", "Fn::Sub", "Fn::Select", "Fn::ImportValue", "Fn::If",
               "Fn::Base64", "Fn::FindInMap", "Fn::GetAZs", "Fn::Split", "Fn::Cidr")


def _is_intrinsic(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _INTRINSICS


def _has_intrinsic(value: Any) -> bool:
    if _is_intrinsic(value):
        return True
    if isinstance(value, dict):
        return any(_has_intrinsic(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_intrinsic(v) for v in value)
    return False


def _literal_length(value: Any) -> int:
    """A lower bound on the length of `value` as a string once CloudFormation resolves it."""
    if isinstance(value, str):
        return len(value)
    if _is_intrinsic(value):
        (fn, args), = value.items()
        if fn == "Fn::Join" and isinstance(args, list) and len(args) == 2 and isinstance(args[1], list):
            parts = args[1]
            return sum(_literal_length(p) for p in parts) + len(str(args[0])) * max(0, len(parts) - 1)
        if fn == "Fn::Sub" and isinstance(args, str | list):
            text = args if isinstance(args, str) else args[0]
            return len(re.sub(r"\$\{[^}]*\}", "", str(text)))
        return 0
    # a JSON document (policies) the API takes as a string: intrinsics count as nothing
    return len(json.dumps(_strip_intrinsics(value), separators=(",", ":")))


def _strip_intrinsics(value: Any) -> Any:
    if _is_intrinsic(value):
        return ""
    if isinstance(value, dict):
        return {k: _strip_intrinsics(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_intrinsics(v) for v in value]
    return value


def _fmt(n: float) -> str:
    return f"{n:,}"


def _normal(name: str) -> str:
    return name.replace("_", "").lower()


def _match_member(shape: StructureShape, prop: str) -> str | None:
    lower = prop.lower()
    return next((m for m in shape.members if m.lower() == lower), None)


@dataclass
class _Walk:
    resource: str
    problems: list[str] = field(default_factory=list)
    unchecked: set[str] = field(default_factory=set)

    def add(self, path: str, what: str, where: str) -> None:
        self.problems.append(f"{self.resource} {path}: {what} ({where})")

    def value(self, path: str, value: Any, shape: Shape, where: str) -> None:
        if _is_intrinsic(value):
            self._length_only(path, value, shape, where)
            return
        if isinstance(shape, StructureShape):
            if isinstance(value, dict):
                for prop, v in value.items():
                    member = _match_member(shape, prop)
                    if member is None:
                        self.unchecked.add(f"{path}.{prop}")
                        continue
                    self.value(f"{path}.{prop}", v, shape.members[member], f"{where}.{member}")
            return
        if isinstance(shape, ListShape):
            if isinstance(value, list):
                self._bounds(path, len(value), shape, where, "items")
                for i, item in enumerate(value):
                    self.value(f"{path}[{i}]", item, shape.member, where)
            return
        if isinstance(shape, MapShape):
            if isinstance(value, dict):
                self._bounds(path, len(value), shape, where, "entries")
                enum = getattr(shape.key, "enum", None) or []
                for k, v in value.items():
                    # CloudFormation spells enum keys as properties: KafkaBootstrapServers for KAFKA_BOOTSTRAP_SERVERS
                    key = next((e for e in enum if _normal(e) == _normal(k)), k)
                    self.value(f"{path} key {k!r}", key, shape.key, where)
                    self.value(f"{path}.{k}", v, shape.value, where)
            return
        self._scalar(path, value, shape, where)

    def _length_only(self, path: str, value: Any, shape: Shape, where: str) -> None:
        if shape.type_name == "string" and "max" in shape.metadata:
            n = _literal_length(value)
            if n > shape.metadata["max"]:
                self.add(path, f"at least {_fmt(n)} characters, limit {_fmt(shape.metadata['max'])}", where)

    def _bounds(self, path: str, n: int, shape: Shape, where: str, unit: str) -> None:
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
        if hi is not None and n > hi:
            self.add(path, f"{_fmt(n)} {unit}, limit {_fmt(hi)}", where)
        elif lo is not None and n < lo:
            self.add(path, f"{_fmt(n)} {unit}, minimum {_fmt(lo)}", where)

    def _scalar(self, path: str, value: Any, shape: Shape, where: str) -> None:
        t = shape.type_name
        if t == "string":
            text = value if isinstance(value, str) else (
                str(value).lower() if isinstance(value, bool) else
                str(value) if isinstance(value, int | float) else None)
            if text is None:  # a JSON document the API takes as a string (policies)
                self._length_only(path, value, shape, where)
                return
            self._bounds(path, len(text), shape, where, "characters")
            enum = getattr(shape, "enum", None)
            if enum and text not in enum:
                self.add(path, f"{text[:60]!r} is not one of {', '.join(enum)}", where)
            pattern = shape.metadata.get("pattern")
            if pattern and not _pattern_ok(pattern, text):
                self.add(path, f"{text[:60]!r} does not match the pattern {pattern}", where)
        elif t in ("integer", "long", "double", "float") and isinstance(value, int | float) \
                and not isinstance(value, bool):
            lo, hi = shape.metadata.get("min"), shape.metadata.get("max")
            if hi is not None and value > hi:
                self.add(path, f"{_fmt(value)}, limit {_fmt(hi)}", where)
            elif lo is not None and value < lo:
                self.add(path, f"{_fmt(value)}, minimum {_fmt(lo)}", where)


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str] | None:
    # botocore patterns are Java regular expressions; the few Python cannot compile (\p{...}) are skipped
    try:
        return re.compile(pattern, re.DOTALL)
    except re.error:
        return None


def _pattern_ok(pattern: str, text: str) -> bool:
    compiled = _compiled(pattern)
    return compiled is None or compiled.fullmatch(text) is not None


def _resource_label(logical_id: str, resource: Mapping[str, Any], paths: Mapping[str, str]) -> str:
    path = paths.get(logical_id) or (resource.get("Metadata") or {}).get("aws:cdk:path")
    return f"{path} ({resource['Type']})" if path else f"{logical_id} ({resource['Type']})"


def _documented(walk: _Walk, rtype: str, prop: str, value: Any) -> bool:
    limit = DOCUMENTED_LIMITS.get((rtype, prop))
    if limit is None:
        return False
    if limit.document is not None and isinstance(value, Mapping):
        n = _literal_length(value.get(limit.document, value) if limit.document else value)
        if limit.max is not None and n > limit.max:
            walk.add(prop, f"at least {_fmt(n)} characters, limit {_fmt(limit.max)}",
                     f"botocore {limit.service} {limit.shape}.{limit.member}: {limit.phrase!r}")
        return True
    if _has_intrinsic(value) or isinstance(value, dict | list):
        return True
    where = f"botocore {limit.service} {limit.shape}.{limit.member}: {limit.phrase!r}"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    measured: float | None = len(text) if limit.length else (
        value if isinstance(value, int | float) and not isinstance(value, bool) else None)
    if measured is not None and limit.max is not None and measured > limit.max:
        unit = " characters" if limit.length else ""
        walk.add(prop, f"{_fmt(measured)}{unit}, limit {_fmt(limit.max)}", where)
    elif measured is not None and limit.min is not None and measured < limit.min:
        unit = " characters" if limit.length else ""
        walk.add(prop, f"{_fmt(measured)}{unit}, minimum {_fmt(limit.min)}", where)
    elif limit.pattern and not re.fullmatch(limit.pattern, text):
        walk.add(prop, f"{text[:60]!r} is not allowed", where)
    return True


def _check_resource(logical_id: str, resource: Mapping[str, Any], paths: Mapping[str, str]) -> _Walk:
    rtype = str(resource.get("Type"))
    walk = _Walk(_resource_label(logical_id, resource, paths))
    api = RESOURCE_APIS.get(rtype)
    props = resource.get("Properties") or {}
    if api is None:
        walk.unchecked.update(f"{rtype}.{p}" for p in props)
        return walk
    base = api_shape(api.service, api.shape)
    for prop, value in props.items():
        if _documented(walk, rtype, prop, value):
            continue
        if prop in api.members:
            shape_name, member = api.members[prop]
            target = api_shape(api.service, shape_name)
            if member is None:
                items = value if isinstance(value, list) else [value]
                for i, item in enumerate(items):
                    walk.value(f"{prop}[{i}]" if isinstance(value, list) else prop, item, target,
                               f"botocore {api.service} {shape_name}")
                continue
            walk.value(prop, value, target.members[member], f"botocore {api.service} {shape_name}.{member}")
            continue
        member_name = _match_member(base, prop)
        if member_name is None:
            walk.unchecked.add(f"{rtype}.{prop}")
            continue
        walk.value(prop, value, base.members[member_name], f"botocore {api.service} {api.shape}.{member_name}")
    return walk


def _walks(template: Mapping[str, Any], paths: Mapping[str, str]) -> Iterator[_Walk]:
    for logical_id, resource in (template.get("Resources") or {}).items():
        yield _check_resource(logical_id, resource, paths)


def template_problems(template: Mapping[str, Any], paths: Mapping[str, str] | None = None) -> list[str]:
    """One line per value in `template` that a documented limit refuses: resource, property, limit.

    `paths` (logical id -> construct path) names resources the way the code does."""
    return [p for w in _walks(template, paths or {}) for p in w.problems]


def unchecked_properties(template: Mapping[str, Any]) -> set[str]:
    """`Type.Property` (or a nested path) that no API member or documented limit covers."""
    out: set[str] = set()
    for w in _walks(template, {}):
        out |= {u if u.startswith("AWS::") else f"{w.resource.split('(')[-1].rstrip(')')}.{u}"
                for u in w.unchecked}
    return out


def check_template(template: Mapping[str, Any], paths: Mapping[str, str] | None = None) -> None:
    """Raise LimitError when any value breaks a documented limit."""
    problems = template_problems(template, paths)
    if problems:
        raise LimitError(problems)


def check_assembly(app: Any, assembly: Any) -> None:
    """Check every stack template of a synthesized CDK app (`app.synth()`'s result); raise LimitError."""
    import aws_cdk as cdk  # noqa: PLC0415 - the check itself needs no CDK

    problems: list[str] = []
    for stack in (c for c in app.node.find_all() if isinstance(c, cdk.Stack)):
        artifact = assembly.get_stack_artifact(stack.artifact_id)
        paths = {stack.resolve(c.logical_id): c.node.path for c in stack.node.find_all()
                 if isinstance(c, cdk.CfnElement)}
        problems += template_problems(artifact.template, paths)
        problems += policy_problems(artifact.template, paths, getattr(stack, "policy_fields", None))
    if problems:
        raise LimitError(problems)


def synth_checked(app: Any, build: Callable[[Any], object]) -> int:
    """The CDK entry points' main: build the app, synthesize it and check every template against the
    limits. A config or limit problem prints one `error:` line each and returns 1 instead of a trace."""
    from bridge.config import ConfigError  # noqa: PLC0415 - keeps the limit check importable on its own

    try:
        build(app)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        check_assembly(app, app.synth())
    except LimitError as exc:
        for line in exc.problems:
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0
