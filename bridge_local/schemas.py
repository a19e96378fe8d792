"""Schema-registry records, decoded locally as the event-source mapping decodes them.

With `source.schema_registry`, Lambda's mapping reads each record's schema from the registry and
hands the function the record as JSON (EventRecordFormat JSON) with `valueSchemaMetadata`, so body
routes match fields of Avro records. Locally there is no registry: `local_schemas` in the config maps
schema ids to Avro schema files (.avsc), and the poller decodes with them:

- Confluent wire format: magic byte 0, a 4-byte big-endian schema id, the Avro binary body;
- AWS Glue wire format: header version byte 3, a compression byte (0 none, 5 zlib), the 16-byte
  schema version UUID, the Avro body.

Anything else (plain JSON, a schema id not in `local_schemas`) passes unchanged, and the function
sees its bytes. fastavro is a development dependency of the local tools only; the Lambda package
never imports this module.
"""

from __future__ import annotations

import base64
import io
import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge.config import SchemaRegistry

CONFLUENT_MAGIC = 0
GLUE_HEADER_VERSION = 3
GLUE_COMPRESSION_NONE, GLUE_COMPRESSION_ZLIB = 0, 5


class SchemaFileError(ValueError):
    """A local schema file is missing or not an Avro schema; the message names the file and the fix."""


@dataclass(frozen=True, slots=True)
class Decoded:
    value: bytes
    metadata: Mapping[str, str]  # valueSchemaMetadata as Lambda sends it


class LocalSchemaDecoder:
    """Avro values framed for a Confluent or Glue registry -> JSON bytes, with the schemas of the config."""

    def __init__(self, registry: SchemaRegistry, base_dir: Path) -> None:
        import fastavro  # noqa: PLC0415 - a development dependency, needed only with a schema registry

        self._fastavro = fastavro
        self._schemas: dict[str, Any] = {}
        for schema_id, file in registry.local_schemas:
            path = Path(file) if Path(file).is_absolute() else base_dir / file
            try:
                self._schemas[schema_id] = fastavro.parse_schema(json.loads(path.read_text(encoding="utf-8")))
            except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
                raise SchemaFileError(f"source.schema_registry.local_schemas.{schema_id}: {path} is not a readable "
                                      f"Avro schema ({exc}). Fix: point it at an .avsc file") from exc

    def decode(self, data: bytes | None) -> Decoded | None:
        """The record value as JSON with its schema metadata, or None when it is not a framed Avro value
        this decoder has the schema for."""
        if not data or len(data) < 5:
            return None
        if data[0] == CONFLUENT_MAGIC:
            schema_id, body = str(int.from_bytes(data[1:5], "big")), data[5:]
        elif data[0] == GLUE_HEADER_VERSION and len(data) >= 18 and data[1] in (GLUE_COMPRESSION_NONE,
                                                                                 GLUE_COMPRESSION_ZLIB):
            schema_id, body = str(uuid.UUID(bytes=data[2:18])), data[18:]
            if data[1] == GLUE_COMPRESSION_ZLIB:
                body = zlib.decompress(body)
        else:
            return None
        schema = self._schemas.get(schema_id)
        if schema is None:
            return None
        document = self._fastavro.schemaless_reader(io.BytesIO(body), schema)
        return Decoded(json.dumps(document, default=_json_default, separators=(",", ":")).encode("utf-8"),
                       {"dataFormat": "AVRO", "schemaId": schema_id})


def encode_confluent(schema: Mapping[str, Any], schema_id: int, document: Mapping[str, Any]) -> bytes:
    """A document as a producer with a Confluent serializer writes it (for the demo and the tests)."""
    import fastavro  # noqa: PLC0415

    out = io.BytesIO()
    out.write(bytes([CONFLUENT_MAGIC]) + schema_id.to_bytes(4, "big"))
    fastavro.schemaless_writer(out, fastavro.parse_schema(dict(schema)), dict(document))
    return out.getvalue()


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)  # decimals, UUIDs, dates and times from Avro logical types
