"""The engine against a reference computed independently, over a seeded messy stream.

The reference knows nothing of panes, accumulators or sketches: it replays the
closing rule (a device's window [s, e) is closed once its frontier, raised by
the newest counted event time and by silence at each tick, reaches e + grace),
remembers which readings each window received, and computes every measure from
the raw values with `fractions`, `statistics` and numpy.
"""

from __future__ import annotations

import io
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import fastavro

import numpy as np
import pytest

import fieldstream.schemas
from fieldstream.schemas.reading import Reading
from fieldstream.windows import Outcome, WindowEngine, parse_specs
from fieldstream.windows.engine import TIME_FIELDS, with_datetimes
from fieldstream.windows.measures import MeasureConfig
from fieldstream.windows.sketch import Mapping
from tests.unit.windowstream import INTERVALS, Event, drive, generate, record_key

GRACE_S = 10.0
CONFIGS = {
    "default": ["tumbling:60", "hopping:300:60"],
    "mixed": ["tumbling:60", "hopping:120:30", "tumbling:300"],  # 30 s panes
}


@dataclass
class _Device:
    watermark: float | None = None  # seconds since the epoch
    watermark_at: float = 0.0
    frontier: float = -math.inf
    counted: set[int] | None = None


def _seconds(dt: datetime) -> float:
    return dt.timestamp()


def _windows(specs: list[tuple[str, int, int]], t: float) -> list[tuple[str, int, int]]:
    """Brute force: every epoch-aligned [s, s + size) holding t."""
    out = []
    for name, size, step in specs:
        k = int(t // step) - size // step - 1
        while k * step <= t:
            if k * step <= t < k * step + size:
                out.append((name, k * step, k * step + size))
            k += 1
    return out


def reference(events: list[Event], spec_texts: list[str], grace_s: float = GRACE_S):
    specs = [(s.name, s.size_s, s.step_s) for s in parse_specs(spec_texts)]
    devices: dict[str, _Device] = defaultdict(lambda: _Device(counted=set()))
    members: dict[tuple[str, str, int, int], list[Reading]] = defaultdict(list)
    outcomes: list[tuple[Outcome, frozenset] | None] = []
    for event in events:
        now = _seconds(event.at)
        if event.reading is None:
            for dev in devices.values():
                if dev.watermark is not None:
                    dev.frontier = max(dev.frontier, dev.watermark + (now - dev.watermark_at) - grace_s)
            outcomes.append(None)
            continue
        r = event.reading
        dev = devices[r.device_id]
        t = _seconds(r.event_time)
        windows = _windows(specs, t)
        closed = frozenset((name, s, e) for name, s, e in windows if e <= dev.frontier)
        if r.seq in dev.counted:
            outcomes.append((Outcome.DUPLICATE, frozenset()))
        elif len(closed) == len(windows):
            outcomes.append((Outcome.LATE, closed))
        else:
            dev.counted.add(r.seq)
            for name, s, e in windows:
                if (name, s, e) not in closed:
                    members[(r.device_id, name, s, e)].append(r)
            outcomes.append((Outcome.PARTLY_LATE if closed else Outcome.ACCEPTED, closed))
            if dev.watermark is None or t > dev.watermark:
                dev.watermark, dev.watermark_at = t, now
                dev.frontier = max(dev.frontier, t - grace_s)
    return outcomes, members


def _haversine(points: list[tuple[float, float]]) -> float:
    lat = np.radians([p[0] for p in points])
    lon = np.radians([p[1] for p in points])
    a = np.sin(np.diff(lat) / 2) ** 2 + np.cos(lat[:-1]) * np.cos(lat[1:]) * np.sin(np.diff(lon) / 2) ** 2
    return float(np.sum(2 * 6_371_008.8 * np.arcsin(np.sqrt(a))))


def expected_records(members) -> dict[tuple, dict]:
    out = {}
    for (device_id, name, s, e), readings in members.items():
        readings = sorted(readings, key=lambda r: (r.event_time, r.seq))
        kind = readings[0].device_type
        points = [(r.location.lat, r.location.lon) for r in readings if r.location is not None]
        for metric in sorted({m for r in readings for m in r.metrics}):
            timed = [(r.event_time, r.metrics[metric]) for r in readings if metric in r.metrics]
            values = [v for _, v in timed]
            (t_first, v_first), (t_last, v_last) = timed[0], timed[-1]
            seconds = (t_last - t_first).total_seconds()
            expected = (e - s) // int(INTERVALS[kind])
            window_start = datetime.fromtimestamp(s, UTC)
            out[(device_id, metric, name, window_start)] = {
                "device_type": kind,
                "count": len(values),
                "sum": float(sum(map(Fraction, values))),
                "mean": statistics.mean(values),
                "min": min(values),
                "max": max(values),
                "variance": statistics.pvariance(values),
                "stddev": statistics.pstdev(values),
                "first_value": v_first,
                "first_time": t_first,
                "last_value": v_last,
                "last_time": t_last,
                "median": statistics.median(values),
                "p95": float(np.percentile(values, 95)),
                "range": max(values) - min(values),
                "rate_of_change": (v_last - v_first) / seconds if seconds else 0.0,
                "expected": expected,
                "missing": max(0, expected - len(values)),
                "quality": min(1.0, len(values) / expected),
                "distance_m": _haversine(points) if points else None,
                "window_end": datetime.fromtimestamp(e, UTC),
            }
    return out


EXACT = ("device_type", "count", "sum", "min", "max", "first_value", "first_time", "last_value", "last_time",
         "range", "expected", "missing", "median", "p95", "window_end")
CLOSE = ("mean", "variance", "stddev", "rate_of_change", "quality", "distance_m")


@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_engine_matches_reference(config: str, seed: int) -> None:
    events = generate(seed)
    engine = WindowEngine(parse_specs(CONFIGS[config]), grace_s=GRACE_S, intervals_s=INTERVALS)
    run = drive(engine, events)
    want_outcomes, members = reference(events, CONFIGS[config])

    # Every delivery classified alike; late ones reported per metric with the windows they missed.
    kinds = defaultdict(int)
    for event, got, want in zip(events, run.results, want_outcomes):
        if want is None:
            continue
        outcome, missed = want
        kinds[outcome] += 1
        assert got.outcome == outcome, (event, got)
        if outcome in (Outcome.LATE, Outcome.PARTLY_LATE):
            finite = sorted(event.reading.metrics)
            assert sorted(m.metric for m in got.late) == finite
            for late in got.late:
                got_missed = {(w.name, int(w.start.timestamp()), int(w.end.timestamp())) for w in late.windows}
                assert got_missed == set(missed)
        else:
            assert got.late == ()
    # The stream really is messy.
    assert all(kinds[o] > 5 for o in Outcome), kinds

    # Exactly one final aggregate per device, metric and window, and the right one.
    # Times are µs, as the schema's timestamp-micros longs; the reference speaks datetimes.
    records = [with_datetimes(r) for r in run.records]
    keys = [record_key(r) for r in records]
    assert len(keys) == len(set(keys)), "a window was emitted twice"
    want = expected_records(members)
    assert set(keys) == set(want)
    schema = json.loads((Path(fieldstream.schemas.__file__).parent / "window.v1.avsc").read_text())
    fields = [f["name"] for f in schema["fields"]]
    parsed = fastavro.parse_schema(schema)
    for raw, record in zip(run.records, records, strict=True):
        assert list(raw) == fields
        assert all(type(raw[name]) is int for name in TIME_FIELDS)
        fastavro.schemaless_writer(io.BytesIO(), parsed, raw)  # types fit the published schema
        expected = want[record_key(record)]
        for name in EXACT:
            assert record[name] == expected[name], (record_key(record), name, record[name], expected[name])
        for name in CLOSE:
            if expected[name] is None:
                assert record[name] is None
            else:
                assert math.isclose(record[name], expected[name], rel_tol=1e-9, abs_tol=1e-12), \
                    (record_key(record), name, record[name], expected[name])
    # Nothing left open once the stream has been silent long enough.
    assert all(not s.panes for s in run.states.values())


def test_sketched_windows_match_reference_within_the_sketch_bound() -> None:
    """Force sketches (2 exact values per pane): moments stay exact to 1e-9, quantiles to α."""
    events = generate(6)
    alpha = 0.01
    measures = MeasureConfig(exact_values=2, mapping=Mapping(alpha, 1024))
    engine = WindowEngine(parse_specs(CONFIGS["default"]), grace_s=GRACE_S, intervals_s=INTERVALS,
                          measures=measures)
    run = drive(engine, events)
    _, members = reference(events, CONFIGS["default"])
    want = expected_records(members)
    records = [with_datetimes(r) for r in run.records]
    assert {record_key(r) for r in records} == set(want)
    values_of = {}
    for (device_id, name, s, e), readings in members.items():
        for r in readings:
            for metric, value in r.metrics.items():
                values_of.setdefault((device_id, metric, name, datetime.fromtimestamp(s, UTC)), []).append(value)
    for record in records:
        key = record_key(record)
        expected = want[key]
        for name in ("count", "min", "max", "first_value", "first_time", "last_value", "last_time", "range",
                     "expected", "missing"):
            assert record[name] == expected[name], (key, name)
        for name in ("sum", "mean", "variance", "stddev", "rate_of_change", "quality"):
            assert math.isclose(record[name], expected[name], rel_tol=1e-9, abs_tol=1e-9), (key, name)
        ordered = sorted(values_of[key])
        for q, name in ((0.5, "median"), (0.95, "p95")):
            h = q * (len(ordered) - 1)
            lo, hi = ordered[math.floor(h)], ordered[math.ceil(h)]
            gap = max(lo - record[name], record[name] - hi, 0.0)  # distance outside [lo, hi]
            assert gap <= alpha * max(abs(lo), abs(hi)) + 1e-9, (key, name, record[name], lo, hi)
