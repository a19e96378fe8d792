"""Files the local tools write for later commands to read: whole, or not at all."""

from __future__ import annotations

import contextlib
import glob
import os
import stat
from pathlib import Path

PARTIAL = ".partial-"  # `.NAME.partial-PID`: a write of NAME under way, or cut short by a kill


def write_whole(path: Path, text: str) -> list[Path]:
    """`text` in `path`, whole or not at all, for a later command that reads it.

    Written to `.NAME.partial-PID` in the same directory, flushed to disk (fsync), then renamed over `path`
    (atomic on one file system) and the directory flushed, so a Ctrl-C, SIGKILL or power loss leaves either
    the previous file or the new one, never a truncated one. A run killed before the rename leaves its
    partial file behind; the next write of `path` removes those whose process is gone and returns them, for
    the caller to say what it found. `path` that is not a regular file (/dev/stdout, a pipe) is written
    directly: there is nothing to rename over."""
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISREG(path.stat().st_mode):
            path.write_text(text, encoding="utf-8")
            return []
    removed = _remove_left_over(path)
    partial = path.with_name(f".{path.name}{PARTIAL}{os.getpid()}")
    try:
        with partial.open("w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself on disk
    finally:
        os.close(directory)
    return removed


def _remove_left_over(path: Path) -> list[Path]:
    """The partial files of `path` whose writing process no longer runs, removed."""
    removed = []
    for partial in sorted(path.parent.glob(f".{glob.escape(path.name)}{PARTIAL}*")):
        pid = partial.name.rsplit(PARTIAL, 1)[1]
        if not pid.isdigit() or _running(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
            removed.append(partial)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a partial of this pid is a previous process's: pids are reused
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
