"""Adds readings to a device's window state and closes its due windows. Pure: `now` is injected.

Closing rule. A device's window [s, e) closes once the device's *frontier*
reaches e + grace. The frontier rises with

* event time: the newest event time counted from the device (its watermark), on
  every `add`; and
* processing time while the device is silent: `close_due(now)` advances it to
  watermark + (now − when the watermark last rose). A device that stops
  sending therefore has its last window closed after at most one window size +
  grace of silence, whether or not it ever sends again.

Silence is measured from the device's last reading, not by comparing event time
with the wall clock, on purpose: a worker catching up on a backlog, or a device
whose clock lags, would otherwise find every reading "late". For the same reason
the caller passes `flowing_since` after a restart, a rebalance or a pause: time
during which the stream was not being consumed is not silence.

Every window is emitted exactly once, with the readings counted before it
closed, and only if it holds at least one value of the metric. Emission may
trail closing: `add(..., defer=True)` closes (no reading joins the window after
that) but leaves the aggregates in the state until `emit_closed`, so a caller
can spread the burst of a window boundary (every device closes at once) over
the following seconds. The aggregates do not depend on when they are emitted,
and the state carries the unemitted windows through a checkpoint and restart. A reading
whose windows have all closed is LATE (not counted, reported per metric for the
late-data topic); one that missed only some of them (a pane shared with a still
open hopping window) is counted in the open ones and reported for the others
(PARTLY_LATE). A (device_id, seq) already counted is a DUPLICATE and changes
nothing, so replays after a crash are harmless.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from math import floor, isfinite
from statistics import median
from typing import TYPE_CHECKING, Any, NamedTuple

from fieldstream.schemas.reading import Reading
from fieldstream.windows import seqs
from fieldstream.windows.clock import US_PER_S, from_us, seconds_to_us, to_us
from fieldstream.windows.geo import track_length_m
from fieldstream.windows.measures import MeasureConfig, Summary, summarize_exact, summarize_sketched
from fieldstream.windows.sketch import Mapping
from fieldstream.windows.specs import WindowSpec, pane_seconds, parse_specs
from fieldstream.windows.state import DeviceWindows, Pane

if TYPE_CHECKING:
    from fieldstream.config.windows import WindowSettings

# The fields of schemas/window.v1.avsc. Times stay integer µs, the schema's timestamp-micros
# longs: the windows topic takes them as they are, and PostgreSQL converts them in its upsert.
# Four datetimes per aggregate, built here and taken apart again to encode it, were a
# measurable share of emitting one (about one aggregate per reading in a backlog).
WindowRecord = dict[str, Any]
TIME_FIELDS = ("window_start", "window_end", "first_time", "last_time")


def with_datetimes(record: WindowRecord) -> WindowRecord:
    """A copy of `record` with its times as timezone-aware UTC datetimes, for readers that want them."""
    return {**record, **{f: from_us(record[f]) for f in TIME_FIELDS}}


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # counted in every window it belongs to
    PARTLY_LATE = "partly_late"  # counted in its open windows; some had already closed
    LATE = "late"  # every window it belongs to had closed: not counted
    DUPLICATE = "duplicate"  # this (device_id, seq) was already counted: ignored


class WindowRef(NamedTuple):
    name: str  # spec name, e.g. tumbling_1m
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class LateMetric:
    """One metric of a reading that missed windows already emitted: for the late-data topic."""

    device_id: str
    device_type: str
    metric: str
    value: float
    event_time: datetime
    seq: int
    windows: tuple[WindowRef, ...]  # the closed windows it belonged to


@dataclass(frozen=True, slots=True)
class AddResult:
    outcome: Outcome
    late: tuple[LateMetric, ...] = ()  # non-empty for LATE and PARTLY_LATE
    closed: tuple[WindowRecord, ...] = ()  # final aggregates the new watermark closed

    @property
    def counted(self) -> bool:
        return self.outcome in (Outcome.ACCEPTED, Outcome.PARTLY_LATE)


# The results of nearly every reading, made once (they are immutable).
_ACCEPTED = AddResult(Outcome.ACCEPTED)
_DUPLICATE = AddResult(Outcome.DUPLICATE)


class WindowEngine:
    """The window configuration and the operations on a `DeviceWindows` (which holds the data)."""

    def __init__(
        self,
        specs: Sequence[WindowSpec],
        *,
        grace_s: float = 10.0,
        default_interval_s: float = 60.0,
        intervals_s: dict[str, float] | None = None,
        learn_interval: bool = True,
        interval_samples: int = 16,
        seq_runs: int = 16,
        measures: MeasureConfig | None = None,
        state_ttl_s: float = 7 * 86400.0,
    ) -> None:
        if not specs:
            raise ValueError("no window specs")
        self.specs = tuple(specs)
        self.pane_us = pane_seconds(self.specs) * US_PER_S
        self.grace_us = seconds_to_us(grace_s)
        self.default_interval_s = default_interval_s
        self.intervals_s = dict(intervals_s or {})
        self.learn_interval = learn_interval
        self.interval_samples = interval_samples
        self.seq_runs = seq_runs
        self.measures = measures or MeasureConfig()
        self.ttl_us = seconds_to_us(state_ttl_s)

    @classmethod
    def from_settings(cls, settings: WindowSettings) -> WindowEngine:
        return cls(
            parse_specs(settings.specs, settings.max_panes_per_window),
            grace_s=settings.grace_s,
            default_interval_s=settings.default_interval_s,
            intervals_s=settings.intervals_s,
            learn_interval=settings.learn_interval,
            interval_samples=settings.interval_samples,
            seq_runs=settings.seq_runs,
            measures=MeasureConfig(
                settings.exact_values, Mapping(settings.sketch_relative_accuracy, settings.sketch_max_bins)
            ),
            state_ttl_s=settings.state_ttl_s,
        )

    @staticmethod
    def new_state(device_id: str, device_type: str = "") -> DeviceWindows:
        return DeviceWindows(device_id, device_type)

    # -- adding readings -------------------------------------------------------------------

    def add(self, state: DeviceWindows, reading: Reading, now: datetime, *, defer: bool = False) -> AddResult:
        """Count `reading` (arrived at processing time `now`) and close what its event time closes.

        With `defer`, the closed windows are emitted later, by `emit_closed` (or `close_due`).
        Changes `state` only when the result is `counted`: store it back in the table then.
        """
        if reading.device_id != state.device_id:
            raise ValueError(f"reading of {reading.device_id!r} added to the state of {state.device_id!r}")
        t, now_us = to_us(reading.event_time), to_us(now)
        seq = reading.seq
        key = t // self.pane_us
        pane = state.panes.get(key)
        if pane is not None and pane.has(seq):
            return _DUPLICATE
        closed_to = state.closed_to
        if self._latest_end(t) <= closed_to:
            # Its pane has closed: either a replay of a reading counted then, or truly late.
            if seqs.contains(state.counted, seq):
                return _DUPLICATE
            return AddResult(Outcome.LATE, self._late(state, reading, self._windows(t)))
        missed = []
        early: tuple[WindowRecord, ...] = ()
        if self._earliest_end(t) <= closed_to:  # rare: some window holding t has closed
            missed = [w for w in self._windows(t) if w.end_us <= closed_to]
            # Its pane is shared with those windows: emit them now, before it holds this reading.
            early = self.emit_closed(state)

        if reading.device_type:
            state.device_type = reading.device_type
        if pane is None:
            pane = state.panes[key] = Pane()
        pane.remember(seq)
        self._count(state, pane, reading, t, seq)

        closed: tuple[WindowRecord, ...] = ()
        if state.watermark is None or t > state.watermark:
            if state.watermark is not None and self.learn_interval:
                self._learn_spacing(state, (t - state.watermark) / US_PER_S)
            state.watermark = t
            state.watermark_at = now_us
            if t - self.grace_us > closed_to:
                state.closed_to = t - self.grace_us
                if not defer:
                    closed = self.emit_closed(state)
        closed = early + closed
        if missed:
            return AddResult(Outcome.PARTLY_LATE, self._late(state, reading, missed), closed)
        return AddResult(Outcome.ACCEPTED, (), closed) if closed else _ACCEPTED

    def _count(self, state: DeviceWindows, pane: Pane, reading: Reading, t: int, seq: int) -> None:
        index = state.metric_index
        # Validation drops non-finite values; never let one poison a window.
        pane.add(t, seq, {index(name): value for name, value in reading.metrics.items() if isfinite(value)},
                 self.measures)
        point = _location(reading)
        if point is not None:
            pane.add_location(t, seq, point[0], point[1])

    def _learn_spacing(self, state: DeviceWindows, seconds: float) -> None:
        state.spacings.append(seconds)
        if len(state.spacings) > self.interval_samples:
            state.spacings.pop(0)

    # -- closing windows -------------------------------------------------------------------

    def close_due(
        self, state: DeviceWindows, now: datetime, *, flowing_since: datetime | None = None
    ) -> list[WindowRecord]:
        """Final aggregates of the windows that silence up to `now` closes (often none), and of
        those closed before but not emitted yet (`add(..., defer=True)`).

        `flowing_since`: processing time since which the input has been consumed without
        lag (after a restart, rebalance or backpressure pause); silence before it does
        not count. None when the stream has been flowing all along.
        Store `state` back in the table when this returns aggregates; otherwise the
        only change is a higher frontier, which a restart may safely forget.
        """
        if state.watermark is None:
            return []
        since = state.watermark_at if flowing_since is None else max(state.watermark_at, to_us(flowing_since))
        silence = to_us(now) - since
        if silence > 0:
            state.closed_to = max(state.closed_to, state.watermark + silence - self.grace_us)
        return list(self.emit_closed(state))

    def unemitted(self, state: DeviceWindows) -> bool:
        """True when a closed window waits for `emit_closed` (after `add(..., defer=True)`)."""
        return bool(state.panes) and self._next_boundary(state.emitted_to) <= state.closed_to

    def next_close(self, state: DeviceWindows) -> datetime | None:
        """When (processing time, if the device stays silent) close_due will next emit."""
        if not state.panes or state.watermark is None:
            return None
        end = min(
            start + spec.size_us
            for key in state.panes
            for spec in self.specs
            for start in spec.starts_us(key * self.pane_us)
            if start + spec.size_us > state.closed_to
        )
        return from_us(state.watermark_at + max(end + self.grace_us - state.watermark, 0))

    def expired(self, state: DeviceWindows, now: datetime) -> bool:
        """True when the device has nothing open and was silent for the TTL: drop its table entry."""
        return not state.panes and to_us(now) - state.watermark_at >= self.ttl_us

    def emit_closed(self, state: DeviceWindows) -> tuple[WindowRecord, ...]:
        """Emit every closed window not emitted yet that holds data; drop panes no window needs."""
        old, limit = state.emitted_to, state.closed_to
        if limit <= old:
            return ()
        state.emitted_to = limit
        if not state.panes or limit < self._next_boundary(old):
            return ()  # the usual case: no window of any spec ends in (old, limit]
        due: set[tuple[int, int, int]] = set()
        for i, spec in enumerate(self.specs):
            for key in state.panes:
                for start in spec.starts_us(key * self.pane_us):
                    if old < start + spec.size_us <= limit:
                        due.add((start + spec.size_us, i, start))
        records: list[WindowRecord] = []
        for _end, i, start in sorted(due):
            records.extend(self._emit(state, self.specs[i], start))
        for key in sorted(k for k in state.panes if self._latest_end(k * self.pane_us) <= limit):
            seqs.add_all(state.counted, state.panes.pop(key).seqs, self.seq_runs)
        return tuple(records)

    def _emit(self, state: DeviceWindows, spec: WindowSpec, start: int) -> list[WindowRecord]:
        end = start + spec.size_us
        panes = [state.panes[k] for k in range(start // self.pane_us, end // self.pane_us) if k in state.panes]
        expected = max(1, floor(spec.size_s / self.expected_interval_s(state) + 0.5))
        distance = _distance(panes)
        records = []
        exact = all(p.sketches is None for p in panes)
        for i, metric in enumerate(state.metrics):
            m = summarize(panes, i, self.measures, exact)
            if m is None:
                continue
            records.append({
                "device_id": state.device_id,
                "device_type": state.device_type,
                "metric": metric,
                "window": spec.name,
                "window_start": start,
                "window_end": end,
                "count": m.count,
                "sum": m.sum,
                "mean": m.mean,
                "min": m.min,
                "max": m.max,
                "variance": m.variance,
                "stddev": m.stddev,
                "first_value": m.first_value,
                "first_time": m.first_t,
                "last_value": m.last_value,
                "last_time": m.last_t,
                "median": m.median,
                "p95": m.p95,
                "range": m.range,
                "rate_of_change": m.rate_of_change,
                "expected": expected,
                "missing": max(0, expected - m.count),
                "quality": min(1.0, m.count / expected),
                "distance_m": distance,
            })
        return records

    def expected_interval_s(self, state: DeviceWindows) -> float:
        """Seconds between readings: configured for the device type, else learned, else the default."""
        given = self.intervals_s.get(state.device_type)
        if given:
            return given
        # Median spacing: robust to the occasional gap (missing readings) or burst.
        if self.learn_interval and len(state.spacings) >= max(1, self.interval_samples // 2):
            return median(state.spacings)
        return self.default_interval_s

    # -- window arithmetic -----------------------------------------------------------------

    def _windows(self, t: int) -> list[_Window]:
        return [_Window(spec.name, s, s + spec.size_us) for spec in self.specs for s in spec.starts_us(t)]

    def _earliest_end(self, t: int) -> int:
        """End of the first window to close among those holding t: the first window end after t."""
        return self._next_boundary(t)

    def _next_boundary(self, after: int) -> int:
        """The first window end, of any spec, later than `after`."""
        return min((after - spec.size_us) // spec.step_us * spec.step_us + spec.step_us + spec.size_us
                   for spec in self.specs)

    def _latest_end(self, t: int) -> int:
        """End of the last window to close among those holding t: after it, t's pane is done."""
        return max(t // spec.step_us * spec.step_us + spec.size_us for spec in self.specs)

    @staticmethod
    def _late(state: DeviceWindows, reading: Reading, windows: list[_Window]) -> tuple[LateMetric, ...]:
        refs = tuple(WindowRef(w.name, from_us(w.start_us), from_us(w.end_us)) for w in windows)
        return tuple(
            LateMetric(state.device_id, reading.device_type or state.device_type, name, value,
                       reading.event_time, reading.seq, refs)
            for name, value in reading.metrics.items()
            if isfinite(value)
        )


class _Window(NamedTuple):
    name: str
    start_us: int
    end_us: int


def _location(reading: Reading) -> tuple[float, float] | None:
    """A collar's position: the v2 `location` field, else lat/lon metrics (v1 devices)."""
    if reading.location is not None:
        return reading.location.lat, reading.location.lon
    lat, lon = reading.metrics.get("lat"), reading.metrics.get("lon")
    if lat is not None and lon is not None and isfinite(lat) and isfinite(lon):
        return lat, lon
    return None


def summarize(panes: Sequence[Pane], i: int, config: MeasureConfig, exact: bool | None = None) -> Summary | None:
    """Metric i's measures over these panes (a window's); None when none holds a value of it.
    `exact`: whether no pane is sketched, if the caller knows."""
    if exact is None:
        exact = all(pane.sketches is None for pane in panes)
    return _summary_exact(panes, i) if exact else _summary_sketched(panes, i, config)


def _summary_exact(panes: Sequence[Pane], i: int) -> Summary | None:
    """Metric i over a window whose panes are all exact; None when none holds a value of it."""
    values = array("d")
    first = last = None
    for pane in panes:
        column = pane.column(i)
        if column is not None:
            values += column
            first = first or pane
            last = pane
    if first is None or last is None:
        return None
    ends = first.ends(i) if first is last else first.ends(i)[:3] + last.ends(i)[3:]
    return summarize_exact(values.tolist(), ends)


def _summary_sketched(panes: Sequence[Pane], i: int, config: MeasureConfig) -> Summary | None:
    """Metric i over a window with a sketched pane: every pane's part merged into one sketch."""
    parts = []
    for pane in panes:
        if pane.sketches is None:
            column = pane.column(i)
            if column is not None:
                parts.append((column, pane.ends(i)))
        elif i < len(pane.sketches) and (part := pane.sketches[i]) is not None:
            parts.append(part)
    return summarize_sketched(parts, config.mapping) if parts else None


def _distance(panes: list[Pane]) -> float | None:
    """Metres along the window's points in event-time order (ties by seq); None without points."""
    points = []
    for pane in panes:
        loc = pane.locations
        if loc is not None:
            points.extend((loc[j], loc[j + 1], loc[j + 2], loc[j + 3]) for j in range(0, len(loc), 4))
    if not points:
        return None
    points.sort()
    return track_length_m((lat, lon) for _t, _seq, lat, lon in points)
