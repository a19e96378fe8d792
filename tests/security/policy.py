"""An IAM policy evaluator over a synthesized template: who may do what to which resource.

The security tier asks questions such as "may a role of the account with `sqs:*` on `*` send to the
payments-ledger queue?" and answers them from the policy documents CDK wrote, evaluated the way
AWS evaluates a same-account request: an explicit Deny in any applicable policy wins; otherwise an
Allow in the caller's identity policies or in the resource's policy grants the request; otherwise
it is denied implicitly. KMS differs: a key is usable only when its key policy allows the caller,
directly or by allowing the account (which hands the decision to IAM).

Intrinsic functions are resolved to concrete names first (account 123456789012, us-east-1,
partition aws), so conditions such as `aws:SourceArn` compare real ARNs. Condition operators
implemented: String*/Arn* (with IfExists and the negated forms), Bool, Null, Numeric*; a missing
context key makes a positive operator false, a negated one true and a ForAllValues test true, as in
IAM. An operator the evaluator does not know fails the test rather than being ignored.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
OTHER_ACCOUNT = "210987654321"

# A principal of the account whose identity policy allows everything: the strongest insider short
# of changing the resource policies themselves.
ADMIN_LIKE = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- resolving intrinsic functions ---------------------------------------------------------------


class Resolver:
    """Turns Ref / Fn::GetAtt / Fn::Join / Fn::Sub into the names AWS would give the resources."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.resources: Mapping[str, Any] = template["Resources"]

    def name_of(self, logical_id: str) -> str:
        props = self.resources[logical_id].get("Properties", {})
        for key in ("QueueName", "TopicName", "BucketName", "Name", "RoleName", "FunctionName", "LogGroupName",
                    "TableName"):
            if isinstance(props.get(key), str):
                return str(props[key])
        return logical_id.lower()

    def ref(self, logical_id: str) -> str:
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": PARTITION,
                  "AWS::URLSuffix": "amazonaws.com", "AWS::StackName": "stack", "AWS::NoValue": ""}
        if logical_id in pseudo:
            return pseudo[logical_id]
        kind = self.resources[logical_id]["Type"]
        name = self.name_of(logical_id)
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{name}"
        if kind in ("AWS::SNS::Topic", "AWS::SecretsManager::Secret"):
            return self.arn(logical_id)
        if kind == "AWS::KMS::Key":
            return f"key-{logical_id.lower()}"
        if kind == "AWS::Lambda::Alias":  # Ref gives an alias its ARN
            return self.arn(logical_id)
        return name

    def arn(self, logical_id: str) -> str:
        kind = self.resources[logical_id]["Type"]
        name = self.name_of(logical_id)
        base = f"arn:{PARTITION}"
        if kind == "AWS::SQS::Queue":
            return f"{base}:sqs:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::SNS::Topic":
            return f"{base}:sns:{REGION}:{ACCOUNT}:{name}"
        if kind == "AWS::S3::Bucket":
            return f"{base}:s3:::{name}"
        if kind == "AWS::KMS::Key":
            return f"{base}:kms:{REGION}:{ACCOUNT}:key/{self.ref(logical_id)}"
        if kind == "AWS::IAM::Role":
            return f"{base}:iam::{ACCOUNT}:role/{name}"
        if kind == "AWS::SecretsManager::Secret":
            return f"{base}:secretsmanager:{REGION}:{ACCOUNT}:secret:{name}-AbCdEf"
        if kind == "AWS::Lambda::Function":
            return f"{base}:lambda:{REGION}:{ACCOUNT}:function:{name}"
        if kind == "AWS::Lambda::Alias":
            props = self.resources[logical_id]["Properties"]
            return f"{self.arn(props['FunctionName']['Ref'])}:{props['Name']}"
        if kind == "AWS::DynamoDB::Table":
            return f"{base}:dynamodb:{REGION}:{ACCOUNT}:table/{name}"
        if kind == "AWS::Logs::LogGroup":
            return f"{base}:logs:{REGION}:{ACCOUNT}:log-group:{name}:*"
        return f"{base}:{kind.split('::')[1].lower()}:{REGION}:{ACCOUNT}:{name}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        if attribute in ("Arn", "TopicArn"):
            return self.arn(logical_id)
        if attribute in ("QueueName", "TopicName"):
            return self.name_of(logical_id)
        if attribute == "QueueUrl":
            return self.ref(logical_id)
        raise AssertionError(f"Fn::GetAtt {logical_id}.{attribute} is not resolved by the evaluator")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, Mapping):
            return value
        if set(value) == {"Ref"}:
            return self.ref(value["Ref"])
        if set(value) == {"Fn::GetAtt"}:
            logical_id, attribute = value["Fn::GetAtt"]
            return self.get_att(logical_id, attribute)
        if set(value) == {"Fn::Join"}:
            sep, parts = value["Fn::Join"]
            return sep.join(str(self.resolve(p)) for p in parts)
        if set(value) == {"Fn::Sub"}:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]

            def sub(m: re.Match[str]) -> str:
                logical_id, _, attribute = m.group(1).partition(".")
                return self.get_att(logical_id, attribute) if attribute else self.ref(logical_id)

            return re.sub(r"\$\{([^}]+)\}", sub, text)
        return {k: self.resolve(v) for k, v in value.items()}


# --- evaluation ----------------------------------------------------------------------------------


def principal_arn(caller: str) -> str:
    """`aws:PrincipalArn` for a caller: for a role session, the role's ARN ("For IAM roles, the request context
    returns the ARN of the role, not the ARN of the user that assumed the role", IAM User Guide, "AWS global
    condition context keys", aws:PrincipalArn); anything else as it is. Role paths are not in a session ARN: the
    roles this evaluator meets have none."""
    m = re.fullmatch(r"arn:([\w-]+):sts::(\d{12}):assumed-role/([^/]+)/[^/]+", caller)
    return f"arn:{m[1]}:iam::{m[2]}:role/{m[3]}" if m else caller


@dataclass(frozen=True)
class Request:
    """One API call: who (an IAM ARN, or `service:<name>` for an AWS service), what, on which ARN."""

    principal: str
    action: str
    resource: str
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def keys(self) -> dict[str, list[str]]:
        """The request context as IAM sees it: principal keys and TLS added to what the caller gives."""
        out: dict[str, list[str]] = {"aws:SecureTransport": ["true"]}
        if not self.principal.startswith("service:"):
            out["aws:PrincipalArn"] = [principal_arn(self.principal)]
            out["aws:PrincipalAccount"] = [self.principal.split(":")[4]]
        for k, v in self.context.items():
            out[k] = [v] if isinstance(v, str) else list(v)
        return out


@dataclass(frozen=True)
class Decision:
    allowed: bool
    why: str  # "explicit deny by <sid>", "allowed by <sid>", "implicit deny"

    def __bool__(self) -> bool:
        return self.allowed


def _glob(pattern: str, value: str, ignore_case: bool = False) -> bool:
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    return fnmatch.fnmatchcase(value, pattern)


def _matches_action(statement: Mapping[str, Any], action: str) -> bool:
    if "NotAction" in statement:
        return not any(_glob(a, action, True) for a in as_list(statement["NotAction"]))
    return any(_glob(a, action, True) for a in as_list(statement.get("Action", [])))


def _matches_resource(statement: Mapping[str, Any], resource: str, key_policy: bool) -> bool:
    if key_policy:
        return True  # in a key policy "*" means the key itself, and nothing else is allowed there
    if "NotResource" in statement:
        return not any(_glob(r, resource) for r in as_list(statement["NotResource"]))
    return any(_glob(r, resource) for r in as_list(statement.get("Resource", "*")))


def _principal_kind(statement: Mapping[str, Any], principal: str) -> str | None:
    """'direct' when the statement names the caller (or everyone), 'account' when it names the caller's
    account root (which delegates to IAM), None when it does not apply to the caller."""
    p = statement.get("Principal")
    if p == "*":
        return "direct"
    if not isinstance(p, Mapping):
        return None
    if principal.startswith("service:"):
        return "direct" if principal.removeprefix("service:") in as_list(p.get("Service", [])) or \
            "*" in as_list(p.get("AWS", [])) else None
    account = principal.split(":")[4]
    # A statement naming a role applies to the role's sessions too: IAM matches the role ARN behind a session.
    names = (principal, principal_arn(principal))
    for aws in as_list(p.get("AWS", [])):
        if aws == "*" or aws in names:
            return "direct"
        if aws in (f"arn:{PARTITION}:iam::{account}:root", account):
            return "account"
    return None


_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike",
            "NumericNotEquals")


def _compare(op: str, expected: str, actual: str) -> bool:
    if op in ("StringEquals", "StringNotEquals"):
        return expected == actual
    if op in ("StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase"):
        return expected.lower() == actual.lower()
    if op in ("StringLike", "StringNotLike", "ArnLike", "ArnNotLike", "ArnEquals", "ArnNotEquals"):
        return _glob(expected, actual)
    if op == "Bool":
        return expected.lower() == actual.lower()
    if op.startswith("Numeric"):
        e, a = float(expected), float(actual)
        return {"NumericEquals": a == e, "NumericNotEquals": a == e, "NumericLessThan": a < e,
                "NumericLessThanEquals": a <= e, "NumericGreaterThan": a > e,
                "NumericGreaterThanEquals": a >= e}[op]
    raise AssertionError(f"condition operator {op} is not implemented by the evaluator")


def _condition_holds(raw_op: str, key: str, expected: Any, keys: Mapping[str, list[str]]) -> bool:
    qualifier, _, op = raw_op.rpartition(":")
    if_exists = op.endswith("IfExists")
    op = op.removesuffix("IfExists")
    values = [str(v).lower() if isinstance(v, bool) else str(v) for v in as_list(expected)]
    actual = keys.get(key)
    if op == "Null":
        return (actual is None) == (values[0].lower() == "true")
    if actual is None:
        # ForAllValues over an absent (empty) multivalued key is true in IAM, whatever the operator
        return qualifier == "ForAllValues" or if_exists or op in _NEGATED
    negated = op in _NEGATED
    if qualifier == "ForAllValues":
        hits = [any(_compare(op, e, a) for e in values) for a in actual]
        return all(not h for h in hits) if negated else all(hits)
    # single-valued keys and ForAnyValue: the condition holds when any actual value matches any value
    hit = any(_compare(op, e, a) for e in values for a in actual)
    return not hit if negated else hit


def conditions_hold(statement: Mapping[str, Any], keys: Mapping[str, list[str]]) -> bool:
    return all(_condition_holds(op, key, expected, keys)
               for op, block in statement.get("Condition", {}).items()
               for key, expected in block.items())


def _applies(statement: Mapping[str, Any], request: Request, keys: Mapping[str, list[str]], *,
             key_policy: bool) -> bool:
    return (_matches_action(statement, request.action)
            and _matches_resource(statement, request.resource, key_policy)
            and conditions_hold(statement, keys))


def evaluate(request: Request, identity: Iterable[Mapping[str, Any]], resource_policy: Iterable[Mapping[str, Any]],
             *, key_policy: bool = False) -> Decision:
    """Same-account evaluation of one request against the caller's identity statements and the
    resource's policy statements (`key_policy` for a KMS key policy)."""
    keys = request.keys()
    identity = list(identity) if not request.principal.startswith("service:") else []
    resource_policy = list(resource_policy)
    for s in identity:
        if s["Effect"] == "Deny" and _applies(s, request, keys, key_policy=False):
            return Decision(False, f"explicit deny by identity statement {s.get('Sid', '?')}")
    for s in resource_policy:
        if s["Effect"] == "Deny" and _principal_kind(s, request.principal) and \
                _applies(s, request, keys, key_policy=key_policy):
            return Decision(False, f"explicit deny by resource policy statement {s.get('Sid', '?')}")
    identity_allow = next((s for s in identity if s["Effect"] == "Allow"
                           and _applies(s, request, keys, key_policy=False)), None)
    resource_account = request.resource.split(":")[4] if request.resource.count(":") >= 5 else ""
    caller_account = "" if request.principal.startswith("service:") else request.principal.split(":")[4]
    if request.action.lower() == "sts:assumerole" or (resource_account and caller_account
                                                      and resource_account != caller_account):
        # Cross-account calls, and assuming a role, need both sides: the caller's identity policy and
        # the resource's policy (the role's trust policy) naming the caller or its account.
        trusted = next((s for s in resource_policy if s["Effect"] == "Allow" and _principal_kind(s, request.principal)
                        and _applies(s, request, keys, key_policy=key_policy)), None)
        if trusted is not None and identity_allow is not None:
            return Decision(True, f"allowed by resource policy statement {trusted.get('Sid', '?')} and identity")
        return Decision(False, "implicit deny")
    for s in resource_policy:
        if s["Effect"] != "Allow" or not _applies(s, request, keys, key_policy=key_policy):
            continue
        kind = _principal_kind(s, request.principal)
        if kind == "direct":
            return Decision(True, f"allowed by resource policy statement {s.get('Sid', '?')}")
        if kind == "account" and key_policy and identity_allow is not None:
            return Decision(True, f"allowed by identity statement {identity_allow.get('Sid', '?')} "
                                  f"(key policy delegates to IAM: {s.get('Sid', '?')})")
    if identity_allow is not None and not key_policy:
        return Decision(True, f"allowed by identity statement {identity_allow.get('Sid', '?')}")
    return Decision(False, "implicit deny")


# --- the synthesized stack as a set of policies ---------------------------------------------------


class PolicyWorld:
    """The policies of one synthesized template, resolved, with the questions the tests ask."""

    def __init__(self, template: Mapping[str, Any]) -> None:
        self.resolver = Resolver(template)
        self.template = template
        self.resources: Mapping[str, Any] = template["Resources"]

    def ids(self, cfn_type: str) -> list[str]:
        return [k for k, r in self.resources.items() if r["Type"] == cfn_type]

    def by_name(self, cfn_type: str, name: str) -> str:
        """The logical id of the resource of `cfn_type` whose physical name is `name`."""
        found = [k for k in self.ids(cfn_type) if self.resolver.name_of(k) == name]
        assert len(found) == 1, f"{cfn_type} named {name}: {found}"
        return found[0]

    def arn(self, logical_id: str) -> str:
        return self.resolver.arn(logical_id)

    def role_arn(self, logical_id: str) -> str:
        return self.resolver.arn(logical_id)

    def role_id_by_description(self, text: str) -> str:
        """The role whose description is `text`, else the one role whose description contains it."""
        descriptions = {k: str(self.resources[k].get("Properties", {}).get("Description", ""))
                        for k in self.ids("AWS::IAM::Role")}
        found = [k for k, d in descriptions.items() if d == text] or [k for k, d in descriptions.items() if text in d]
        assert len(found) == 1, f"role described {text!r}: {found}"
        return found[0]

    def identity_statements(self, role_arn: str) -> list[dict[str, Any]]:
        """Every identity statement of the role with this ARN (inline and attached policies)."""
        out: list[dict[str, Any]] = []
        for k in self.ids("AWS::IAM::Role"):
            if self.resolver.arn(k) != role_arn:
                continue
            for p in self.resources[k].get("Properties", {}).get("Policies", []):
                out += as_list(self.resolver.resolve(p["PolicyDocument"])["Statement"])
            for pk in self.ids("AWS::IAM::Policy"):
                props = self.resources[pk]["Properties"]
                if {"Ref": k} in props.get("Roles", []):
                    out += as_list(self.resolver.resolve(props["PolicyDocument"])["Statement"])
        return out

    def resource_statements(self, resource_arn: str) -> tuple[list[dict[str, Any]], bool]:
        """(statements of the resource policy of the resource with this ARN, whether it is a key policy)."""
        r = self.resolver
        if resource_arn.startswith(f"arn:{PARTITION}:lambda:"):  # a function's or an alias's permissions
            return [{"Sid": k, "Effect": "Allow", "Action": props["Action"], "Resource": resource_arn,
                     "Principal": {"Service" if props["Principal"].endswith(".amazonaws.com") else "AWS":
                                   props["Principal"]}}
                    for k, props in ((k, r.resolve(res["Properties"])) for k, res in self.resources.items()
                                     if res["Type"] == "AWS::Lambda::Permission")
                    if props["FunctionName"] == resource_arn], False
        for k, res in self.resources.items():
            props = res.get("Properties", {})
            kind = res["Type"]
            if kind == "AWS::SQS::QueuePolicy":
                targets = [r.arn(q["Ref"]) for q in props["Queues"] if isinstance(q, Mapping) and "Ref" in q]
            elif kind == "AWS::SNS::TopicPolicy":
                targets = [r.resolve(t) for t in props["Topics"]]
            elif kind == "AWS::S3::BucketPolicy":
                bucket = r.resolve(props["Bucket"])
                targets = [f"arn:{PARTITION}:s3:::{bucket}"]
                if resource_arn.startswith(targets[0] + "/"):
                    targets.append(resource_arn)
            elif kind == "AWS::DynamoDB::Table":
                if r.arn(k) == resource_arn and "ResourcePolicy" in props:
                    return as_list(r.resolve(props["ResourcePolicy"]["PolicyDocument"])["Statement"]), False
                continue
            elif kind == "AWS::SecretsManager::ResourcePolicy":
                targets = [r.resolve(props["SecretId"])]
            elif kind == "AWS::IAM::Role":
                if r.arn(k) == resource_arn:  # sts:AssumeRole: the trust policy is the role's resource policy
                    return as_list(r.resolve(props["AssumeRolePolicyDocument"])["Statement"]), False
                continue
            elif kind == "AWS::KMS::Key":
                if r.arn(k) == resource_arn:
                    return as_list(r.resolve(props["KeyPolicy"])["Statement"]), True
                continue
            else:
                continue
            if resource_arn in targets:
                key = "PolicyDocument" if "PolicyDocument" in props else "ResourcePolicy"
                return as_list(r.resolve(props[key])["Statement"]), False
        return [], resource_arn.startswith(f"arn:{PARTITION}:kms:")

    def decide(self, principal: str, action: str, resource_arn: str, *,
               identity: Iterable[Mapping[str, Any]] | None = None,
               context: Mapping[str, str | Sequence[str]] | None = None) -> Decision:
        """May `principal` call `action` on the resource? `identity` defaults to the principal's role in the
        template (a principal outside the template has none unless given, e.g. ADMIN_LIKE)."""
        statements, key_policy = self.resource_statements(resource_arn)
        ident = list(identity) if identity is not None else self.identity_statements(principal)
        return evaluate(Request(principal, action, resource_arn, context or {}), ident, statements,
                        key_policy=key_policy)


def insider(name: str = "some-team-role") -> str:
    """A role of the same account that the bridge config does not mention."""
    return f"arn:{PARTITION}:iam::{ACCOUNT}:role/{name}"
