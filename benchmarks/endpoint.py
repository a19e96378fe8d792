"""A loopback SQS + SNS endpoint for the benchmark: real HTTP, answers with a configurable delay.

Run as its own process (`python benchmarks/endpoint.py`): it prints its port on the first line of
stdout and serves until stdin closes, so the benchmark's own CPU time never includes the server's.
It answers the calls the bridge and the baselines make, with every entry accepted:

  SQS (JSON protocol)  SendMessage, SendMessageBatch
  SNS (query protocol) Publish, PublishBatch
  DynamoDB (JSON)      BatchWriteItem (every item processed), Query (no items): the checkpoint table, for
                       benchmarks/bench_checkpoints.py; entries count 0, so message counts stay the sends'

`POST /__control` with `{"delay_ms": N}` sets the delay every answer waits (10 ms is about what a
same-Region SQS call takes); the answer is the traffic since the previous control call: requests,
entries, busy seconds (summed over requests, so busy / wall = mean requests in flight) and the most
requests seen in flight at once. `respond()` is also used in-process by the no-network variants.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "lambdas"))
from bridge.adapters.direct import RawBody  # noqa: F401 - re-exported for the benchmarks

_MD5 = "0" * 32  # botocore does not check it; computing it would only add server CPU


def respond(target: str, body: bytes) -> tuple[str, int, bytes, str]:
    """(action, entries, response body, content type) for one request; `target` is X-Amz-Target or ""."""
    if target.startswith("DynamoDB_"):  # "DynamoDB_20120810.BatchWriteItem"
        action = target.rpartition(".")[2]
        answer: dict[str, Any] = {"UnprocessedItems": {}} if action == "BatchWriteItem" else \
            {"Count": 0, "ScannedCount": 0, "Items": []}
        return action, 0, json.dumps(answer).encode(), "application/x-amz-json-1.0"
    if target:  # SQS JSON protocol: "AmazonSQS.SendMessageBatch"
        action = target.rpartition(".")[2]
        doc = json.loads(body)
        if action == "SendMessageBatch":
            ok = [{"Id": e["Id"], "MessageId": f"m-{e['Id']}", "MD5OfMessageBody": _MD5} for e in doc["Entries"]]
            return action, len(ok), json.dumps({"Successful": ok, "Failed": []}).encode(), "application/x-amz-json-1.0"
        return action, 1, json.dumps({"MessageId": "m-0", "MD5OfMessageBody": _MD5}).encode(), \
            "application/x-amz-json-1.0"
    form = parse_qs(body.decode())
    action = form.get("Action", [""])[0]
    if action == "PublishBatch":
        ids = [v[0] for k, v in form.items()
               if k.startswith("PublishBatchRequestEntries.member.") and k.endswith(".Id")]
        members = "".join(f"<member><Id>{i}</Id><MessageId>m-{i}</MessageId></member>" for i in ids)
        xml = (f'<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>'
               f"<Successful>{members}</Successful><Failed/></PublishBatchResult><ResponseMetadata><RequestId>r"
               "</RequestId></ResponseMetadata></PublishBatchResponse>")
        return action, len(ids), xml.encode(), "text/xml"
    xml = ('<PublishResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishResult><MessageId>m-0'
           "</MessageId></PublishResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>"
           "</PublishResponse>")
    return action, 1, xml.encode(), "text/xml"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.delay = 0.0
        self.reset()

    def reset(self) -> dict[str, Any]:
        with self.lock:
            stats = dict(getattr(self, "stats", {}))
            self.stats: dict[str, Any] = {"requests": 0, "entries": 0, "busy_s": 0.0, "max_in_flight": 0,
                                          "by_action": {}}
            self.in_flight = 0
        return stats


STATE = _State()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as with SQS and SNS
    disable_nagle_algorithm = True

    def log_message(self, *_: Any) -> None:  # quiet
        pass

    def do_POST(self) -> None:
        started = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path == "/__control":
            doc = json.loads(body or b"{}")
            STATE.delay = float(doc.get("delay_ms", STATE.delay * 1000)) / 1000
            self._send(json.dumps(STATE.reset()).encode(), "application/json")
            return
        st = STATE.stats
        with STATE.lock:
            STATE.in_flight += 1
            st["max_in_flight"] = max(st["max_in_flight"], STATE.in_flight)
        action, entries, out, ctype = respond(self.headers.get("X-Amz-Target", ""), body)
        if STATE.delay:
            time.sleep(max(0.0, STATE.delay - (time.perf_counter() - started)))
        with STATE.lock:
            STATE.in_flight -= 1
            st["requests"] += 1
            st["entries"] += entries
            st["by_action"][action] = st["by_action"].get(action, 0) + 1
            st["busy_s"] += time.perf_counter() - started
        self._send(out, ctype)

    def _send(self, out: bytes, ctype: str) -> None:
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {len(out)}\r\n"
                "x-amzn-RequestId: r\r\n\r\n").encode()
        self.wfile.write(head + out)


class _Server(ThreadingHTTPServer):
    # Every sending thread's connect accepted at once, as an AWS endpoint does: with the default listen
    # backlog of 5, the connects of 16 threads starting together overflow it and the kernel drops their SYNs,
    # which the client resends after its 1-second initial retransmission timeout, so a run measured TCP's
    # timer (six requests of a 5,000-message FIFO run at 10 ms took 1.05 s each, half its wall time).
    request_queue_size = 128


def main() -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()  # the benchmark closes our stdin (or dies): stop
    server.shutdown()


if __name__ == "__main__":
    main()
