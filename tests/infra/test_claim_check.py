"""The claim-check bucket: its own, encrypted, TLS only, expiring; the bridge may only put under claim-check/."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synth
from tests.infra.helpers import inline_statements, resources_for

pytestmark = pytest.mark.infra


def _claim_check_bucket(synth: Synth) -> str:
    (bucket,) = [k for k, r in synth.resources("AWS::S3::Bucket").items()
                 if "LifecycleConfiguration" in r["Properties"]
                 and r["Properties"]["LifecycleConfiguration"]["Rules"][0].get("Id") == "expire-claim-checks"]
    return bucket


def test_claim_check_bucket_is_encrypted_tls_only_and_expires_its_objects(provisioned: Synth) -> None:
    bucket = _claim_check_bucket(provisioned)
    props = provisioned.data["Resources"][bucket]["Properties"]
    assert props["BucketEncryption"] == {"ServerSideEncryptionConfiguration": [
        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]}
    assert props["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                       "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    days = provisioned.config.settings.claim_check_retention_days
    assert (rule["Prefix"], rule["ExpirationInDays"], rule["Status"]) == ("claim-check/", days, "Enabled")
    assert days > 14  # outlives the longest an SQS message (or its DLQ copy) can point to it
    (policy,) = [p["Properties"]["PolicyDocument"]["Statement"] for p in
                 provisioned.resources("AWS::S3::BucketPolicy").values()
                 if p["Properties"]["Bucket"] == {"Ref": bucket}]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
               for s in policy)
    print(f"\nclaim-check bucket: SSE {props['BucketEncryption']['ServerSideEncryptionConfiguration'][0]}"
          f", objects under {rule['Prefix']} expire after {rule['ExpirationInDays']} days")


def test_bridge_may_only_put_claim_checks_under_the_prefix(provisioned: Synth) -> None:
    bucket = _claim_check_bucket(provisioned)
    role = provisioned.logical_id("AWS::IAM::Role", Description="Kafka bridge orders-bridge")
    statements = inline_statements(provisioned.data, role)
    on_bucket = [s for s in statements if bucket in str(s["Resource"])]
    assert [(s["Action"], s["Resource"]) for s in on_bucket] == [
        ("s3:PutObject", {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/claim-check/*"]]})]
    assert {"Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/claim-check/*"]]} in resources_for(
        statements, "s3:PutObject")
    provisioned.template.has_resource_properties("AWS::Lambda::Function", {"Environment": {"Variables": {
        "BRIDGE_CLAIM_CHECK_BUCKET": {"Ref": bucket}}}})


def test_no_claim_check_destination_means_no_bucket(dev: Synth) -> None:
    assert not any("LifecycleConfiguration" in r["Properties"] and r["Properties"]["LifecycleConfiguration"]["Rules"]
                   [0].get("Id") == "expire-claim-checks" for r in dev.resources("AWS::S3::Bucket").values())
    (function,) = [f for f in dev.resources("AWS::Lambda::Function").values()
                   if f["Properties"]["Handler"] == "bridge.handler.lambda_handler"]  # not the key rotation
    assert "BRIDGE_CLAIM_CHECK_BUCKET" not in function["Properties"]["Environment"]["Variables"]
