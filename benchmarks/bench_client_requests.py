"""Client CPU per batch request: the bridge's SNS and SQS clients against stock botocore clients.

Each request is ten 1 KiB messages with the bridge's three attributes (correlation-id, record-id, one
header), answered in-process by a canned success (no network, no endpoint), so the figure is the
client's own work: serialising, encoding, signing, parsing the answer. Rounds interleave the clients;
medians of the rounds. `.venv/bin/python benchmarks/bench_client_requests.py [--rounds 7]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lambdas"))
for _k, _v in {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
               "AWS_EC2_METADATA_DISABLED": "true"}.items():
    os.environ.setdefault(_k, _v)

import botocore.session  # noqa: E402
from botocore.awsrequest import AWSResponse  # noqa: E402
from botocore.config import Config  # noqa: E402
from bridge.adapters import clients  # noqa: E402
from bridge.settings import Settings  # noqa: E402
from endpoint import RawBody  # noqa: E402  (benchmarks/, the script's own folder)

TOPIC = "arn:aws:sns:us-east-1:123456789012:bench-out"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/bench-out"
ANSWERS = {
    "sns": (b'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult><Successful>'
            + b"".join(b"<member><Id>%d</Id><MessageId>m-%d</MessageId></member>" % (i, i) for i in range(10))
            + b"</Successful><Failed/></PublishBatchResult></PublishBatchResponse>", "text/xml"),
    "sqs": (json.dumps({"Successful": [{"Id": str(i), "MessageId": f"m-{i}", "MD5OfMessageBody": "0" * 32}
                                       for i in range(10)], "Failed": []}).encode(), "application/x-amz-json-1.0"),
}



def _answered(client: Any, service: str) -> Any:
    body, content_type = ANSWERS[service]
    client.meta.events.register(f"before-send.{service}", lambda request, **_: AWSResponse(
        request.url, 200, {"Content-Type": content_type}, RawBody(body)))
    return client


def entries(body_field: str) -> list[dict[str, Any]]:
    pad = "x" * 964
    return [{"Id": str(i), body_field: json.dumps({"order": i, "customer": f"customer-{i}", "pad": pad}),
             "MessageAttributes": {
                 "correlation-id": {"DataType": "String", "StringValue": f"cid-{i:08d}"},
                 "record-id": {"DataType": "String", "StringValue": f"orders-0-{i}"},
                 "tenant": {"DataType": "String", "StringValue": "acme"}}} for i in range(10)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="requests per client per round")
    args = parser.parse_args()
    settings = Settings(ROOT / "config" / "dev.yaml", "123456789012", "us-east-1", "bench",
                        endpoint_url="http://127.0.0.1:9")
    stock_config = Config(retries={"mode": "standard", "total_max_attempts": 1}, parameter_validation=False)
    session = botocore.session.get_session()
    sns_entries, sqs_entries = entries("Message"), entries("MessageBody")
    calls = {
        "sns": (lambda c: c.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=sns_entries)),
        "sqs": (lambda c: c.send_message_batch(QueueUrl=QUEUE, Entries=sqs_entries)),
    }

    def stock(service: str) -> Any:
        return _answered(session.create_client(service, region_name="us-east-1", endpoint_url="http://127.0.0.1:9",
                                               config=stock_config), service)

    variants = {
        ("sns", "stock"): stock("sns"),
        ("sns", "bridge"): _answered(clients.sns_client(settings), "sns"),
        ("sqs", "stock"): stock("sqs"),
        ("sqs", "bridge"): _answered(clients.sqs_client(settings), "sqs"),
    }
    for (service, _), client in variants.items():
        for _ in range(30):
            calls[service](client)
    cpu: dict[tuple[str, str], list[float]] = {}
    for rnd in range(args.rounds):
        order = list(variants.items())
        order = order[rnd % len(order):] + order[:rnd % len(order)]
        for key, client in order:
            t = time.process_time()
            for _ in range(args.requests):
                calls[key[0]](client)
            cpu.setdefault(key, []).append((time.process_time() - t) / args.requests * 1e6)
    print(f"client CPU per request of 10 messages with 3 attributes, median of {args.rounds} rounds "
          f"[min-max], load average {os.getloadavg()[0]:.1f}")
    print("| service | stock botocore | bridge | bridge / stock |")
    print("|---|---|---|---|")
    for service in ("sns", "sqs"):
        s, b = cpu[(service, "stock")], cpu[(service, "bridge")]
        ratios = [x / y for x, y in zip(b, s, strict=True)]
        print(f"| {service} | {statistics.median(s):,.0f} [{min(s):,.0f}-{max(s):,.0f}] µs "
              f"| {statistics.median(b):,.0f} [{min(b):,.0f}-{max(b):,.0f}] µs | {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    main()
