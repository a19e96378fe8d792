"""Bytecode for the function package, compiled by the runtime's own Python version.

Lambda's /var/task is read-only, so a package without `.pyc` files compiles every module of the
bridge at each cold start. The package ships `__pycache__/*.cpython-312.pyc` compiled by a
python3.12 found on this machine (PATH, then pyenv's versions), as unchecked-hash pycs: the package
is immutable, so the interpreter loads them without reading the source again, and the bytes depend
only on the source (reproducible assets, so an unchanged package publishes no new version).
Without a python3.12 the package ships sources only, and synth says so (`compile_package` returns
None); README "Cold start" has the measured cost.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

RUNTIME_PYTHON = "3.12"  # lambda_.Runtime.PYTHON_3_12 in infra/constructs/bridge_function.py
TASK_ROOT = "/var/task"  # where Lambda unpacks the package: the paths tracebacks show


def find_runtime_python(version: str = RUNTIME_PYTHON) -> str | None:
    """A python<version> executable that runs and reports that version, or None."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(os.path.expanduser(f"~/.pyenv/versions/{version}.*/bin/python{version}")),
                         reverse=True)
    for exe in candidates:
        if not exe:
            continue
        try:
            probe = "import sys; print('%d.%d' % sys.version_info[:2])"
            out = subprocess.run([exe, "-c", probe],  # noqa: S603 - a python found on PATH or in pyenv
                                 capture_output=True, text=True, timeout=30, check=False)
        except OSError:
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return exe
    return None


def compile_package(package_dir: Path, python: str | None = None) -> str | None:
    """Compile every module under `package_dir` with the runtime's Python; the interpreter used, or None."""
    exe = python or find_runtime_python()
    if exe is None:
        return None
    # the interpreter find_runtime_python checked
    args = [exe, "-m", "compileall", "-q", "-f", "--invalidation-mode", "unchecked-hash",
            "-s", str(package_dir), "-p", TASK_ROOT, str(package_dir)]
    subprocess.run(args, check=True, capture_output=True, timeout=300)  # noqa: S603
    return exe
