"""Readings written to the Confluent wire format by hand, for tests that need bytes no SDK would produce."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_V2, parsed

READER = parsed(READING_V2)


def reading(device: str, seq: int, at: datetime, **changes: Any) -> dict[str, Any]:
    """A valid v2 soil-station reading, with `changes` applied."""
    base = {"device_id": device, "device_type": "soil_station", "event_time": at, "seq": seq,
            "metrics": {"moisture": 30.0, "temperature": 12.5}, "tags": None, "location": None,
            "firmware": None, "battery": None, "signal_dbm": None}
    return {**base, **changes}


def framed(schema_id: int, record: dict[str, Any]) -> bytes:
    """Magic byte, schema id, v2 Avro body: NaN, inf and absurd times get through."""
    return codec.frame(schema_id, codec.encode_body(record, READER))
