"""Fresh-process measurements for benchmarks/suite.py; prints one JSON line.

  child.py cold bridge|reference|naive   cold start by phase (seconds), Lambda-like environment
  child.py cold imports                  what each import (and object) adds, in order: boto3, Logger,
                                         Metrics, Tracer
  child.py memory parse|naive|bridge EVENT.json
                                         peak Python allocations above the baseline while handling
                                         the event (parsing included: the runtime parses it in-process)

The environment comes from suite.py (`_lambda_env`): endpoint, config path, function name.
"""

from __future__ import annotations

import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

ONE_RECORD = {"eventSource": "aws:kafka", "eventSourceArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/u-1",
              "records": {"orders-0": [{"topic": "orders", "partition": 0, "offset": 0, "timestamp": 1767225600000,
                                        "timestampType": "CREATE_TIME", "key": "a2V5",
                                        "value": "eyJvcmRlciI6IDF9", "headers": [{"tenant": [97]}]}]}}
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/bench-out"


def cold(variant: str) -> dict[str, float]:
    out: dict[str, float] = {}
    t = T0
    if variant == "imports":
        # each step imports and creates the object as bridge.handler does at import
        for name, stmt in (("boto3", "import boto3"),
                           ("logger", "from aws_lambda_powertools import Logger; Logger(service='b')"),
                           ("metrics", "from aws_lambda_powertools import Metrics; "
                                       "Metrics(namespace='B', service='b')"),
                           ("tracer", "from aws_lambda_powertools import Tracer; Tracer(service='b', "
                                      "patch_modules=('botocore',))")):
            exec(stmt)  # noqa: S102 - fixed statements
            now = time.perf_counter()
            out[f"import_{name}"], t = now - t, now
        out["xray_sdk_loaded"] = float("aws_xray_sdk" in sys.modules)
        return out
    if variant == "bridge":
        import bridge.handler as h  # noqa: PLC0415

        t1 = time.perf_counter()
        h.get_bridge()
        t2 = time.perf_counter()
        h.lambda_handler(ONE_RECORD, None)
    else:
        import base64  # noqa: PLC0415

        import boto3  # noqa: PLC0415

        t1 = time.perf_counter()
        client = boto3.client("sqs", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
        t2 = time.perf_counter()
        if variant == "naive":
            for r in ONE_RECORD["records"]["orders-0"]:  # type: ignore[index]
                client.send_message(QueueUrl=QUEUE, MessageBody=base64.b64decode(r["value"]).decode())
        else:
            client.send_message_batch(QueueUrl=QUEUE, Entries=[{"Id": "0", "MessageBody": "{\"order\": 1}"}])
    t3 = time.perf_counter()
    return {"import": t1 - T0, "build": t2 - t1, "first_invoke": t3 - t2, "total": t3 - T0}


def memory(variant: str, path: str) -> dict[str, float]:
    import gc  # noqa: PLC0415
    import tracemalloc  # noqa: PLC0415

    raw = open(path, "rb").read()  # noqa: SIM115
    run: Any = None
    if variant != "parse":
        import boto3  # noqa: PLC0415
        from botocore.awsrequest import AWSResponse  # noqa: PLC0415
        from endpoint import RawBody, respond  # noqa: PLC0415

        def answer(request: Any, **_: Any) -> AWSResponse:
            body = request.body if isinstance(request.body, bytes) else request.body.encode()
            _, _, out, ctype = respond(request.headers.get("X-Amz-Target", b"").decode()
                                       if isinstance(request.headers.get("X-Amz-Target"), bytes)
                                       else request.headers.get("X-Amz-Target", ""), body)
            return AWSResponse(request.url, 200, {"Content-Type": ctype}, RawBody(out))

        def stubbed(service: str) -> Any:
            client = boto3.client(service, endpoint_url="http://127.0.0.1:9")
            client.meta.events.register(f"before-send.{service}.*", answer)
            return client

        if variant == "naive":
            import base64  # noqa: PLC0415

            client = stubbed("sqs")

            def run(event: dict[str, Any]) -> None:
                for rs in event["records"].values():
                    for r in rs:
                        client.send_message(QueueUrl=QUEUE, MessageBody=base64.b64decode(r["value"]).decode())
        else:
            from bridge.adapters.sns import SnsBatchSender  # noqa: PLC0415
            from bridge.adapters.sqs import SqsBatchSender  # noqa: PLC0415
            from bridge.service import Bridge  # noqa: PLC0415
            from bridge.settings import Settings  # noqa: PLC0415

            settings = Settings.from_env()
            bridge = Bridge(settings.load_config(), settings, sqs=SqsBatchSender(stubbed("sqs")),
                            sns=SnsBatchSender(stubbed("sns")), parking_store=None, signing_keys=None)  # type: ignore[arg-type]
            run = bridge.handle
        run(json.loads(json.dumps(ONE_RECORD)))  # warm: models and caches loaded before the baseline
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    event = json.loads(raw)
    if run is not None:
        run(event)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"peak_bytes": float(peak - base)}


def main() -> None:
    mode, variant = sys.argv[1], sys.argv[2]
    result = cold(variant) if mode == "cold" else memory(variant, sys.argv[3])
    print(json.dumps(result))


if __name__ == "__main__":
    main()
