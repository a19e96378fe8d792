"""Resource policies at the config's maxima fit their services' size quotas (infra.policy_sizes): the roles a
config names grow the queue, key, bucket, secret and Lambda policies, and a policy over its quota fails the
deploy halfway. What validation cannot bound is refused on synth, naming the field."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bridge.config import MAX_OPERATOR_ARN_CHARS, MAX_OPERATOR_ROLES, BridgeConfig, ConfigError

from infra.config_document import config_from_document
from infra.policy_sizes import POLICY_QUOTAS, _longest, _size, policy_problems
from tests.infra.conftest import Synth, _provisioned_edit, synthesize

ARN_PREFIX = "arn:aws:iam::123456789012:role/"


def _operators(count: int, total_chars: int) -> list[str]:
    """`count` distinct role ARNs, `total_chars` characters together."""
    each, extra = divmod(total_chars, count)
    return [ARN_PREFIX + f"op{i:02d}-".ljust(each + (i < extra) - len(ARN_PREFIX), "x") for i in range(count)]


def test_at_the_operator_maxima_every_policy_fits_its_quota(
        variant_document: Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]], tmp_path: Path) -> None:
    # given: the provisioned variant (checkpoints, replay targets, direct producers) with as many operator roles,
    # and as long, as validation lets through
    operators = _operators(MAX_OPERATOR_ROLES, MAX_OPERATOR_ARN_CHARS)
    assert sum(map(len, operators)) == MAX_OPERATOR_ARN_CHARS

    def edit(doc: dict[str, Any]) -> None:
        _provisioned_edit(doc)
        doc["settings"]["operator_role_arns"] = operators

    # when: it is synthesized (the synth itself checks every policy, at its longest once deployed)
    synth = synthesize(config_from_document(variant_document(edit), "maxima"), tmp_path)

    # then: nothing over a quota; the SQS policies, the tightest, within 90% of theirs (the rest is room for a
    # destination's consumers and direct producers, which the synth checks)
    assert policy_problems(synth.data) == []
    resources = synth.data["Resources"]
    sizes = [_size(_longest(r["Properties"]["PolicyDocument"], resources)) for r in resources.values()
             if r["Type"] == "AWS::SQS::QueuePolicy"]
    assert 0.6 * 8_192 < max(sizes) <= 0.9 * 8_192


@pytest.mark.parametrize(("count", "chars"), [(MAX_OPERATOR_ROLES, MAX_OPERATOR_ARN_CHARS + 1),
                                              (MAX_OPERATOR_ROLES + 1, (MAX_OPERATOR_ROLES + 1) * 40)],
                         ids=["too-long-together", "too-many"])
def test_operator_roles_past_what_the_policies_hold_are_refused_at_validation(
        variant_document: Callable[[Callable[[dict[str, Any]], None]], dict[str, Any]], count: int,
        chars: int) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc.setdefault("settings", {})["operator_role_arns"] = _operators(count, chars)

    with pytest.raises(ConfigError) as caught:
        BridgeConfig.from_dict(variant_document(edit))
    (problem,) = caught.value.problems
    assert problem.startswith("settings.operator_role_arns: ")
    assert "Fix: let the operators assume fewer roles" in problem


def test_a_queue_policy_over_its_quota_is_refused_on_synth_naming_the_field(provisioned: Synth) -> None:
    # given: a destination whose consumers (which validation does not bound) fill its queue policy past SQS's
    # 8,192 bytes: the queue's Deny of other readers lists them all
    data = copy.deepcopy(provisioned.data)
    queue = provisioned.logical_id("AWS::SQS::Queue", QueueName=provisioned.config.destination("billing")
                                   .physical_name(provisioned.config.prefix))
    consumers = _operators(120, 120 * 70)
    (policy,) = [r for r in data["Resources"].values() if r["Type"] == "AWS::SQS::QueuePolicy"
                 and r["Properties"]["Queues"] == [{"Ref": queue}]]
    policy["Properties"]["PolicyDocument"]["Statement"].append(
        {"Effect": "Deny", "Principal": {"AWS": "*"}, "Action": "sqs:ReceiveMessage",
         "Resource": {"Fn::GetAtt": [queue, "Arn"]}, "Condition": {"ArnNotEquals": {"aws:PrincipalArn": consumers}}})

    # when: the policies are checked, as every synth checks them
    problems = policy_problems(data, fields={"destinations.billing.consumers": consumers})

    # then: one line naming the queue's policy, its size against SQS's quota, and the field to shorten
    (problem,) = problems
    assert "the SQS queue policy could reach" in problem
    assert "over its 8,192" in problem
    assert "Fix: name fewer or shorter roles in destinations.billing.consumers (120 of them)" in problem


@pytest.mark.parametrize(("what", "grow", "expected"), [
    ("actions", lambda st: st.update(Action=[f"sqs:Action{i}" for i in range(8)]),
     "8 actions in one statement, over its 7"),
    ("conditions", lambda st: st.update(Condition={"StringEquals": {f"aws:Key{i}": "x" for i in range(11)}}),
     "conditions, over its 10"),
], ids=["actions-per-statement", "conditions"])
def test_a_queue_policy_past_sqs_statement_quotas_is_refused_on_synth(
        provisioned: Synth, what: str, grow: Callable[[dict[str, Any]], None], expected: str) -> None:
    # given: the provisioned template, and every queue policy within SQS's 7 actions per statement and 10
    # conditions (the most today: 5 actions, in the operators' replay Allow on a DLQ)
    assert policy_problems(provisioned.data) == []
    data = copy.deepcopy(provisioned.data)
    (policy, *_) = [r for r in data["Resources"].values() if r["Type"] == "AWS::SQS::QueuePolicy"]
    statement = policy["Properties"]["PolicyDocument"]["Statement"][0]

    # when: one statement grows past the quota
    grow(statement)

    # then: the synth check names it
    (problem,) = policy_problems(data)
    assert "the SQS queue policy could reach" in problem
    assert expected in problem


def test_intrinsic_values_count_at_their_longest() -> None:
    # a role ARN CloudFormation names: at most 102 characters (aws-us-gov, a 64-character name); counted with a
    # region's 14 more, which IAM ARNs lack: an over-count, never an under-count
    resources = {"Role": {"Type": "AWS::IAM::Role", "Properties": {}}}
    arn = _longest({"Fn::GetAtt": ["Role", "Arn"]}, resources)
    assert len("arn:aws-us-gov:iam::123456789012:role/") + 64 <= len(arn) <= 102 + 14
    assert json.dumps(_longest({"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/x"}, {})) == \
        '"arn:aws-us-gov:iam::000000000000:role/x"'
    assert set(POLICY_QUOTAS) == {"AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy", "AWS::KMS::Key",
                                  "AWS::SecretsManager::ResourcePolicy", "AWS::S3::BucketPolicy"}
