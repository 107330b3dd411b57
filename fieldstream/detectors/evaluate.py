"""Detection quality on labelled data: event-level recall, precision, F1 and delay.

Scoring (event level, as in the issue):
- a labelled window [start, end] is *detected* if an alert opens for its series
  within [start, end + tolerance] (for a metric anomaly: on that metric, or a
  multivariate alert of the device; geofence and offline windows: only that
  detector's alerts count);
- an alert opening that matches no label is a *false positive*;
- recall = detected / labels, precision = detected / (detected + false positives);
- delay = first matching opening − start, in seconds and in the series' readings
  received in between.

Per kind, a false positive is charged to every kind its detector could have
caught (KIND_DETECTORS), so per-kind precision is pessimistic; the overall row
counts each false positive once.

Inputs: the NAB series (one file = one device, metric "value") and the fleet
simulator (`fieldstream.devices.fleet`), replayed through a fresh FleetEngine
with the offline timer driven in event time.
"""

from __future__ import annotations

import bisect
import csv
import json
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.alerts import AlertEvent
from fieldstream.detectors.engine import FleetEngine, GeofenceLookup
from fieldstream.schemas.reading import Reading

MULTIVARIATE = frozenset({"halfspace"})
# Label kinds about the whole device, and the only detectors whose alerts detect them.
DEVICE_KIND_DETECTORS: dict[str, frozenset[str]] = {
    "geofence": frozenset({"geofence"}),
    "offline": frozenset({"offline"}),
}
# Which detectors could catch each kind: their unmatched openings are that kind's false positives.
KIND_DETECTORS: dict[str, frozenset[str]] = {
    "spike": frozenset({"zscore", "rate", "threshold", "halfspace"}),
    "level_shift": frozenset({"zscore", "threshold", "halfspace"}),
    "drift": frozenset({"drift", "zscore", "halfspace"}),
    "noise_burst": frozenset({"zscore", "halfspace"}),
    "stuck": frozenset({"stuck"}),
    "geofence": frozenset({"geofence"}),
    "offline": frozenset({"offline"}),
    "anomaly": frozenset({"zscore", "rate", "threshold", "halfspace", "drift", "stuck", "offline"}),  # NAB
}


@dataclass(frozen=True, slots=True)
class Label:
    series: str  # device id (simulator) or series name (NAB)
    kind: str
    metric: str  # metric name, "location", "*", or "" for any
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class Opening:
    series: str
    detector: str
    metric: str
    time: datetime

    @classmethod
    def of(cls, event: AlertEvent) -> Opening:
        return cls(event.device_id, event.detector, event.metric, event.event_time)


def matches(label: Label, opening: Opening, tolerance: timedelta) -> bool:
    if opening.series != label.series or not label.start <= opening.time <= label.end + tolerance:
        return False
    only = DEVICE_KIND_DETECTORS.get(label.kind)
    if only is not None:
        return opening.detector in only
    return not label.metric or opening.metric == label.metric or opening.detector in MULTIVARIATE


@dataclass
class Tally:
    """Counts for one row of the report (a kind, a series, or everything)."""

    labels: int = 0
    detected: int = 0
    false_positives: int = 0
    after_end: int = 0  # detected only in the tolerance after the window
    delays_readings: list[int] = field(default_factory=list)
    delays_s: list[float] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.labels if self.labels else None

    @property
    def precision(self) -> float | None:
        flagged = self.detected + self.false_positives
        return self.detected / flagged if flagged else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def median_delay_readings(self) -> float | None:
        return statistics.median(self.delays_readings) if self.delays_readings else None

    @property
    def median_delay_s(self) -> float | None:
        return statistics.median(self.delays_s) if self.delays_s else None

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "detected": self.detected, "false_positives": self.false_positives,
                "detected_after_end": self.after_end,
                "recall": self.recall, "precision": self.precision, "f1": self.f1,
                "median_delay_readings": self.median_delay_readings, "median_delay_s": self.median_delay_s}


@dataclass
class Evaluation:
    by_kind: dict[str, Tally]
    by_series: dict[str, Tally]
    overall: Tally
    fp_by_detector: dict[str, int]
    missed: list[Label]
    detected_by: dict[str, dict[str, int]]  # kind → detector of the first matching opening → labels

    def to_dict(self) -> dict[str, Any]:
        return {
            "overall": self.overall.to_dict(),
            "by_kind": {k: t.to_dict() for k, t in sorted(self.by_kind.items())},
            "by_series": {k: t.to_dict() for k, t in sorted(self.by_series.items())},
            "false_positives_by_detector": dict(sorted(self.fp_by_detector.items())),
            "detected_by": {k: dict(sorted(v.items())) for k, v in sorted(self.detected_by.items())},
            "missed": len(self.missed),
        }


def score(labels: Sequence[Label], openings: Sequence[Opening], tolerance_s: float,
          reading_times: dict[str, list[datetime]], group: Callable[[str], str] = lambda s: s,
          rows: Iterable[str] = ()) -> Evaluation:
    """Match openings to labels; `reading_times` (sorted, per series) turns delays into readings;
    `group` maps a series to its report row (e.g. a device id to its device type); `rows` are
    report rows to show even if they have neither labels nor alerts."""
    tolerance = timedelta(seconds=tolerance_s)
    per_series: dict[str, list[Opening]] = defaultdict(list)
    for o in openings:
        per_series[o.series].append(o)
    for found in per_series.values():
        found.sort(key=lambda o: o.time)
    by_kind: dict[str, Tally] = defaultdict(Tally)
    by_series: dict[str, Tally] = defaultdict(Tally)
    for row in rows:
        by_series[row] = Tally()
    overall = Tally()
    matched: set[int] = set()
    missed: list[Label] = []
    detected_by: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for label in labels:
        found = per_series.get(label.series, [])
        lo = bisect.bisect_left(found, label.start, key=lambda o: o.time)
        hi = bisect.bisect_right(found, label.end + tolerance, key=lambda o: o.time)
        hits = [o for o in found[lo:hi] if matches(label, o, tolerance)]
        matched.update(id(o) for o in hits)
        targets = (by_kind[label.kind], by_series[group(label.series)], overall)
        for row in targets:
            row.labels += 1
        if not hits:
            missed.append(label)
            continue
        first = hits[0].time
        detected_by[label.kind][hits[0].detector] += 1
        times = reading_times.get(label.series, [])
        in_between = bisect.bisect_left(times, first) - bisect.bisect_left(times, label.start)
        for row in targets:
            row.detected += 1
            row.after_end += first > label.end
            row.delays_s.append((first - label.start).total_seconds())
            row.delays_readings.append(in_between)
    fp_by_detector: dict[str, int] = defaultdict(int)
    kinds = set(by_kind)
    for o in openings:
        if id(o) in matched:
            continue
        fp_by_detector[o.detector] += 1
        overall.false_positives += 1
        by_series[group(o.series)].false_positives += 1
        for kind in kinds:
            if o.detector in KIND_DETECTORS.get(kind, ()):
                by_kind[kind].false_positives += 1
    return Evaluation(dict(by_kind), dict(by_series), overall, dict(fp_by_detector), missed,
                      {k: dict(v) for k, v in detected_by.items()})


@dataclass
class Replay:
    openings: list[Opening]
    reading_times: dict[str, list[datetime]]
    events: int
    readings: int


Item = Reading | tuple[Reading, datetime | None]  # a reading, or (reading, when it arrived)


def replay(items: Iterable[Item], engine: FleetEngine, tick_s: float = 10.0,
           until: datetime | None = None) -> Replay:
    """Run readings through the engine, firing the offline timer every `tick_s`.

    The timer runs on arrival times where they are given (as a worker's wall clock
    would), else on event times, and not past `until`: when a simulation stops,
    stragglers still arrive, but the silence after the end is not an outage.
    """
    openings: list[Opening] = []
    times: dict[str, list[datetime]] = defaultdict(list)
    events = count = 0
    tick = timedelta(seconds=tick_s)
    next_tick: datetime | None = None

    def collect(found: list[AlertEvent]) -> None:
        nonlocal events
        events += len(found)
        openings.extend(Opening.of(e) for e in found if e.state == "open")

    for item in items:
        reading, seen_at = item if isinstance(item, tuple) else (item, None)
        clock = seen_at or reading.event_time
        if tick_s > 0:
            if next_tick is None:
                next_tick = clock + tick
            while clock >= next_tick and (until is None or next_tick <= until):
                collect(engine.tick(next_tick))
                next_tick += tick
        collect(engine.process(reading, seen_at))
        times[reading.device_id].append(reading.event_time)
        count += 1
    for series in times.values():
        series.sort()  # out-of-order readings
    return Replay(openings, dict(times), events, count)


# --- NAB ----------------------------------------------------------------------------------


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)  # NAB times are naive UTC


def nab_series(path: Path) -> dict[str, list[Label]]:
    """CSV file name → its labelled windows (labels.json keys carry a folder prefix)."""
    raw = json.loads((path / "labels.json").read_text())
    out: dict[str, list[Label]] = {}
    for key, windows in raw.items():
        name = Path(key).name
        if (path / name).exists():
            series = Path(name).stem
            out[name] = [Label(series, "anomaly", "", _utc(s), _utc(e)) for s, e in windows]
    return out


def nab_readings(csv_path: Path, device_type: str = "nab") -> Iterator[Reading]:
    series = csv_path.stem
    with csv_path.open(newline="") as f:
        for seq, row in enumerate(csv.DictReader(f)):
            yield Reading(series, device_type, _utc(row["timestamp"]), seq, {"value": float(row["value"])})


def evaluate_nab(path: Path, settings: DetectionSettings, tolerance_s: float | None = None,
                 tick_s: float = 60.0) -> tuple[Evaluation, dict[str, int]]:
    """Each series through its own fresh engine; also returns readings per series."""
    tol = settings.eval_tolerance_s if tolerance_s is None else tolerance_s
    labels: list[Label] = []
    openings: list[Opening] = []
    times: dict[str, list[datetime]] = {}
    sizes: dict[str, int] = {}
    for name, series_labels in sorted(nab_series(path).items()):
        result = replay(nab_readings(path / name), FleetEngine(settings), tick_s)
        labels += series_labels
        openings += result.openings
        times.update(result.reading_times)
        sizes[Path(name).stem] = result.readings
    return score(labels, openings, tol, times, rows=sizes), sizes


# --- the fleet simulator --------------------------------------------------------------------


def sim_readings(config: Any) -> Iterator[tuple[Reading, datetime | None]]:
    """The simulator's readings as the pipeline would decode them, with when each is sent
    (its arrival time); poison records are skipped."""
    from fieldstream.devices.fleet import simulate_fleet

    for event in simulate_fleet(config):
        if event.bad_value is not None or event.record is None:
            continue
        yield Reading.from_record(event.record, schema_version=event.schema_version), event.send_time


def sim_geofence(device_id: str, device_type: str) -> Sequence[Sequence[float]] | None:
    """A simulated collar's paddock polygon, as the fleet module exposes it (a plain function: picklable)."""
    from fieldstream.devices.paddocks import collar_paddock

    return collar_paddock(device_id).polygon if device_type == "collar" else None


def evaluate_fleet(config: Any, settings: DetectionSettings, tolerance_s: float | None = None,
                   tick_s: float = 10.0,
                   readings: Iterable[Item] | None = None,
                   labels: Iterable[Any] | None = None,
                   geofences: GeofenceLookup | None = None) -> tuple[Evaluation, Replay]:
    """Replay a simulated fleet and score it against its labels (AnomalyLabel-like objects).

    `readings`, `labels` and `geofences` default to the real simulator's; tests pass fakes.
    """
    from fieldstream.devices import fleet

    tol = settings.eval_tolerance_s if tolerance_s is None else tolerance_s
    source = sim_readings(config) if readings is None else readings
    engine = FleetEngine(settings, sim_geofence if geofences is None else geofences)
    end = None
    if config is not None and config.start is not None and config.duration_s is not None:
        end = config.start + timedelta(seconds=config.duration_s)
    result = replay(source, engine, tick_s, until=end)
    raw = fleet.fleet_labels(config) if labels is None else labels
    types: dict[str, str] = {}
    ours: list[Label] = []
    for lb in raw:
        types[lb.device_id] = lb.device_type
        ours.append(Label(lb.device_id, lb.kind, lb.metric, lb.start, lb.end))
    for eng in engine.devices.values():
        types[eng.device_id] = eng.device_type
    evaluation = score(ours, result.openings, tol, result.reading_times, group=lambda s: types.get(s, "?"),
                       rows=set(types.values()))
    return evaluation, result


# --- report -------------------------------------------------------------------------------


def _fmt(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:.1f}%" if pct else f"{x:.1f}"


def format_table(title: str, rows: dict[str, Tally], overall: Tally | None = None) -> str:
    head = f"{title:<36} {'labels':>6} {'found':>6} {'late':>5} {'FP':>5} {'recall':>7} {'prec.':>7} {'F1':>7} " \
           f"{'delay rd':>8} {'delay s':>8}"
    lines = [head, "-" * len(head)]
    items = list(sorted(rows.items())) + ([("all", overall)] if overall is not None else [])
    for name, t in items:
        lines.append(f"{name:<36} {t.labels:>6} {t.detected:>6} {t.after_end:>5} {t.false_positives:>5} "
                     f"{_fmt(t.recall, True):>7} "
                     f"{_fmt(t.precision, True):>7} {_fmt(t.f1, True):>7} {_fmt(t.median_delay_readings):>8} "
                     f"{_fmt(t.median_delay_s):>8}")
    return "\n".join(lines)
