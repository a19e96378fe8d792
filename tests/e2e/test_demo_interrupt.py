"""`bridge demo` stops everything it started when interrupted, as `make demo` promises."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import CONFIG_PATH, ROOT

pytestmark = pytest.mark.e2e

STACK_LINE = re.compile(r"local stack: kafka 127\.0\.0\.1:(\d+), aws http://127\.0\.0\.1:(\d+)")


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_demo_stops_the_broker_and_local_aws(tmp_path: Path, sig: signal.Signals) -> None:
    # given: a demo that has started its stack and is producing or polling
    demo = subprocess.Popen(
        [sys.executable, "-m", "bridge_local.cli", "--config", str(CONFIG_PATH), "--state-dir", str(tmp_path),
         "demo", "--count", "300", "--quiet"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert demo.stdout is not None
    ports: tuple[int, int] | None = None
    deadline = time.monotonic() + 60
    while ports is None and time.monotonic() < deadline:
        line = demo.stdout.readline()
        if not line:
            break
        if m := STACK_LINE.search(line):
            ports = (int(m[1]), int(m[2]))
    assert ports is not None, "the demo never reported its local stack"
    assert all(_listening(p) for p in ports)

    # when
    demo.send_signal(sig)
    out, _ = demo.communicate(timeout=60)

    # then: it says so, exits 130, and nothing it started still listens
    assert demo.returncode == 130, out
    assert "interrupted; everything this command started has been stopped" in out
    assert not any(_listening(p) for p in ports)
