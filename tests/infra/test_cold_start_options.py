"""Cold-start options: the X-Ray SDK Tracer only with `settings.tracing: on`, SnapStart on published
versions only with `settings.snapstart: on`; Lambda's active tracing either way."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import botocore

from tests.infra.conftest import Synth


def function_properties(synth: Synth) -> dict[str, Any]:
    (fn,) = [r for r in synth.resources("AWS::Lambda::Function").values()
             if r["Properties"].get("Handler") == "bridge.handler.lambda_handler"]
    props: dict[str, Any] = fn["Properties"]
    return props


def test_by_default_no_tracer_sdk_and_no_snapstart(dev: Synth) -> None:
    props = function_properties(dev)

    assert props["TracingConfig"] == {"Mode": "Active"}
    assert props["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "true"
    assert "BRIDGE_SNAPSTART" not in props["Environment"]["Variables"]
    assert "SnapStart" not in props


def test_tracing_and_snapstart_on_request(provisioned: Synth) -> None:
    props = function_properties(provisioned)

    assert props["TracingConfig"] == {"Mode": "Active"}
    assert "POWERTOOLS_TRACE_DISABLED" not in props["Environment"]["Variables"]
    assert props["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    assert props["Environment"]["Variables"]["BRIDGE_SNAPSTART"] == "true"


def test_direct_sends_are_on_by_default_and_settings_direct_sends_off_turns_them_off(dev: Synth,
                                                                                    provisioned: Synth) -> None:
    assert "BRIDGE_DIRECT_SENDS" not in function_properties(dev)["Environment"]["Variables"]
    assert function_properties(provisioned)["Environment"]["Variables"]["BRIDGE_DIRECT_SENDS"] == "off"


def test_snapstart_value_is_one_the_lambda_api_accepts() -> None:
    model = json.loads(gzip.decompress(
        (Path(botocore.__file__).parent / "data" / "lambda" / "2015-03-31" / "service-2.json.gz").read_bytes()))
    assert "PublishedVersions" in model["shapes"]["SnapStartApplyOn"]["enum"]
