"""Times inside the window code: integer microseconds since the Unix epoch.

Integers keep window arithmetic exact (epoch-aligned boundaries, no float drift);
Avro's timestamp-micros has the same resolution, so nothing is lost.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US_PER_S = 1_000_000
_ONE_US = timedelta(microseconds=1)


def to_us(when: datetime) -> int:
    """Microseconds since the epoch of a timezone-aware datetime."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: times must be timezone-aware UTC")
    return (when - EPOCH) // _ONE_US


def from_us(us: int) -> datetime:
    """The timezone-aware UTC datetime `us` microseconds after the epoch."""
    return EPOCH + timedelta(microseconds=us)


def seconds_to_us(seconds: float) -> int:
    return round(seconds * US_PER_S)
