"""cdk-nag 3.x wiring: AwsSolutions checks on the app, and scoped acknowledgments with reasons."""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

RULE_PACK = "AwsSolutions"


def add_nag_checks(app: cdk.App) -> None:
    """Run AwsSolutions checks at synth; a finding that is not acknowledged fails the synth.

    Acknowledgments are also written into each resource's template Metadata (`cdk_nag`), so a
    reviewer sees every exemption and its reason next to the resource it applies to.
    """
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, write_suppressions_to_cloud_formation=True))


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge one AwsSolutions finding (e.g. `AwsSolutions-SQS3` or `AwsSolutions-IAM5[Resource::*]`)
    on one resource. The reason is what a reviewer reads; it may not be empty."""
    if not reason.strip():
        raise ValueError(f"acknowledging {rule} on {scope.node.path} needs a reason")
    cdk.Validations.of(scope).acknowledge(cdk.Acknowledgment(id=f"{RULE_PACK}::{rule}", reason=reason))


def acknowledge_checkov(scope: IConstruct, check: str, reason: str) -> None:
    """Acknowledge one checkov finding (e.g. `CKV_AWS_116`) on the CloudFormation resource behind `scope`,
    in its template Metadata, where checkov reads skips and a reviewer reads the reason."""
    if not reason.strip():
        raise ValueError(f"acknowledging {check} on {scope.node.path} needs a reason")
    resource = scope if isinstance(scope, cdk.CfnResource) else scope.node.default_child
    if not isinstance(resource, cdk.CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to acknowledge {check} on")
    current = resource.get_metadata("checkov") or {"skip": []}
    current["skip"].append({"id": check, "comment": reason})
    resource.add_metadata("checkov", current)
