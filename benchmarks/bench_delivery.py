"""Side-by-side benchmark: the bridge's packed delivery against the two usual ways of doing it.

All three run in one process on the same records, through a real boto3 SQS client whose HTTP
send is answered in-process by a hook that behaves like SQS on what matters here (10 entries,
1 MiB per request, `BatchRequestTooLong` past it). No network, so the figures are the client-side
cost and the request count, which is what SQS bills (every 64 KiB chunk of a request counts as one
request).

  per-record   - a typical hand-written handler: one SendMessage per record
  batch-of-10  - batching by count only (EventBridge Pipes' SQS target, Redpanda Connect's aws_sqs)
  bridge       - bridge.service.Bridge: routes, builds attributes and ids, packs by 10 AND bytes

Run: `make bench` (or `.venv/bin/python benchmarks/bench_delivery.py`).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from bridge.adapters.sqs import SqsBatchSender
from bridge.config import MAX_BATCH_ENTRIES, SQS_MAX_MESSAGE_BYTES, BridgeConfig
from bridge.delivery import BatchOutcome, Target
from bridge.envelope import OutgoingMessage
from bridge.service import Bridge
from bridge.settings import Settings
from endpoint import RawBody  # benchmarks/, the script's own folder

ACCOUNT, REGION = "123456789012", "us-east-1"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/bench-bridge-out"
CHUNK = 65_536  # SQS bills each 64 KiB of a request as one request
PRICE_PER_MILLION_REQUESTS = 0.40  # standard queue, us-east-1



@dataclass
class FakeSqsEndpoint:
    """Answers SendMessage/SendMessageBatch like SQS does for sizes; counts requests and billed chunks."""

    requests: int = 0
    billed: int = 0
    rejected_requests: int = 0
    delivered: int = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse:
        body = json.loads(request.body)
        self.requests += 1
        entries = body.get("Entries") or [body]
        size = sum(_size(e) for e in entries)
        self.billed += max(1, -(-size // CHUNK))
        if size > SQS_MAX_MESSAGE_BYTES:
            self.rejected_requests += 1
            err = {"__type": "com.amazonaws.sqs#BatchRequestTooLong", "message": "Batch requests cannot be longer "
                   f"than {SQS_MAX_MESSAGE_BYTES} bytes"}
            return AWSResponse(request.url, 400, {"x-amzn-query-error": "AWS.SimpleQueueService.BatchRequestTooLong;"
                                                  "Sender"}, RawBody(json.dumps(err).encode()))
        self.delivered += len(entries)
        if "Entries" in body:
            out: dict[str, Any] = {"Successful": [{"Id": e["Id"], "MessageId": e["Id"], "MD5OfMessageBody": "-"}
                                                  for e in entries], "Failed": []}
        else:
            out = {"MessageId": "m", "MD5OfMessageBody": "-"}
        return AWSResponse(request.url, 200, {}, RawBody(json.dumps(out).encode()))


def _size(entry: dict[str, Any]) -> int:
    attrs = entry.get("MessageAttributes", {})
    return len(entry["MessageBody"].encode()) + sum(
        len(k) + len(v["DataType"]) + len(v.get("StringValue", "").encode()) for k, v in attrs.items())


class CountingAudit:
    """The audit topic: one PublishBatch per Kafka batch, the same for every variant that audits."""

    def __init__(self) -> None:
        self.calls = 0

    def send_batch(self, target: Target, messages: Sequence[OutgoingMessage]) -> BatchOutcome:
        self.calls += 1
        return BatchOutcome()


def sqs_client(endpoint: FakeSqsEndpoint) -> Any:
    client = boto3.client("sqs", region_name=REGION, aws_access_key_id="bench", aws_secret_access_key="bench",  # noqa: S106
                          config=Config(retries={"max_attempts": 1}))
    client.meta.events.register("before-send.sqs.*", endpoint)
    return client


def kafka_event(count: int, value_bytes: int) -> dict[str, Any]:
    filler = "x" * max(0, value_bytes - 40)
    records = []
    for i in range(count):
        value = json.dumps({"order": i, "pad": filler}).encode()
        records.append({"topic": "orders", "partition": i % 3, "offset": i, "timestamp": 1767225600000,
                        "timestampType": "CREATE_TIME", "key": base64.b64encode(f"order-{i}".encode()).decode(),
                        "value": base64.b64encode(value).decode(),
                        "headers": [{"correlation-id": list(f"cid-{i}".encode())}]})
    grouped: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        grouped.setdefault(f"{r['topic']}-{r['partition']}", []).append(r)
    return {"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/u-1",
            "bootstrapServers": "b-1:9098", "records": grouped}


def _records(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for rs in event["records"].values() for r in rs]


def _attributes(r: dict[str, Any]) -> dict[str, Any]:
    cid = bytes(b & 0xFF for b in r["headers"][0]["correlation-id"]).decode()
    return {"correlation-id": {"DataType": "String", "StringValue": cid}}


def per_record(event: dict[str, Any], client: Any) -> int:
    """What most hand-written handlers do: decode, SendMessage, next."""
    for r in _records(event):
        client.send_message(QueueUrl=QUEUE_URL, MessageBody=base64.b64decode(r["value"]).decode(),
                            MessageAttributes=_attributes(r))
    return 0


def batch_of_ten(event: dict[str, Any], client: Any) -> int:
    """Chunks of 10 by count only; a chunk over 1 MiB fails whole (the BatchRequestTooLong bug)."""
    records, lost = _records(event), 0
    for i in range(0, len(records), MAX_BATCH_ENTRIES):
        chunk = records[i:i + MAX_BATCH_ENTRIES]
        entries = [{"Id": str(j), "MessageBody": base64.b64decode(r["value"]).decode(),
                    "MessageAttributes": _attributes(r)} for j, r in enumerate(chunk)]
        try:
            client.send_message_batch(QueueUrl=QUEUE_URL, Entries=entries)
        except client.exceptions.ClientError:
            lost += len(chunk)
    return lost


def bridge_variant(config: BridgeConfig, settings: Settings) -> Callable[[dict[str, Any], Any], int]:
    def run(event: dict[str, Any], client: Any) -> int:
        bridge = Bridge(config, settings, sqs=SqsBatchSender(client), sns=CountingAudit(), parking_store=None,
                        signing_keys=None)
        summary = bridge.handle(event).summary
        return sum(summary["parked"].values())
    return run


def measure(name: str, run: Callable[[dict[str, Any], Any], int], event: dict[str, Any],
            repeat: int) -> dict[str, Any]:
    best, endpoint, lost = float("inf"), FakeSqsEndpoint(), 0
    for _ in range(repeat):
        endpoint = FakeSqsEndpoint()
        client = sqs_client(endpoint)
        t0 = time.process_time()
        lost = run(event, client)
        best = min(best, time.process_time() - t0)
    n = len(_records(event))
    return {"variant": name, "records": n, "requests": endpoint.requests, "rejected": endpoint.rejected_requests,
            "delivered": endpoint.delivered, "not_delivered": n - endpoint.delivered, "lost_silently": lost if
            name == "batch-of-10" else 0, "cpu_us_per_record": round(best / n * 1e6, 1),
            "usd_per_million_records": round(endpoint.billed / n * PRICE_PER_MILLION_REQUESTS, 2)}


def main() -> None:
    root = Path(__file__).resolve().parents[1]
    config = BridgeConfig.from_dict({
        "name": "bench-bridge",
        "source": {"kind": "msk", "cluster_arn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/u-1",
                   "topics": ["orders"], "consumer_group_id": "bench"},
        "destinations": [{"name": "out", "type": "sqs"}],
        "routes": [{"name": "all", "match": {"topic": "orders"}, "to": ["out"]}],
    })
    settings = Settings(config_path=root / "config" / "dev.yaml", account_id=ACCOUNT, region=REGION,
                        parking_bucket="bench-parking")
    workloads = [("1,000 x 1 KiB", kafka_event(1000, 1024), 5), ("200 x 200 KiB", kafka_event(200, 200 * 1024), 3)]
    variants: list[tuple[str, Callable[[dict[str, Any], Any], int]]] = [
        ("per-record", per_record), ("batch-of-10", batch_of_ten), ("bridge", bridge_variant(config, settings))]
    cols = ("variant", "requests", "rejected", "delivered", "cpu_us_per_record", "usd_per_million_records")
    for title, event, repeat in workloads:
        print(f"\n{title} (best of {repeat}, client-side CPU, no network)")
        print("  ".join(f"{c:>24}" for c in cols))
        for name, run in variants:
            row = measure(name, run, event, repeat)
            print("  ".join(f"{row[c]!s:>24}" for c in cols))


if __name__ == "__main__":
    main()
