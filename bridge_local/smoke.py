"""`bridge smoke --stack NAME`: the post-deploy check the pipeline runs (and a person can).

1. Read the stack's outputs (CloudFormation DescribeStacks): the `live` alias, the audit monitoring
   queue and the DLQs (`BridgeDlqUrl`, every output ending in `DlqUrl`).
2. Note each DLQ's depth (visible + in flight).
3. Invoke the alias, synchronously, with the smoke event: a Kafka event with **no records** whose
   `eventSourceArn` names this run. It routes nowhere and parks nothing, so it is safe against
   production; it still runs the deployed code end to end through its cold start (config
   validation, imports), the handler and the audit publish (SNS, its KMS key and policy, the
   subscription into the monitoring queue).
4. Wait for the batch's audit event (its batch id, and this run's `eventSourceArn`) on the
   monitoring queue; delete it (it is the smoke's own); every other message received while looking
   is made visible again at once and is received at most once per run.
5. Check the DLQs did not grow.

Any failure is one line saying what is wrong, and a non-zero exit. The ports (`StackOutputs`,
`Invoke`, `QueueProbe`) are injected; `aws_ports` builds them over boto3.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

ALIAS_OUTPUT = "FunctionAliasArn"
AUDIT_QUEUE_OUTPUT = "AuditQueueUrl"
DLQ_OUTPUT_SUFFIX = "DlqUrl"
AUDIT_EVENT_TYPE = "bridge.batch"
RECEIVE_WAIT_SECONDS = 5  # long poll per receive (SQS allows up to 20)
HOLD_SECONDS = 300  # others' messages stay hidden while this run looks, then are released at once

Invoke = Callable[[str, dict[str, Any]], Mapping[str, Any]]
"""Invoke the function (name or alias ARN) with an event; return its result; raise SmokeFailure on an error."""


class SmokeFailure(RuntimeError):
    """The deployed stack failed the check; the message is the one line to print."""


class StackOutputs(Protocol):
    def outputs(self, stack: str) -> dict[str, str]:
        """The stack's outputs (key -> value); raise SmokeFailure when the stack does not exist."""
        ...


class QueueProbe(Protocol):
    def depth(self, url: str) -> int:
        """Visible plus in-flight messages."""
        ...

    def receive(self, url: str, hold_seconds: int, wait_seconds: int) -> list[Mapping[str, Any]]:
        """Up to 10 messages (Body, ReceiptHandle, MessageAttributes), hidden for `hold_seconds`."""
        ...

    def delete(self, url: str, receipt_handle: str) -> None: ...

    def release(self, url: str, receipt_handles: Sequence[str]) -> None:
        """Make these messages visible again now."""
        ...


@dataclass
class SmokeReport:
    stack: str
    function: str
    batch_id: str = ""
    audit_seconds: float = 0.0
    dlq_depths: dict[str, tuple[int, int]] = field(default_factory=dict)  # output -> (before, after)


def smoke_event(run_id: str, region: str = "us-east-1", account: str = "000000000000") -> dict[str, Any]:
    """A Kafka event with no records: it routes nowhere and parks nothing. Its source ARN names the run."""
    return {"eventSource": "aws:kafka",
            "eventSourceArn": f"arn:aws:kafka:{region}:{account}:cluster/bridge-smoke/{run_id}",
            "bootstrapServers": "bridge-smoke.invalid:9098", "records": {}}


def _output(outputs: Mapping[str, str], key: str, stack: str) -> str:
    value = outputs.get(key)
    if not value:
        raise SmokeFailure(f"stack {stack} has no output {key}. Fix: deploy the current version of the bridge "
                           "stack (it publishes the outputs bridge smoke reads)")
    return value


def run_smoke(stack: str, outputs_port: StackOutputs, invoke: Invoke, queues: QueueProbe, *,
              timeout_seconds: float = 60.0, wait_seconds: int = RECEIVE_WAIT_SECONDS,
              clock: Callable[[], float] = time.monotonic, run_id: str | None = None) -> SmokeReport:
    """The check; returns a report or raises SmokeFailure with the one line to print."""
    outputs = outputs_port.outputs(stack)
    function = _output(outputs, ALIAS_OUTPUT, stack)
    arn = function.split(":")
    region, account = (arn[3], arn[4]) if len(arn) > 4 and function.startswith("arn:") else ("us-east-1", "0" * 12)
    audit_url = _output(outputs, AUDIT_QUEUE_OUTPUT, stack)
    dlqs = {k: v for k, v in sorted(outputs.items()) if k.endswith(DLQ_OUTPUT_SUFFIX)}
    if not dlqs:
        raise SmokeFailure(f"stack {stack} has no DLQ output (*{DLQ_OUTPUT_SUFFIX}). Fix: deploy the current "
                           "version of the bridge stack")
    report = SmokeReport(stack, function)
    before = {k: queues.depth(url) for k, url in dlqs.items()}

    event = smoke_event(run_id or uuid.uuid4().hex, region, account)
    started = clock()
    result = invoke(function, event)
    summary = result.get("summary") if isinstance(result, Mapping) else None
    if not isinstance(summary, Mapping) or not summary.get("batch_id"):
        raise SmokeFailure(f"{function} returned no batch summary for the smoke event: {str(result)[:200]}")
    if summary.get("records") != 0 or summary.get("delivered") or summary.get("parked"):
        raise SmokeFailure(f"{function} did something with the smoke event, which has no records: {dict(summary)}")
    report.batch_id = str(summary["batch_id"])

    report.audit_seconds = _await_audit_event(queues, audit_url, report.batch_id, event["eventSourceArn"],
                                              started, timeout_seconds, wait_seconds, clock)
    for key, url in dlqs.items():
        after = queues.depth(url)
        report.dlq_depths[key] = (before[key], after)
        if after > before[key]:
            raise SmokeFailure(f"{key} grew from {before[key]} to {after} message(s) during the smoke check: "
                               f"something was parked or failed. Fix: look at the queue ({url}) and the "
                               "function's logs before promoting this deploy")
    return report


def _await_audit_event(queues: QueueProbe, url: str, batch_id: str, source_arn: str, started: float,
                       timeout_seconds: float, wait_seconds: int, clock: Callable[[], float]) -> float:
    held: list[str] = []
    try:
        while clock() - started < timeout_seconds:
            for m in queues.receive(url, HOLD_SECONDS, wait_seconds):
                if _is_ours(m, batch_id, source_arn):
                    queues.delete(url, str(m["ReceiptHandle"]))
                    return clock() - started
                held.append(str(m["ReceiptHandle"]))
        raise SmokeFailure(f"no audit event for the smoke batch {batch_id} reached the monitoring queue within "
                           f"{timeout_seconds:.0f} s. Fix: check the audit topic's policy and key, its subscription "
                           "to the monitoring queue, and the function's logs")
    finally:
        if held:
            queues.release(url, held)


def _is_ours(message: Mapping[str, Any], batch_id: str, source_arn: str) -> bool:
    try:
        body = json.loads(str(message.get("Body", "")))
    except ValueError:
        return False
    return (isinstance(body, dict) and body.get("type") == AUDIT_EVENT_TYPE and body.get("batch_id") == batch_id
            and body.get("event_source_arn") == source_arn)


# --- adapters over boto3 ------------------------------------------------------------------------


class CloudFormationOutputs:
    def __init__(self, client: Any) -> None:
        self._cfn = client

    def outputs(self, stack: str) -> dict[str, str]:
        from botocore.exceptions import ClientError  # noqa: PLC0415 - adapters only

        try:
            stacks = self._cfn.describe_stacks(StackName=stack)["Stacks"]
        except ClientError as exc:
            if "does not exist" in str(exc.response.get("Error", {}).get("Message", "")):
                region = self._cfn.meta.region_name
                raise SmokeFailure(f"stack {stack} does not exist in {region}. Fix: --stack "
                                   f"KafkaBridge-<name>-<environment> and the region it was deployed to") from None
            raise
        return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


class SqsProbe:
    def __init__(self, client: Any) -> None:
        self._sqs = client

    def depth(self, url: str) -> int:
        attrs = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0))

    def receive(self, url: str, hold_seconds: int, wait_seconds: int) -> list[Mapping[str, Any]]:
        resp = self._sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=hold_seconds,
                                         WaitTimeSeconds=wait_seconds)
        messages: list[Mapping[str, Any]] = resp.get("Messages", [])
        return messages

    def delete(self, url: str, receipt_handle: str) -> None:
        self._sqs.delete_message(QueueUrl=url, ReceiptHandle=receipt_handle)

    def release(self, url: str, receipt_handles: Sequence[str]) -> None:
        for i in range(0, len(receipt_handles), 10):
            self._sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                {"Id": str(n), "ReceiptHandle": h, "VisibilityTimeout": 0}
                for n, h in enumerate(receipt_handles[i:i + 10])])


def lambda_invoke(client: Any) -> Invoke:
    """Synchronous invoke; a FunctionError is a SmokeFailure with the function's error type and message."""

    def invoke(function: str, event: dict[str, Any]) -> Mapping[str, Any]:
        resp = client.invoke(FunctionName=function, InvocationType="RequestResponse",
                             Payload=json.dumps(event).encode("utf-8"))
        payload = resp["Payload"].read()
        try:
            doc = json.loads(payload)
        except ValueError:
            doc = payload[:200].decode("utf-8", "replace")
        if resp.get("FunctionError"):
            detail = (f"{doc.get('errorType', 'Error')}: {str(doc.get('errorMessage', ''))[:200]}"
                      if isinstance(doc, dict) else str(doc)[:200])
            raise SmokeFailure(f"{function} failed on the smoke event ({detail}). Fix: read the function's logs; "
                               "CodeDeploy rolls the alias back on errors")
        return doc if isinstance(doc, Mapping) else {"result": doc}

    return invoke
