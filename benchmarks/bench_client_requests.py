"""Client CPU per batch request: the bridge's SNS and SQS clients against stock botocore clients.

Each request is ten 1 KiB messages with the bridge's three attributes (correlation-id, record-id, one
header). Two tables, rounds interleaving the clients, medians of the rounds:

- in process: answered by a canned success from a `before-send` handler (no network), so the figure
  is botocore's own work with the bridge's serialisers (a hooked client never sends directly);
- over loopback HTTP to benchmarks/endpoint.py (its own process, so its CPU is not counted): stock
  botocore, the bridge's client through botocore (`client.send_message_batch`: the path before
  bridge.adapters.direct) and the bridge's direct sends (`direct.batch_call`: what its senders use).

`.venv/bin/python benchmarks/bench_client_requests.py [--rounds 7] [--only wire]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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
from bridge.adapters import clients, direct  # noqa: E402
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


def _table(title: str, cpu: dict[tuple[str, str], list[float]], variants: list[str], rounds: int) -> None:
    print(f"{title}, median of {rounds} rounds [min-max], load average {os.getloadavg()[0]:.1f}")
    ratios = [f"{v} / {variants[0]}" for v in variants[1:]]
    print("| service | " + " | ".join(variants) + " | " + " | ".join(ratios) + " |")
    print("|---" * (2 * len(variants)) + "|")
    for service in ("sns", "sqs"):
        cells = []
        for v in variants:
            xs = cpu[(service, v)]
            cells.append(f"{statistics.median(xs):,.0f} [{min(xs):,.0f}-{max(xs):,.0f}] µs")
        base = cpu[(service, variants[0])]
        for v in variants[1:]:
            ratios = [x / y for x, y in zip(cpu[(service, v)], base, strict=True)]
            cells.append(f"{statistics.median(ratios):.2f}")
        print(f"| {service} | " + " | ".join(cells) + " |")
    print()


def _measure(calls: dict[tuple[str, str], Any], rounds: int, requests: int) -> dict[tuple[str, str], list[float]]:
    for call in calls.values():
        for _ in range(30):
            call()
    cpu: dict[tuple[str, str], list[float]] = {}
    for rnd in range(rounds):
        order = list(calls.items())
        order = order[rnd % len(order):] + order[:rnd % len(order)]
        for key, call in order:
            t = time.process_time()
            for _ in range(requests):
                call()
            cpu.setdefault(key, []).append((time.process_time() - t) / requests * 1e6)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=300, help="requests per client per round")
    parser.add_argument("--only", choices=("in-process", "wire"), help="one table only")
    args = parser.parse_args()
    stock_config = Config(retries={"mode": "standard", "total_max_attempts": 1}, parameter_validation=False)
    sns_entries, sqs_entries = entries("Message"), entries("MessageBody")

    if args.only != "wire":
        settings = Settings(ROOT / "config" / "dev.yaml", "123456789012", "us-east-1", "bench",
                            endpoint_url="http://127.0.0.1:9")
        session = botocore.session.get_session()

        def stock(service: str) -> Any:
            return _answered(session.create_client(service, region_name="us-east-1",
                                                   endpoint_url="http://127.0.0.1:9", config=stock_config), service)

        sns_stock, sns_bridge = stock("sns"), _answered(clients.sns_client(settings), "sns")
        sqs_stock, sqs_bridge = stock("sqs"), _answered(clients.sqs_client(settings), "sqs")
        calls = {
            ("sns", "stock botocore"): lambda: sns_stock.publish_batch(TopicArn=TOPIC,
                                                                       PublishBatchRequestEntries=sns_entries),
            ("sns", "bridge"): lambda: sns_bridge.publish_batch(TopicArn=TOPIC, PublishBatchRequestEntries=sns_entries),
            ("sqs", "stock botocore"): lambda: sqs_stock.send_message_batch(QueueUrl=QUEUE, Entries=sqs_entries),
            ("sqs", "bridge"): lambda: sqs_bridge.send_message_batch(QueueUrl=QUEUE, Entries=sqs_entries),
        }
        _table("client CPU per request of 10 messages with 3 attributes, answered in process",
               _measure(calls, args.rounds, args.requests), ["stock botocore", "bridge"], args.rounds)

    if args.only != "in-process":
        server = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "endpoint.py")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            url = f"http://127.0.0.1:{int(server.stdout.readline())}"
            clients._session = None
            settings = Settings(ROOT / "config" / "dev.yaml", "123456789012", "us-east-1", "bench", endpoint_url=url)
            session = botocore.session.get_session()
            sns_stock, sqs_stock = (session.create_client(s, region_name="us-east-1", endpoint_url=url,
                                                          config=stock_config) for s in ("sns", "sqs"))
            sns_bridge, sqs_bridge = clients.sns_client(settings), clients.sqs_client(settings)
            sns_direct, sqs_direct = direct.batch_call(sns_bridge, "PublishBatch"), direct.batch_call(
                sqs_bridge, "SendMessageBatch")
            queue = f"{url}/123456789012/bench-out"
            calls = {
                ("sns", "stock botocore"): lambda: sns_stock.publish_batch(TopicArn=TOPIC,
                                                                           PublishBatchRequestEntries=sns_entries),
                ("sns", "bridge via botocore"): lambda: sns_bridge.publish_batch(
                    TopicArn=TOPIC, PublishBatchRequestEntries=sns_entries),
                ("sns", "bridge direct"): lambda: sns_direct(TopicArn=TOPIC, PublishBatchRequestEntries=sns_entries),
                ("sqs", "stock botocore"): lambda: sqs_stock.send_message_batch(QueueUrl=queue, Entries=sqs_entries),
                ("sqs", "bridge via botocore"): lambda: sqs_bridge.send_message_batch(QueueUrl=queue,
                                                                                      Entries=sqs_entries),
                ("sqs", "bridge direct"): lambda: sqs_direct(QueueUrl=queue, Entries=sqs_entries),
            }
            cpu = _measure(calls, args.rounds, args.requests)
            for name, sent in (("SNS", sns_direct), ("SQS", sqs_direct)):
                if not (isinstance(sent, direct.DirectBatchCall) and sent.direct):
                    raise SystemExit(f"{name} batches went through botocore, not directly: nothing to compare")
            _table("client CPU per request of 10 messages with 3 attributes, over loopback HTTP", cpu,
                   ["stock botocore", "bridge via botocore", "bridge direct"], args.rounds)
        finally:
            assert server.stdin is not None
            server.stdin.close()
            server.wait(10)


if __name__ == "__main__":
    main()
