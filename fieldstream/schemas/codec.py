"""Registry-framed Avro: Confluent wire format in, typed readings out.

Wire format: magic byte 0, a 4-byte big-endian schema id, then the Avro body
written with that (writer) schema. The body is resolved to the newest reader
schema with fastavro, so old and new devices decode to one shape.
"""

from __future__ import annotations

import io
import struct
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError

from fieldstream.errors import DecodeError

MAGIC = 0
HEADER = struct.Struct(">bI")


def split_frame(value: bytes | None) -> tuple[int, memoryview]:
    """(schema id, Avro body) of a framed value, or DecodeError saying why not."""
    if not value:
        raise DecodeError("empty value", reason="empty")
    if len(value) < HEADER.size:
        raise DecodeError(f"value of {len(value)} bytes is shorter than the 5-byte header", reason="truncated")
    magic, schema_id = HEADER.unpack_from(value)
    if magic != MAGIC:
        raise DecodeError(f"magic byte {magic} is not {MAGIC}: not registry-framed Avro", reason="bad_magic")
    return schema_id, memoryview(value)[HEADER.size:]


def frame(schema_id: int, body: bytes) -> bytes:
    return HEADER.pack(MAGIC, schema_id) + body


def decode_body(body: memoryview | bytes, writer: Any, reader: Any) -> dict[str, Any]:
    """Decode one Avro body written with `writer`, resolved to `reader`."""
    buf = io.BytesIO(body)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except SchemaResolutionError as e:
        raise DecodeError(f"writer schema does not resolve to the reading schema: {e}",
                          reason="schema_mismatch") from e
    except (EOFError, StopIteration) as e:
        raise DecodeError("Avro body ends early", reason="truncated") from e
    except (ValueError, TypeError, IndexError, KeyError, UnicodeDecodeError, OverflowError) as e:
        raise DecodeError(f"Avro body is malformed: {type(e).__name__}: {e}", reason="malformed") from e
    if buf.tell() != len(body):
        raise DecodeError(f"{len(body) - buf.tell()} bytes left after the Avro record", reason="trailing_bytes")
    if not isinstance(record, dict):
        raise DecodeError("Avro body is not a record", reason="malformed")
    return record


def encode_body(record: dict[str, Any], schema: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()
