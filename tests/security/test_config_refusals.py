"""Configurations that would open a way around the trust model are refused when the config is
validated (so at synth, by the CLI and by the handler), with one line naming the field and the fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from bridge.config import BridgeConfig, ConfigError

from tests.infra.conftest import Synth
from tests.security.conftest import OTHER_ROLE
from tests.security.policy import OTHER_ACCOUNT, PolicyWorld

Edit = Callable[[dict[str, Any]], None]


def problems(variant_document: Callable[[Edit], dict[str, Any]], edit: Edit) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        BridgeConfig.from_dict(variant_document(edit))
    return caught.value.problems


def destination(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(d for d in doc["destinations"] if d["name"] == name)


def producer(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["producers"] if p["name"] == name)


def subscribe_ledger(doc: dict[str, Any]) -> None:
    # payments-ledger is FIFO: a FIFO topic of any producer's records fanned out to it
    doc["destinations"].append({"name": "payment-events", "type": "sns", "fifo": True,
                                "subscriptions": [{"queue": "payments-ledger"}]})
    doc["routes"].append({"name": "all-payments", "match": {"topic": "payments"}, "to": ["payment-events"]})


def assert_one_line(found: list[str], field: str) -> None:
    assert len(found) == 1, found
    assert found[0].startswith(field), found
    assert "Fix:" in found[0]
    assert "\n" not in found[0]


@pytest.mark.attack("signed-only queue subscribed to a topic any producer's records reach",
                    outcome="refused at synth", how="config validation, one line")
def test_signed_only_queue_behind_a_topic(variant_document: Callable[[Edit], dict[str, Any]]) -> None:
    assert_one_line(problems(variant_document, subscribe_ledger), "destinations[payment-events].subscriptions")


def test_a_topic_that_accepts_only_the_same_producers_may_feed_the_queue(
        variant_document: Callable[[Edit], dict[str, Any]]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        subscribe_ledger(doc)
        destination(doc, "payment-events")["accept_from"] = ["payment-service"]

    BridgeConfig.from_dict(variant_document(edit))


@pytest.mark.attack("unmatched records routed into a signed-only queue (or a topic feeding one)",
                    outcome="refused at synth", how="config validation, one line")
@pytest.mark.parametrize("target", ["payments-ledger", "payment-events"])
def test_unmatched_route_into_signed_only(variant_document: Callable[[Edit], dict[str, Any]], target: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["destinations"].append({"name": "payment-events", "type": "sns", "fifo": True,
                                    "accept_from": ["payment-service"],
                                    "subscriptions": [{"queue": "payments-ledger"}]})
        doc["unmatched"] = {"action": "route", "to": [target]}

    assert_one_line(problems(variant_document, edit), "unmatched.to")


@pytest.mark.attack("producer trusted as a whole account (:root)", outcome="refused at synth",
                    how="config validation, one line")
@pytest.mark.parametrize("account", ["123456789012", OTHER_ACCOUNT])
def test_root_principal(variant_document: Callable[[Edit], dict[str, Any]], account: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        producer(doc, "order-service")["aws_principal"] = f"arn:aws:iam::{account}:root"

    assert_one_line(problems(variant_document, edit), "producers[0].aws_principal")


@pytest.mark.attack("producer role trusting a foreign role with no condition", outcome="refused at synth",
                    how="config validation, one line")
def test_foreign_principal_without_condition(variant_document: Callable[[Edit], dict[str, Any]]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        producer(doc, "order-service")["aws_principal"] = OTHER_ROLE

    assert_one_line(problems(variant_document, edit), "producers[order-service].aws_principal")


@pytest.mark.attack("foreign principal assumes a producer role without the agreed external id / organization",
                    outcome="denied by policy", how="role trust policy evaluated (sts:ExternalId, aws:PrincipalOrgID)")
def test_foreign_principal_needs_its_condition(hardened: Synth) -> None:
    w = PolicyWorld(hardened.data)
    orders = w.arn(w.role_id_by_description("producer order-service of"))
    inventory = w.arn(w.role_id_by_description("producer inventory-service of"))
    inv_role = OTHER_ROLE.replace("payments-ci", "inv")
    allow_assume = [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]

    assert not w.decide(OTHER_ROLE, "sts:AssumeRole", orders, identity=allow_assume)
    assert not w.decide(OTHER_ROLE, "sts:AssumeRole", orders, identity=allow_assume,
                        context={"sts:ExternalId": "guessed"})
    assert w.decide(OTHER_ROLE, "sts:AssumeRole", orders, identity=allow_assume,
                    context={"sts:ExternalId": "orders-7f3a"})
    assert not w.decide(inv_role, "sts:AssumeRole", inventory, identity=allow_assume,
                        context={"aws:PrincipalOrgID": "o-someoneelse"})
    assert w.decide(inv_role, "sts:AssumeRole", inventory, identity=allow_assume,
                    context={"aws:PrincipalOrgID": "o-abcdef1234"})


@pytest.mark.attack("OIDC producer role trusting a policy variable as subject or audience (`${<issuer>:sub}` "
                    "matches every subject)", outcome="refused at synth", how="config validation, one line")
@pytest.mark.parametrize("field", ["subject", "audience"])
def test_oidc_claim_as_a_policy_variable(variant_document: Callable[[Edit], dict[str, Any]], field: str) -> None:
    claim = "sub" if field == "subject" else "aud"

    def edit(doc: dict[str, Any]) -> None:
        producer(doc, "payment-service")["oidc"][field] = f"${{token.actions.githubusercontent.com:{claim}}}"

    assert_one_line(problems(variant_document, edit), f"producers[1].oidc.{field}")


@pytest.mark.attack("OIDC subject that displays as another (a bidi override: `refs/heads/` + U+202E + `niam` reads "
                    "`refs/heads/main`), trusting a branch anyone with push access can create",
                    outcome="refused at synth", how="config validation, one line")
@pytest.mark.parametrize("control", ["\u202e", "\u202d", "\u2066", "\u2067", "\u2068"])
def test_oidc_subject_with_a_bidi_control(variant_document: Callable[[Edit], dict[str, Any]], control: str) -> None:
    def edit(doc: dict[str, Any]) -> None:
        producer(doc, "payment-service")["oidc"]["subject"] = f"repo:octo-org/octo-repo:ref:refs/heads/{control}niam"

    assert_one_line(problems(variant_document, edit), "producers[1].oidc.subject")


@pytest.mark.attack("imported destination `arn` with a wildcard (`...:*`, `...:orders*`): the bridge granted "
                    "SendMessage/Publish on every queue or topic it matches", outcome="refused at synth",
                    how="config validation, one line (before: cdk-nag only)")
@pytest.mark.parametrize(("dtype", "name"), [("sqs", "*"), ("sqs", "orders*"), ("sns", "*")])
def test_imported_destination_arn_with_a_wildcard(variant_document: Callable[[Edit], dict[str, Any]], dtype: str,
                                                  name: str) -> None:
    at: list[int] = []

    def edit(doc: dict[str, Any]) -> None:
        at.append(len(doc["destinations"]))
        doc["destinations"].append({"name": "theirs", "type": dtype,
                                    "arn": f"arn:aws:{dtype}:us-east-1:123456789012:{name}"})
        doc["routes"].append({"name": "to-theirs", "match": {"topic": "orders"}, "to": ["theirs"]})

    assert_one_line(problems(variant_document, edit), f"destinations[{at[0]}].arn")
