"""The evaluator the security tier relies on answers as IAM does on small, hand-written policies."""

from __future__ import annotations

import pytest

from tests.security.policy import ACCOUNT, ADMIN_LIKE, Request, Resolver, evaluate, insider

QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"
BRIDGE = f"arn:aws:iam::{ACCOUNT}:role/bridge"
DENY_OTHERS = {"Sid": "OnlyBridge", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:SendMessage",
               "Resource": QUEUE, "Condition": {"ArnNotEquals": {"aws:PrincipalArn": [BRIDGE]}}}
TLS_ONLY = {"Sid": "Tls", "Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:*", "Resource": QUEUE,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def test_explicit_deny_beats_an_identity_allow() -> None:
    decision = evaluate(Request(insider(), "sqs:SendMessage", QUEUE), ADMIN_LIKE, [DENY_OTHERS])

    assert not decision
    assert "OnlyBridge" in decision.why


def test_the_excepted_principal_is_allowed_by_its_identity_policy() -> None:
    allow = [{"Sid": "Send", "Effect": "Allow", "Action": ["sqs:SendMessage"], "Resource": [QUEUE]}]

    assert evaluate(Request(BRIDGE, "sqs:SendMessage", QUEUE), allow, [DENY_OTHERS, TLS_ONLY])


def test_no_allow_is_an_implicit_deny() -> None:
    assert evaluate(Request(BRIDGE, "sqs:SendMessage", QUEUE), [], [DENY_OTHERS]).why == "implicit deny"


def test_tls_condition_reads_the_transport() -> None:
    plain = Request(BRIDGE, "sqs:ReceiveMessage", QUEUE, {"aws:SecureTransport": "false"})

    assert not evaluate(plain, ADMIN_LIKE, [TLS_ONLY])
    assert evaluate(Request(BRIDGE, "sqs:ReceiveMessage", QUEUE), ADMIN_LIKE, [TLS_ONLY])


@pytest.mark.parametrize(("context", "denied"), [({}, True), ({"aws:SourceArn": "arn:aws:sns:us-east-1:1:t"}, False),
                                                 ({"aws:SourceArn": "arn:aws:sns:us-east-1:1:other"}, True)])
def test_negated_operator_on_a_missing_key_holds(context: dict[str, str], denied: bool) -> None:
    deny = {"Effect": "Deny", "Principal": "*", "Action": "sqs:SendMessage", "Resource": QUEUE,
            "Condition": {"ArnNotEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:1:t"}}}
    allow = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
             "Resource": QUEUE}

    decision = evaluate(Request("service:sns.amazonaws.com", "sqs:SendMessage", QUEUE, context), [], [deny, allow])

    assert decision.allowed is not denied


def test_a_key_policy_must_allow_the_caller_or_delegate_to_the_account() -> None:
    root = {"Sid": "Root", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            "Action": "kms:*", "Resource": "*"}
    key = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k"

    assert not evaluate(Request(insider(), "kms:Decrypt", key), ADMIN_LIKE, [], key_policy=True)
    assert evaluate(Request(insider(), "kms:Decrypt", key), ADMIN_LIKE, [root], key_policy=True)
    assert not evaluate(Request(insider(), "kms:Decrypt", key), [], [root], key_policy=True)


def test_wildcards_in_actions_and_resources() -> None:
    allow = [{"Effect": "Allow", "Action": "s3:Put*", "Resource": "arn:aws:s3:::b/parked/*"}]

    assert evaluate(Request(BRIDGE, "s3:PutObject", "arn:aws:s3:::b/parked/x.json"), allow, [])
    assert not evaluate(Request(BRIDGE, "s3:PutObject", "arn:aws:s3:::b/other/x.json"), allow, [])
    assert not evaluate(Request(BRIDGE, "s3:GetObject", "arn:aws:s3:::b/parked/x.json"), allow, [])


def test_unknown_operator_fails_loudly() -> None:
    weird = {"Effect": "Deny", "Principal": "*", "Action": "*", "Resource": "*",
             "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}}

    with pytest.raises(AssertionError, match="IpAddress"):
        evaluate(Request(BRIDGE, "sqs:SendMessage", QUEUE, {"aws:SourceIp": "10.0.0.1"}), [], [weird])


def test_resolver_names_resources_like_aws() -> None:
    template = {"Resources": {
        "Q": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "orders"}},
        "R": {"Type": "AWS::IAM::Role", "Properties": {}},
    }}
    r = Resolver(template)

    assert r.resolve({"Fn::GetAtt": ["Q", "Arn"]}) == f"arn:aws:sqs:us-east-1:{ACCOUNT}:orders"
    assert r.resolve({"Fn::Join": ["", [{"Fn::GetAtt": ["R", "Arn"]}, "/x"]]}) == f"arn:aws:iam::{ACCOUNT}:role/r/x"
    assert r.resolve({"Fn::Sub": "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:x"}) == \
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:x"


OPS = f"arn:aws:iam::{ACCOUNT}:role/ops"
OPS_SESSION = f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/alice"
DENY_OPS = {"Sid": "NotOps", "Effect": "Deny", "Principal": {"AWS": OPS}, "Action": "sqs:*", "Resource": QUEUE}
ALLOW_OPS = {"Sid": "Ops", "Effect": "Allow", "Principal": {"AWS": [OPS]}, "Action": "sqs:ReceiveMessage",
             "Resource": QUEUE}


@pytest.mark.parametrize("caller", [OPS, OPS_SESSION])
def test_a_deny_naming_a_role_applies_to_its_sessions(caller: str) -> None:
    # IAM matches a resource policy's role principal against the role behind a session (review s9 2.1): before,
    # the evaluator compared the raw session ARN and let the session through on its identity policy
    decision = evaluate(Request(caller, "sqs:SendMessage", QUEUE), ADMIN_LIKE, [DENY_OPS])

    assert not decision
    assert "NotOps" in decision.why


@pytest.mark.parametrize("caller", [OPS, OPS_SESSION])
def test_an_allow_naming_a_role_applies_to_its_sessions_and_to_no_other_role(caller: str) -> None:
    other_session = f"arn:aws:sts::{ACCOUNT}:assumed-role/ops-admin/alice"

    decision = evaluate(Request(caller, "sqs:ReceiveMessage", QUEUE), [], [ALLOW_OPS])

    assert decision.why == "allowed by resource policy statement Ops"
    assert evaluate(Request(other_session, "sqs:ReceiveMessage", QUEUE), [], [ALLOW_OPS]).why == "implicit deny"
    assert evaluate(Request(other_session, "sqs:SendMessage", QUEUE), ADMIN_LIKE, [DENY_OPS])
