"""Fault tier: a Tansu broker and the local AWS for the session, the fault proxy in front of the AWS.

The bridge's processes (poller subprocesses, `bridge redrive`) find the stack through a second state
file whose "local AWS" is the proxy; the tests' drainers talk to the local AWS directly.
`FAULTS_SIZE=full` (make soak-faults) runs the issue's full-size scenarios instead of the CI ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from bridge.handler import new_execution_environment

from bridge_local.faults import FaultProxy
from bridge_local.provision import LocalClients, provision_all
from bridge_local.services import LocalStack, ServiceState, state_path
from tests.faults.harness import DEV_CONFIG, FaultStack, load_dev_config


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    config = load_dev_config()
    tmp = tmp_path_factory.mktemp("faults")
    saved_environment = dict(os.environ)
    try:
        with LocalStack(str(DEV_CONFIG), tmp / "direct", write_state=True) as state:
            provision_all(config, state.bootstrap_servers, state.endpoint_url)
            proxy = FaultProxy(state.aws.port).start()
            try:
                proxied = tmp / "proxied"
                proxied.mkdir()
                # this process serves the proxy: its pid is what "alive" means for that entry
                via_proxy = dataclasses.replace(state, aws=ServiceState("fault-proxy", os.getpid(), proxy.port,
                                                                        str(tmp / "proxy.log")))
                state_path(proxied).write_text(via_proxy.to_json(), encoding="utf-8")
                yield FaultStack(config, state.bootstrap_servers, LocalClients.for_endpoint(state.endpoint_url),
                                 proxy, proxied, tmp, direct_state_dir=tmp / "direct")
            finally:
                proxy.stop()
    finally:
        os.environ.clear()
        os.environ.update(saved_environment)
        new_execution_environment()


def full_size() -> bool:
    return os.environ.get("FAULTS_SIZE") == "full"


@pytest.fixture(scope="session")
def results_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fault-results") / "results.json"
