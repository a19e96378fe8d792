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
