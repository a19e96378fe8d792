"""Small readers over a synthesized template (policies, statements, references)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def iam_statements(data: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every identity policy: AWS::IAM::Policy, ManagedPolicy and roles' inline Policies."""
    for logical_id, resource in data["Resources"].items():
        props = resource.get("Properties", {})
        documents = []
        if resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            documents += [p["PolicyDocument"] for p in props.get("Policies", [])]
        for document in documents:
            for statement in as_list(document["Statement"]):
                yield logical_id, statement


def inline_statements(data: dict[str, Any], role_id: str) -> list[dict[str, Any]]:
    role = data["Resources"][role_id]["Properties"]
    return [s for p in role.get("Policies", []) for s in as_list(p["PolicyDocument"]["Statement"])]


def statements_with_action(statements: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [s for s in statements if action in as_list(s["Action"])]


def resources_for(statements: list[dict[str, Any]], action: str) -> list[Any]:
    """All resources an Allow statement grants `action` on (flattened)."""
    return [r for s in statements_with_action(statements, action) if s["Effect"] == "Allow"
            for r in as_list(s["Resource"])]


def arn_of(logical_id: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id, "Arn"]}


def ref(logical_id: str) -> dict[str, Any]:
    return {"Ref": logical_id}
