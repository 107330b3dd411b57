"""The typed reading that flows through the pipeline after decoding."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class Location:
    lat: float
    lon: float


@dataclass(slots=True)
class Reading:
    device_id: str
    device_type: str
    event_time: datetime  # timezone-aware UTC
    seq: int
    metrics: dict[str, float]
    tags: dict[str, str] | None = None
    location: Location | None = None
    firmware: str | None = None
    battery: float | None = None
    signal_dbm: int | None = None
    # Lineage: which registered schema the device wrote with.
    schema_id: int = 0
    schema_version: int = 0
    # Where it came from, for offsets, dead letters and idempotent file names.
    topic: str = ""
    partition: int = -1
    offset: int = -1
    index: int = 0  # position within its message (a ReadingBatch carries several)
    # The consumed record itself, so a sink's refusal can dead-letter the original bytes.
    raw: Any = None

    @classmethod
    def from_record(cls, record: dict[str, Any], *, schema_id: int = 0, schema_version: int = 0) -> Reading:
        """Build from a record already resolved to the newest reader schema."""
        loc = record.get("location")
        return cls(
            device_id=record["device_id"],
            device_type=record["device_type"],
            event_time=record["event_time"],
            seq=record["seq"],
            metrics=record["metrics"],
            tags=record.get("tags"),
            location=Location(loc["lat"], loc["lon"]) if loc else None,
            firmware=record.get("firmware"),
            battery=record.get("battery"),
            signal_dbm=record.get("signal_dbm"),
            schema_id=schema_id,
            schema_version=schema_version,
        )
