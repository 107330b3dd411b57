"""What each simulated sensor measures: per-metric daily cycle, noise, resolution.

Numbers are plausible for the hardware named (capacitive soil probes, cattle
collars, optical DO / glass pH probes, SGP30/PMS5003-class air sensors). Every
metric stays well inside `DEFAULT_RANGES` when normal, with room for injected
anomalies of several noise sigmas on at least one side.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from fieldstream.config.validation import DEFAULT_RANGES

#: Longitude of the simulated site: the daily cycle follows local solar time there.
SITE_LON = 142.02
SITE_NAME = "hamilton-farm"


@dataclass(frozen=True)
class MetricSpec:
    base: tuple[float, float]  # each device's mean is drawn from this range
    amplitude: tuple[float, float]  # each device's daily half-swing is drawn from this range
    sigma: float  # sensor noise, one standard deviation
    peak_hour: float  # local solar hour of the daily maximum
    decimals: int  # sensor resolution


METRICS: dict[str, dict[str, MetricSpec]] = {
    "soil_station": {
        "moisture": MetricSpec((18, 42), (0.3, 1.2), 0.25, 6, 2),
        "temperature": MetricSpec((10, 22), (3, 8), 0.15, 15, 2),
        "humidity": MetricSpec((55, 72), (8, 15), 0.8, 5, 1),
    },
    "collar": {
        "activity": MetricSpec((25, 40), (10, 20), 3.0, 13, 1),
        "body_temperature": MetricSpec((38.3, 38.9), (0.15, 0.35), 0.08, 17, 2),
    },
    "tank_probe": {
        "dissolved_oxygen": MetricSpec((6.5, 9.0), (0.5, 1.5), 0.08, 16, 2),
        "ph": MetricSpec((7.0, 8.0), (0.05, 0.2), 0.015, 16, 3),
        "water_temperature": MetricSpec((16, 24), (0.5, 1.5), 0.04, 17, 2),
    },
    "air_quality": {
        "tvoc": MetricSpec((60, 220), (20, 60), 6.0, 14, 0),
        "eco2": MetricSpec((480, 650), (30, 100), 6.0, 14, 0),
        "pm25": MetricSpec((6, 14), (1, 3), 0.6, 8, 1),
        "humidity": MetricSpec((35, 55), (5, 10), 0.7, 5, 1),
    },
}

DEVICE_TYPES: tuple[str, ...] = tuple(METRICS)


def solar_hour(epoch_s: float) -> float:
    """Local solar hour (0..24) at the site for a UTC epoch time."""
    return (epoch_s / 3600.0 + SITE_LON / 15.0) % 24.0


@dataclass(frozen=True)
class MetricModel:
    """One device's version of a metric: its own mean and daily swing."""

    name: str
    spec: MetricSpec
    base: float
    amplitude: float
    low: float  # the validator's range
    high: float

    @classmethod
    def draw(cls, device_type: str, name: str, rng: random.Random) -> MetricModel:
        spec = METRICS[device_type][name]
        low, high = DEFAULT_RANGES[device_type][name]
        return cls(name, spec, rng.uniform(*spec.base), rng.uniform(*spec.amplitude), low, high)

    @property
    def sigma(self) -> float:
        return self.spec.sigma

    def clean(self, hour: float) -> float:
        """The noiseless value at a local solar hour."""
        return self.base + self.amplitude * math.cos(2 * math.pi * (hour - self.spec.peak_hour) / 24.0)

    def finish(self, value: float) -> float:
        """Clamp into the valid range (a sensor's own limits) and round to its resolution."""
        return round(min(max(value, self.low), self.high), self.spec.decimals)

    def room_sign(self, need: float, rng: random.Random) -> int:
        """+1 or -1: a random direction for a deviation of `need`, flipped if only the other side has room."""
        up = self.high - (self.base + self.amplitude)
        down = (self.base - self.amplitude) - self.low
        sign = 1 if rng.random() < 0.5 else -1
        if (up if sign > 0 else down) < need and (down if sign > 0 else up) > (up if sign > 0 else down):
            sign = -sign
        return sign
