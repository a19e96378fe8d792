"""`bridge up` keeps the state dir from growing by two service logs per stack forever."""

from __future__ import annotations

import os
from pathlib import Path

from bridge_local.services import KEPT_SERVICE_LOGS, prune_service_logs

# the ports of six earlier stacks, oldest first: a free port is any port, so their order is not the logs' age
PORTS = [2005, 2001, 2003, 2000, 2004, 2002]


def test_only_the_newest_logs_of_each_service_are_kept_and_nothing_else_is_touched(tmp_path: Path) -> None:
    for i, port in enumerate(PORTS):
        for name in ("tansu", "ministack"):
            log = tmp_path / f"{name}-{port}.log"
            log.write_text("x", encoding="ascii")
            os.utime(log, (1_000_000 + i, 1_000_000 + i))
    others = [tmp_path / "handler-stdout.log", tmp_path / "local.json", tmp_path / "ministack-2000.state.log.d"]
    for o in others:
        o.write_text("keep", encoding="ascii")

    removed = prune_service_logs(tmp_path)

    assert KEPT_SERVICE_LOGS == 3
    assert sorted(p.name for p in removed) == sorted(f"{n}-{port}.log" for n in ("tansu", "ministack")
                                                      for port in PORTS[:3])
    assert sorted(p.name for n in ("tansu", "ministack") for p in tmp_path.glob(f"{n}-*.log")) == sorted(
        f"{n}-{port}.log" for n in ("tansu", "ministack") for port in PORTS[3:])
    assert all(o.exists() for o in others)


def test_a_missing_state_dir_is_nothing_to_prune(tmp_path: Path) -> None:
    assert prune_service_logs(tmp_path / "never-created") == []
