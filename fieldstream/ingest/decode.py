"""Raw record → typed Reading, through the writer schema named in the frame."""

from __future__ import annotations

from fieldstream.errors import DecodeError
from fieldstream.ingest.records import RawRecord
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_LATEST, parsed
from fieldstream.schemas.reading import Reading
from fieldstream.schemas.registry import WriterSchemaCache

READING_RECORD = "io.fieldstream.telemetry.Reading"


def framed_schema_id(value: bytes | None) -> int | None:
    """The schema id a value's frame names, or None without a valid frame.

    For dead-letter headers: a record that fails after its frame was read
    (unknown id, another record type, a bad body) still says which id it claimed.
    """
    try:
        return codec.split_frame(value)[0]
    except DecodeError:
        return None


class Decoder:
    def __init__(self, schemas: WriterSchemaCache, max_value_bytes: int) -> None:
        self.schemas = schemas
        self.max_value_bytes = max_value_bytes
        self.reader = parsed(READING_LATEST)

    async def decode(self, rec: RawRecord) -> Reading:
        """The reading in `rec`; DecodeError when it is not one (permanent)."""
        value = rec.value
        if value is not None and len(value) > self.max_value_bytes:
            raise DecodeError(f"value of {len(value)} bytes exceeds {self.max_value_bytes}", reason="oversized")
        schema_id, body = codec.split_frame(value)
        writer = self.schemas.get_cached(schema_id) or await self.schemas.get(schema_id)
        if writer.record_name != READING_RECORD:
            raise DecodeError(f"schema id {schema_id} is {writer.record_name!r}, not a Reading",
                              reason="schema_mismatch")
        record = codec.decode_body(body, writer.parsed, self.reader)
        reading = Reading.from_record(record, schema_id=schema_id, schema_version=writer.version)
        reading.topic, reading.partition, reading.offset, reading.raw = rec.topic, rec.partition, rec.offset, rec
        return reading
