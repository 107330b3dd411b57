"""Raw record → typed Reading, through the writer schema named in the frame."""

from __future__ import annotations

from fieldstream.errors import DecodeError
from fieldstream.ingest.records import RawRecord
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_BATCH_V1, READING_LATEST, parsed, record_name
from fieldstream.schemas.reading import Reading
from fieldstream.schemas.registry import WriterSchemaCache

READING_RECORD = record_name(READING_LATEST)
BATCH_RECORD = record_name(READING_BATCH_V1)


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
        self.readers = {READING_RECORD: parsed(READING_LATEST), BATCH_RECORD: parsed(READING_BATCH_V1)}

    async def decode(self, rec: RawRecord) -> list[Reading]:
        """The readings in `rec` (one, or several for a ReadingBatch); DecodeError when it holds none."""
        value = rec.value
        if value is not None and len(value) > self.max_value_bytes:
            raise DecodeError(f"value of {len(value)} bytes exceeds {self.max_value_bytes}", reason="oversized")
        schema_id, body = codec.split_frame(value)
        writer = self.schemas.get_cached(schema_id) or await self.schemas.get(schema_id)
        reader = self.readers.get(writer.record_name)
        if reader is None:
            raise DecodeError(f"schema id {schema_id} is {writer.record_name!r}, not a Reading or ReadingBatch",
                              reason="schema_mismatch")
        record = codec.decode_body(body, writer.parsed, reader)
        records = record["readings"] if writer.record_name == BATCH_RECORD else (record,)
        if not records:
            raise DecodeError("ReadingBatch holds no readings", reason="empty_batch")
        readings = []
        for index, item in enumerate(records):
            reading = Reading.from_record(item, schema_id=schema_id, schema_version=writer.version)
            reading.topic, reading.partition, reading.offset, reading.index = rec.topic, rec.partition, rec.offset, index
            reading.raw = rec
            readings.append(reading)
        return readings
