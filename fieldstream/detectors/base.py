"""The detector protocol and the verdict every detector returns.

Detectors follow River's conventions: hyperparameters and `seed` in the
constructor, state in plain attributes so `pickle` round-trips them (the state
lives in a Faust changelog table), and one call per observation that scores it
and then learns from it. Only anomalous verdicts are returned: the common case
(nothing wrong) allocates nothing, which keeps the per-reading cost low.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol, runtime_checkable

from fieldstream.schemas.reading import Location, Reading

Severity = Literal["info", "warning", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}

# Metric names of alerts that are not about one metric.
LOCATION = "location"
DEVICE = "*"
# Schema v1 devices report their position as these two metrics (see config.validation ranges).
LAT, LON = "lat", "lon"


@dataclass(frozen=True, slots=True)
class Verdict:
    """One detector's finding that one reading (or sample) is anomalous."""

    detector: str
    metric: str
    value: float | None
    score: float | None
    threshold: float | None
    severity: Severity
    message: str


@runtime_checkable
class Detector(Protocol):
    """Score one reading, then learn from it; return what is anomalous in it."""

    name: ClassVar[str]

    def score_learn_one(self, reading: Reading) -> list[Verdict]: ...


def finite(value: object) -> float | None:
    """`value` as a float if it is a finite number, else None (missing, NaN, inf, junk)."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def normalise(reading: Reading) -> Reading:
    """The reading with a v1-style position (metrics lat/lon) moved into `location`.

    A position is not a metric to z-score: a grazing collar's coordinates move
    all the time. Readings without those metrics are returned as they are (no copy).
    """
    metrics = reading.metrics
    if LAT not in metrics or LON not in metrics:
        return reading
    rest = {k: v for k, v in metrics.items() if k != LAT and k != LON}
    location = reading.location
    if location is None:
        lat, lon = finite(metrics[LAT]), finite(metrics[LON])
        location = Location(lat, lon) if lat is not None and lon is not None else None
    return Reading(reading.device_id, reading.device_type, reading.event_time, reading.seq, rest,
                   reading.tags, location)
