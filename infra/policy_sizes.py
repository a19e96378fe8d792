"""Synth-time check of every resource policy the template writes against its service's size quotas.

botocore's models state none of these (the Secrets Manager one aside): a policy over its quota fails the
deploy, after minutes, halfway through a rollout. The quotas, from each service's documentation:
- SQS queue policy: 8,192 bytes, 50 principals, 20 statements, 7 actions per statement, 10 conditions (SQS
  Developer Guide, "Amazon SQS policy quotas",
  docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/quotas-policies.html; the guide does not
  say whether the 10 conditions are per statement or per policy: counted per policy, every condition key of
  every statement, the stricter reading);
- SNS topic policy: 30 KB, 200 principals, 100 statements (SNS Developer Guide, "Amazon SNS API permissions:
  Actions and resources reference", Policy quotas);
- KMS key policy: 32,768 bytes (KMS Developer Guide, "Key policy format"; PutKeyPolicy's Policy);
- Secrets Manager resource policy: 20,480 characters (botocore's secretsmanager model,
  NonEmptyResourcePolicyType max);
- S3 bucket policy: 20 KB (S3 User Guide, "Bucket policies and user policies");
- Lambda: 20 KB for all the permissions of one function, version or alias (Lambda quotas; "The final
  policy size is bigger than the limit").

Values CloudFormation resolves at deploy time are counted at their longest (`_longest`): the aws-us-gov
partition, a 14-character region, the longest name the service allows for a resource the template does not
name, so a template that passes here cannot exceed a quota once deployed. Each policy is measured as compact
JSON, as CloudFormation passes it on. The one-line problem names the resource, the size, the quota, and the
config fields whose roles the policy lists, since they are what grows it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

KB = 1024


@dataclass(frozen=True)
class Quota:
    what: str
    max_bytes: int
    max_principals: int | None = None
    max_statements: int | None = None
    max_actions_per_statement: int | None = None
    max_conditions: int | None = None


POLICY_QUOTAS: Mapping[str, tuple[str, Quota]] = {  # resource type -> (the property holding the policy, quota)
    "AWS::SQS::QueuePolicy": ("PolicyDocument", Quota("SQS queue policy", 8_192, 50, 20, 7, 10)),
    "AWS::SNS::TopicPolicy": ("PolicyDocument", Quota("SNS topic policy", 30 * KB, 200, 100)),
    "AWS::KMS::Key": ("KeyPolicy", Quota("KMS key policy", 32_768)),
    "AWS::SecretsManager::ResourcePolicy": ("ResourcePolicy", Quota("Secrets Manager resource policy", 20_480)),
    "AWS::S3::BucketPolicy": ("PolicyDocument", Quota("S3 bucket policy", 20 * KB)),
}
LAMBDA_POLICY = Quota("Lambda resource-based policy (all permissions of one function or alias)", 20 * KB)
# What Lambda writes per AddPermission besides the principal and the resource: Sid, Effect, Action and the
# JSON around them (a statement of GetPolicy's answer without those two is under 150 bytes).
_LAMBDA_STATEMENT_OVERHEAD = 150

_PSEUDO = {"AWS::AccountId": "0" * 12, "AWS::Region": "x" * 14, "AWS::Partition": "aws-us-gov",
           "AWS::URLSuffix": "amazonaws.com.cn", "AWS::StackName": "x" * 128, "AWS::StackId": "x" * 256,
           "AWS::NoValue": ""}
_ARN_HEAD = len("arn:aws-us-gov:") + 14 + 1 + 12 + 1  # arn:partition:service:region:account: without the service
_NAME_PROPERTIES = ("QueueName", "TopicName", "RoleName", "FunctionName", "BucketName", "Name", "TableName")
# The longest name each service allows for a resource the template does not name, and how its ARN is built.
_LONGEST_NAME = {"AWS::SQS::Queue": 80, "AWS::SNS::Topic": 256, "AWS::IAM::Role": 64, "AWS::Lambda::Function": 64,
                 "AWS::S3::Bucket": 63, "AWS::SecretsManager::Secret": 512, "AWS::DynamoDB::Table": 255,
                 "AWS::KMS::Key": 36, "AWS::Lambda::Alias": 128}
_UNKNOWN = 256


def _name(resources: Mapping[str, Any], logical_id: str) -> int:
    resource = resources.get(logical_id, {})
    props = resource.get("Properties", {})
    for key in _NAME_PROPERTIES:
        if isinstance(props.get(key), str):
            return len(props[key])
    return _LONGEST_NAME.get(resource.get("Type", ""), _UNKNOWN)


def _arn(resources: Mapping[str, Any], logical_id: str) -> int:
    kind = resources.get(logical_id, {}).get("Type", "")
    name = _name(resources, logical_id)
    service, prefix = {"AWS::SQS::Queue": ("sqs", ""), "AWS::SNS::Topic": ("sns", ""),
                       "AWS::IAM::Role": ("iam", "role/"), "AWS::Lambda::Function": ("lambda", "function:"),
                       "AWS::S3::Bucket": ("s3", ""), "AWS::SecretsManager::Secret": ("secretsmanager", "secret:"),
                       "AWS::DynamoDB::Table": ("dynamodb", "table/"), "AWS::KMS::Key": ("kms", "key/")
                       }.get(kind, ("x" * 20, "x" * 20))
    extra = 7 if kind == "AWS::SecretsManager::Secret" else 0  # the random suffix Secrets Manager appends
    return _ARN_HEAD + len(service) + len(prefix) + name + extra


def _ref(resources: Mapping[str, Any], logical_id: str) -> int:
    kind = resources.get(logical_id, {}).get("Type", "")
    if kind in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret"):
        return _arn(resources, logical_id)
    if kind == "AWS::SQS::Queue":  # the queue URL
        return len("https://sqs..amazonaws.com.cn//") + 14 + 12 + _name(resources, logical_id)
    if kind == "AWS::Lambda::Alias":  # the alias ARN: the function's and the alias name
        props = resources[logical_id].get("Properties", {})
        function = props.get("FunctionName")
        function_name = _name(resources, function["Ref"]) if isinstance(function, dict) and "Ref" in function else 64
        alias = len(props["Name"]) if isinstance(props.get("Name"), str) else 128
        return _ARN_HEAD + len("lambda") + len("function:") + function_name + 1 + alias
    return _name(resources, logical_id)


def _longest(value: Any, resources: Mapping[str, Any]) -> Any:
    """`value` with every intrinsic function replaced by a string of its longest deployed length."""
    if isinstance(value, list):
        return [_longest(v, resources) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref" or key.startswith("Fn::"):
            return _intrinsic(key, arg, resources)
    return {k: _longest(v, resources) for k, v in value.items()}


def _intrinsic(key: str, arg: Any, resources: Mapping[str, Any]) -> str:
    if key == "Ref":
        return _PSEUDO[arg] if arg in _PSEUDO else "x" * _ref(resources, arg)
    if key == "Fn::GetAtt":
        logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
        return "x" * (_arn(resources, logical_id) if attribute == "Arn" else _UNKNOWN)
    if key == "Fn::Join":
        separator, parts = arg
        return str(separator).join(str(_longest(p, resources)) for p in parts)
    if key == "Fn::Sub":
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        return _sub(text, variables, resources)
    return "x" * _UNKNOWN


def _sub(text: str, variables: Mapping[str, Any], resources: Mapping[str, Any]) -> str:
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in variables:
            return str(_longest(variables[name], resources))
        if name in _PSEUDO:
            return _PSEUDO[name]
        logical_id, _, attribute = name.partition(".")
        return "x" * (_arn(resources, logical_id) if attribute == "Arn" else _ref(resources, logical_id))

    return re.sub(r"\$\{([^}!]+)\}", substitute, text)


def _size(document: Any) -> int:
    return len(json.dumps(document, separators=(",", ":")).encode())


def _principals(statements: Sequence[Mapping[str, Any]]) -> int:
    count = 0
    for statement in statements:
        principal = statement.get("Principal", {})
        for value in (principal.values() if isinstance(principal, dict) else [principal]):
            count += len(value) if isinstance(value, list) else 1
    return count


def _actions(statement: Mapping[str, Any]) -> int:
    actions = statement.get("Action", statement.get("NotAction", []))
    return len(actions) if isinstance(actions, list) else 1


def _conditions(statements: Sequence[Mapping[str, Any]]) -> int:
    """Condition keys over all statements (`{"ArnNotEquals": {"aws:PrincipalArn": [...]}}` is one)."""
    return sum(len(keys) for statement in statements for keys in statement.get("Condition", {}).values()
               if isinstance(keys, dict))


def _fix(text: str, fields: Mapping[str, Sequence[str]]) -> str:
    """The config fields whose roles `text` (a policy) names, for the problem's fix."""
    named = [f"{field} ({sum(arn in text for arn in arns)} of them)" for field, arns in fields.items()
             if any(arn in text for arn in arns)]
    return (f"Fix: name fewer or shorter roles in {', '.join(named)}" if named else
            "Fix: fewer producers or destinations sharing this resource")


def policy_problems(template: Mapping[str, Any], paths: Mapping[str, str] | None = None,
                    fields: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """One line per resource policy of `template` over its quota. `fields`: config field -> the role ARNs it
    gives, to name in the fix."""
    resources: Mapping[str, Any] = template.get("Resources", {})
    paths, fields = paths or {}, fields or {}
    problems: list[str] = []

    def check(label: str, quota: Quota, document: Any) -> None:
        statements = document.get("Statement", []) if isinstance(document, dict) else []
        statements = statements if isinstance(statements, list) else [statements]
        size, principals = _size(document), _principals(statements)
        over = [f"{size:,} bytes, over its {quota.max_bytes:,}"] if size > quota.max_bytes else []
        if quota.max_principals is not None and principals > quota.max_principals:
            over.append(f"{principals} principals, over its {quota.max_principals}")
        if quota.max_statements is not None and len(statements) > quota.max_statements:
            over.append(f"{len(statements)} statements, over its {quota.max_statements}")
        actions = max(map(_actions, statements), default=0)
        if quota.max_actions_per_statement is not None and actions > quota.max_actions_per_statement:
            over.append(f"{actions} actions in one statement, over its {quota.max_actions_per_statement}")
        conditions = _conditions(statements)
        if quota.max_conditions is not None and conditions > quota.max_conditions:
            over.append(f"{conditions} conditions, over its {quota.max_conditions}")
        if over:
            problems.append(f"{label}: the {quota.what} could reach {' and '.join(over)} once deployed. "
                            f"{_fix(json.dumps(document), fields)}")

    lambda_policies: dict[str, list[Any]] = {}
    for logical_id, resource in resources.items():
        kind, props = resource.get("Type"), resource.get("Properties", {})
        label = paths.get(logical_id, logical_id)
        if kind in POLICY_QUOTAS:
            key, quota = POLICY_QUOTAS[kind]
            if key in props:
                check(label, quota, _longest(props[key], resources))
        elif kind == "AWS::Lambda::Permission":
            target = json.dumps(props.get("FunctionName"), sort_keys=True)
            lambda_policies.setdefault(target, []).append(_longest(props, resources))
    for target, permissions in lambda_policies.items():
        size = sum(_size(p) + _LAMBDA_STATEMENT_OVERHEAD for p in permissions)
        if size > LAMBDA_POLICY.max_bytes:
            problems.append(f"{target}: the {LAMBDA_POLICY.what} could reach {size:,} bytes ({len(permissions)} "
                            f"permissions), over its {LAMBDA_POLICY.max_bytes:,} once deployed. "
                            f"{_fix(json.dumps(permissions), fields)}")
    return problems
