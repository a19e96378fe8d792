"""The function package ships bytecode compiled for the runtime's Python, reproducibly."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from infra.bytecode import RUNTIME_PYTHON, find_runtime_python
from infra.constructs.bridge_function import stage_function_package
from infra.stack import REPO_ROOT

pytestmark = pytest.mark.infra

PYTHON = find_runtime_python()


@pytest.mark.skipif(PYTHON is None, reason=f"no python{RUNTIME_PYTHON} on this machine: the package ships sources")
def test_every_module_has_an_unchecked_hash_pyc_for_the_runtime(tmp_path: Path) -> None:
    assert PYTHON is not None
    magic = subprocess.run([PYTHON, "-c", "import importlib.util, sys; sys.stdout.buffer.write("
                            "importlib.util.MAGIC_NUMBER)"], capture_output=True, check=True).stdout
    package = stage_function_package(REPO_ROOT / "lambdas" / "bridge", {"name": "x"}, tmp_path / "pkg")
    sources = sorted(package.rglob("*.py"))
    assert sources
    tag = "cpython-" + RUNTIME_PYTHON.replace(".", "")
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        header = pyc.read_bytes()[:8]
        assert header[:4] == magic, source
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{pyc}: not an unchecked-hash pyc"


@pytest.mark.skipif(PYTHON is None, reason=f"no python{RUNTIME_PYTHON} on this machine")
def test_the_package_is_reproducible(tmp_path: Path) -> None:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    first = stage_function_package(REPO_ROOT / "lambdas" / "bridge", {"name": "x"}, tmp_path / "a")
    second = stage_function_package(REPO_ROOT / "lambdas" / "bridge", {"name": "x"}, tmp_path / "b")
    assert files(first) == files(second)
