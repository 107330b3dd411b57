"""Rules configured per device type: thresholds, rate of change, stuck sensor,
geofence and device offline. Pure: state is plain attributes, time is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import ClassVar

from river import stats

from fieldstream.detectors.base import DEVICE, LOCATION, Severity, Verdict, finite
from fieldstream.schemas.reading import Reading

# (min, max, severity); either bound may be None.
Bounds = tuple[float | None, float | None, Severity]


class ThresholdRule:
    """Absolute bounds per metric (e.g. tank dissolved oxygen too low). No warm-up: a bound is a bound."""

    name: ClassVar[str] = "threshold"

    def __init__(self, bounds: Mapping[str, Bounds], seed: int | None = None) -> None:
        self.bounds = dict(bounds)
        self.seed = seed

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        out: list[Verdict] = []
        metrics = reading.metrics
        for metric, (lo, hi, severity) in self.bounds.items():
            x = metrics.get(metric)
            try:
                if x is None or x - x:  # missing, NaN or ±inf
                    continue
            except TypeError:
                continue
            if lo is not None and x < lo:
                out.append(Verdict(self.name, metric, x, lo - x, lo, severity, f"{metric}={x:.4g} below {lo:.4g}"))
            elif hi is not None and x > hi:
                out.append(Verdict(self.name, metric, x, x - hi, hi, severity, f"{metric}={x:.4g} above {hi:.4g}"))
        return out


class RateRule:
    """|Δvalue / Δt| above a per-metric limit (units per second)."""

    name: ClassVar[str] = "rate"

    def __init__(self, limits: Mapping[str, float], warmup: int = 2, seed: int | None = None) -> None:
        self.limits = dict(limits)
        self.warmup = warmup
        self.seed = seed
        self._last: dict[str, tuple[float, datetime, int]] = {}  # metric → (value, time, readings seen)

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        out: list[Verdict] = []
        t = reading.event_time
        for metric, limit in self.limits.items():
            x = finite(reading.metrics.get(metric))
            if x is None:
                continue
            prev = self._last.get(metric)
            if prev is None:
                self._last[metric] = (x, t, 1)
                continue
            px, pt, n = prev
            dt = (t - pt).total_seconds()
            if dt <= 0:  # duplicate or out of order: no rate to speak of
                continue
            self._last[metric] = (x, t, n + 1)
            rate = abs(x - px) / dt
            if rate > limit and n + 1 >= self.warmup:
                out.append(Verdict(self.name, metric, x, rate, limit, "warning",
                                   f"{metric} changed {x - px:+.4g} in {dt:.0f}s ({rate:.3g}/s > {limit:.3g}/s)"))
        return out


class StuckRule:
    """A metric that used to vary repeats the same value `n` readings in a row."""

    name: ClassVar[str] = "stuck"

    def __init__(self, n: int = 20, epsilon: float = 0.0, seed: int | None = None) -> None:
        self.n = n
        self.warmup = n
        self.epsilon = epsilon
        self.seed = seed
        # metric → [first value of the current run, run length, has it ever varied]
        self._runs: dict[str, list] = {}

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        out: list[Verdict] = []
        runs = self._runs
        eps = self.epsilon
        for metric, x in reading.metrics.items():
            try:
                if x - x:  # NaN or ±inf
                    continue
            except TypeError:
                continue
            run = runs.get(metric)
            if run is None:
                runs[metric] = [x, 1, False]
                continue
            if abs(x - run[0]) <= eps:
                run[1] += 1
                # Metrics that never varied (a switch, a constant) are not "stuck".
                if run[1] >= self.n and run[2]:
                    out.append(Verdict(self.name, metric, x, float(run[1]), float(self.n), "warning",
                                       f"{metric} stuck at {x:.6g} for {run[1]} readings"))
            else:
                run[0] = x
                run[1] = 1
                run[2] = True
        return out


def point_in_polygon(lat: float, lon: float, polygon: Sequence[tuple[float, float]]) -> bool:
    """Ray casting on (lon, lat) as plane coordinates: exact enough at paddock scale.

    Points on an edge may fall either side; a geofence is not that precise anyway.
    """
    inside = False
    n = len(polygon)
    j = n - 1
    for i in range(n):
        yi, xi = polygon[i]
        yj, xj = polygon[j]
        if (yi > lat) != (yj > lat):
            x_cross = xi + (lat - yi) * (xj - xi) / (yj - yi)
            if lon < x_cross:
                inside = not inside
        j = i
    return inside


class GeofenceRule:
    """A device's location outside its polygon (a collar leaving its paddock)."""

    name: ClassVar[str] = "geofence"

    def __init__(self, polygon: Sequence[Sequence[float]], severity: Severity = "critical",
                 seed: int | None = None) -> None:
        if len(polygon) < 3:
            raise ValueError("a geofence polygon needs at least 3 vertices")
        self.polygon = [(float(p[0]), float(p[1])) for p in polygon]
        self.severity = severity
        self.seed = seed
        lats = [p[0] for p in self.polygon]
        lons = [p[1] for p in self.polygon]
        self._box = (min(lats), max(lats), min(lons), max(lons))  # cheap rejection first

    def contains(self, lat: float, lon: float) -> bool:
        lo_lat, hi_lat, lo_lon, hi_lon = self._box
        if not (lo_lat <= lat <= hi_lat and lo_lon <= lon <= hi_lon):
            return False
        return point_in_polygon(lat, lon, self.polygon)

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        loc = reading.location
        if loc is None:
            return []
        lat, lon = finite(loc.lat), finite(loc.lon)
        if lat is None or lon is None or self.contains(lat, lon):
            return []
        return [Verdict(self.name, LOCATION, None, 1.0, None, self.severity,
                        f"location ({lat:.6f}, {lon:.6f}) is outside the geofence")]


def is_silent(last_seen: datetime, interval_s: float, now: datetime, k: float) -> bool:
    """True if nothing was heard for k expected intervals."""
    return (now - last_seen).total_seconds() >= k * interval_s


def silent_devices(
    last_seen: Mapping[str, tuple[datetime, float]], now: datetime, k: float
) -> list[tuple[str, float]]:
    """(device_id, seconds silent) of every device silent for k × its interval, loudest silence first."""
    found = [
        (device, (now - seen).total_seconds())
        for device, (seen, interval) in last_seen.items()
        if is_silent(seen, interval, now, k)
    ]
    return sorted(found, key=lambda d: -d[1])


class OfflineRule:
    """Tracks when one device was last heard from and how often it reports.

    Readings only feed it; `check(now)` (driven by a timer, so silence is noticed
    without new data) says whether the device is offline. The interval is the
    configured one for its type or, if none, learned from the device's own
    inter-arrival times, ignoring gaps that are themselves outages.

    `now` and the times passed to `heard` must be on the same clock. Event times
    are the device's clock, which may be skewed: where that matters, feed it
    arrival times (the Kafka record timestamp) and tick it with the same clock.
    """

    name: ClassVar[str] = "offline"

    def __init__(self, k: float = 3.0, min_readings: int = 5, interval_s: float | None = None,
                 fading: float = 0.1, seed: int | None = None) -> None:
        self.k = k
        self.min_readings = min_readings
        self.warmup = min_readings
        self.interval_s = interval_s
        self.fading = fading
        self.seed = seed
        self.last_seen: datetime | None = None
        self.readings = 0
        self._interval = stats.EWMean(fading)

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        self.heard(reading.event_time)
        return []

    def heard(self, t: datetime) -> None:
        """The device was heard from at `t` (its reading's event time, or when it arrived)."""
        last = self.last_seen
        if last is not None:
            if t <= last:  # late or duplicate reading: says nothing about silence now
                return
            gap = (t - last).total_seconds()
            current = self.expected_interval()
            if current is None or gap < self.k * current:
                self._interval.update(gap)
        self.last_seen = t
        self.readings += 1

    def expected_interval(self) -> float | None:
        if self.interval_s is not None:
            return self.interval_s
        if self.readings < self.min_readings:
            return None
        return self._interval.get()

    def deadline(self) -> datetime | None:
        """When the device counts as offline if nothing arrives before then."""
        interval = self.expected_interval()
        if interval is None or self.last_seen is None or self.readings < self.min_readings:
            return None
        return self.last_seen + timedelta(seconds=self.k * interval)

    def check(self, now: datetime) -> Verdict | None:
        interval = self.expected_interval()
        if interval is None or self.last_seen is None or self.readings < self.min_readings:
            return None
        if not is_silent(self.last_seen, interval, now, self.k):
            return None
        # Described as of the deadline, not `now`: the same silence gives the same alert whenever the timer fires.
        limit = self.k * interval
        return Verdict(self.name, DEVICE, limit, self.k, limit, "warning",
                       f"no reading for {limit:.0f}s (expected every {interval:.0f}s)")
