"""The claim-check bucket: a consumer trusts the object a pointer names as if it were the message."""

from __future__ import annotations

import pytest

from tests.infra.conftest import Synth
from tests.security.policy import ADMIN_LIKE, PolicyWorld, insider


def _bucket_arn(w: PolicyWorld, synth: Synth) -> str:
    (bucket,) = [k for k, r in synth.resources("AWS::S3::Bucket").items()
                 if r["Properties"].get("LifecycleConfiguration", {}).get("Rules", [{}])[0].get("Id")
                 == "expire-claim-checks"]
    return w.arn(bucket)


@pytest.mark.attack("insider with s3:* on * overwrites a claim-check object after the bridge verified the record",
                    outcome="denied by policy", how="bucket policy evaluated: explicit deny")
def test_only_the_bridge_writes_claim_checks(provisioned: Synth) -> None:
    w = PolicyWorld(provisioned.data)
    obj = _bucket_arn(w, provisioned) + "/claim-check/order-stream/orders/0/7-0123456789abcdef"
    bridge = w.role_arn(w.role_id_by_description("Kafka bridge orders-bridge"))
    # the control case: the bridge role may put the object
    assert w.decide(bridge, "s3:PutObject", obj)
    for action in ("s3:PutObject", "s3:DeleteObject"):
        decision = w.decide(insider(), action, obj, identity=ADMIN_LIKE)
        assert decision.why.startswith("explicit deny"), f"{action}: {decision.why}"
    # and the bridge role itself may not delete (nor read) what it stored
    assert not w.decide(bridge, "s3:DeleteObject", obj)
    assert not w.decide(bridge, "s3:GetObject", obj)
