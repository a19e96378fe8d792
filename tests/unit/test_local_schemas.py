"""The local poller's schema-registry decoding: Confluent and Glue framing, unknown schemas pass through."""

from __future__ import annotations

import io
import json
import uuid
import zlib
from pathlib import Path
from typing import Any

import fastavro
import pytest
from bridge.config import SchemaRegistry

from bridge_local.schemas import LocalSchemaDecoder, SchemaFileError, encode_confluent

SCHEMA: dict[str, Any] = {"type": "record", "name": "Order", "fields": [
    {"name": "order_id", "type": "string"}, {"name": "total", "type": "double"},
    {"name": "blob", "type": "bytes"}]}
ORDER = {"order_id": "o-1", "total": 1250.5, "blob": b"\x00\xff"}
GLUE_VERSION = uuid.UUID("6d3f1a2b-1c2d-4e5f-8a9b-0c1d2e3f4a5b")


@pytest.fixture
def decoder(tmp_path: Path) -> LocalSchemaDecoder:
    (tmp_path / "order.avsc").write_text(json.dumps(SCHEMA), encoding="utf-8")
    registry = SchemaRegistry("confluent", "https://r.example.com", "basic", "arn:x",
                              local_schemas=(("7", "order.avsc"), (str(GLUE_VERSION), "order.avsc")))
    return LocalSchemaDecoder(registry, tmp_path)


def _avro(document: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(SCHEMA), document)
    return out.getvalue()


def test_confluent_framed_value_becomes_json_with_schema_metadata(decoder: LocalSchemaDecoder) -> None:
    decoded = decoder.decode(encode_confluent(SCHEMA, 7, ORDER))
    assert decoded is not None
    assert json.loads(decoded.value) == {"order_id": "o-1", "total": 1250.5, "blob": "AP8="}
    assert decoded.metadata == {"dataFormat": "AVRO", "schemaId": "7"}


@pytest.mark.parametrize("compression", [0, 5])
def test_glue_framed_value_with_or_without_zlib(decoder: LocalSchemaDecoder, compression: int) -> None:
    body = _avro(ORDER)
    framed = bytes([3, compression]) + GLUE_VERSION.bytes + (zlib.compress(body) if compression else body)
    decoded = decoder.decode(framed)
    assert decoded is not None
    assert json.loads(decoded.value)["total"] == 1250.5
    assert decoded.metadata["schemaId"] == str(GLUE_VERSION)


def test_plain_json_and_unknown_schema_ids_pass_unchanged(decoder: LocalSchemaDecoder) -> None:
    assert decoder.decode(b'{"order_id": "o-1"}') is None
    assert decoder.decode(encode_confluent(SCHEMA, 8, ORDER)) is None
    assert decoder.decode(None) is None


def test_a_missing_schema_file_names_the_field_and_the_fix(tmp_path: Path) -> None:
    registry = SchemaRegistry("glue", "arn:aws:glue:us-east-1:123456789012:registry/r",
                              local_schemas=(("7", "missing.avsc"),))
    with pytest.raises(SchemaFileError, match=r"source.schema_registry.local_schemas.7: .*missing.avsc"):
        LocalSchemaDecoder(registry, tmp_path)
