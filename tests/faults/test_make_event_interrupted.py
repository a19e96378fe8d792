"""`bridge make-event --out` interrupted while it writes the event: the file a later command reads (bridge
invoke, the Lambda console) is the previous event or the new one, whole, never a truncated one; the next run
removes what the interrupted one left and says so."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import DEV_CONFIG

# The real `bridge` command in a child process, killed by SIGKILL at its first write() to a file in the output
# directory: the file is open for writing (created, or truncated), none of the event is in it yet.
_KILLED_AT_WRITE = """
import os, signal, sys
out_dir = os.path.realpath(sys.argv[1])
def kill_at_first_write(frame, event, arg):
    if event == "c_call" and getattr(arg, "__name__", "") == "write":
        name = getattr(getattr(arg, "__self__", None), "name", None)
        if isinstance(name, str) and os.path.dirname(os.path.realpath(name)) == out_dir:
            os.kill(os.getpid(), signal.SIGKILL)
sys.setprofile(kill_at_first_write)
from bridge_local.cli import main
sys.exit(main(sys.argv[2:]))
"""
# The same command with the file size limited to 64 KiB (a full disk): the write fails part way.
_DISK_FULL = """
import sys
from bridge_local.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _records(path: Path, count: int, topic: str) -> Path:
    lines = (json.dumps({"topic": topic, "key": f"k-{i}", "value": json.dumps({"n": i, "pad": "x" * 200})})
             for i in range(count))
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def _make_event(script: str, tmp: Path, records: Path, out: Path, *, limit_size: bool = False
                ) -> subprocess.CompletedProcess[str]:
    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))

    return subprocess.run(
        [sys.executable, "-c", script, str(out.parent), "--config", str(DEV_CONFIG), "--state-dir", str(tmp / "state"),
         "make-event", str(records), "--out", str(out)],
        capture_output=True, text=True, timeout=120, check=False, preexec_fn=limited if limit_size else None)


@pytest.mark.parametrize("interruption", ["sigkill", "disk-full"])
def test_an_interrupted_make_event_leaves_the_previous_event_whole_and_the_next_run_says_what_it_removed(
        tmp_path: Path, interruption: str) -> None:
    # given: an event written by a run that finished
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "event.json"
    first = _make_event(_DISK_FULL, tmp_path, _records(tmp_path / "first.jsonl", 3, "orders"), out)
    assert first.returncode == 0, first.stderr
    previous = out.read_text(encoding="utf-8")

    # when: the next run, of 1,000 records (about 0.5 MB), is killed (or runs out of disk) while it writes
    records = _records(tmp_path / "second.jsonl", 1000, "orders")
    if interruption == "sigkill":
        killed = _make_event(_KILLED_AT_WRITE, tmp_path, records, out)
        assert killed.returncode == -9
    else:
        killed = _make_event(_DISK_FULL, tmp_path, records, out, limit_size=True)
        assert killed.returncode != 0

    # then: the event file is the previous one, whole
    assert out.read_text(encoding="utf-8") == previous
    assert json.loads(previous)["records"]

    # and: the next run writes the new event whole, removes what the killed one left, and says so
    again = _make_event(_DISK_FULL, tmp_path, records, out)
    assert again.returncode == 0, again.stderr
    event = json.loads(out.read_text(encoding="utf-8"))
    assert sum(len(r) for r in event["records"].values()) == 1000
    assert sorted(p.name for p in out_dir.iterdir()) == ["event.json"]
    if interruption == "sigkill":  # a process killed outright leaves its partial file; a failed write removes its own
        assert "a make-event run was interrupted while writing it" in again.stdout + again.stderr
