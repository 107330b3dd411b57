"""Alert lifecycle: per-reading verdicts in, `open` / `resolved` alert events out.

An anomaly that lasts many readings is one alert: the first anomalous verdict
for a (detector, metric) of a device opens it, later ones only refresh it, and
it resolves after a cool-down of `cooldown_readings` consecutive normal
readings (or, if `cooldown_s` is set, that many seconds without an anomalous
one). A reading counts as normal for an alert only if the alert's detector
actually looked at that metric in it, so a missing metric or a detector that
scores every n-th reading does not resolve anything by accident.

alert_id hashes the device, detector, metric and the opening reading's time,
so replaying the same readings yields the same ids (idempotent downstream).
The tracker is plain data and pickles into the device's changelog entry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

from fieldstream.detectors.base import SEVERITY_RANK, Severity, Verdict

State = Literal["open", "resolved"]
Key = tuple[str, str]  # (detector, metric)


def alert_id(device_id: str, detector: str, metric: str, opened_at: datetime) -> str:
    """Deterministic id: sha1 of device, detector, metric and the opening time in µs since the epoch."""
    micros = round(opened_at.timestamp() * 1_000_000)
    return hashlib.sha1(f"{device_id}\x1f{detector}\x1f{metric}\x1f{micros}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AlertEvent:
    """One record of the alert topic (fieldstream/schemas/alert.v1.avsc)."""

    alert_id: str
    state: State
    device_id: str
    device_type: str
    event_time: datetime  # the reading (or deadline) that opened or resolved it, UTC
    detector: str
    metric: str
    value: float | None
    score: float | None
    threshold: float | None
    severity: Severity
    message: str

    def to_record(self) -> dict[str, Any]:
        """The Avro record; fastavro writes a tz-aware datetime as timestamp-micros."""
        return asdict(self)


class _Open:
    """An open alert: what it opened with and what it has seen since."""

    __slots__ = ("alert_id", "opened_at", "last_anomaly", "normal", "threshold", "severity",
                 "peak_score", "peak_value", "anomalous")

    def __init__(self, aid: str, v: Verdict, t: datetime) -> None:
        self.alert_id = aid
        self.opened_at = t
        self.last_anomaly = t
        self.normal = 0
        self.threshold = v.threshold
        self.severity = v.severity
        self.peak_score = v.score
        self.peak_value = v.value
        self.anomalous = 1

    def refresh(self, v: Verdict, t: datetime) -> None:
        self.last_anomaly = t
        self.normal = 0
        self.anomalous += 1
        if SEVERITY_RANK[v.severity] > SEVERITY_RANK[self.severity]:
            self.severity = v.severity
        if v.score is not None and (self.peak_score is None or v.score > self.peak_score):
            self.peak_score = v.score
            self.peak_value = v.value


class AlertTracker:
    """Open alerts of one device, keyed by (detector, metric)."""

    def __init__(self, device_id: str, device_type: str, cooldown_readings: int = 5,
                 cooldown_s: float = 0.0) -> None:
        self.device_id = device_id
        self.device_type = device_type
        self.cooldown_readings = cooldown_readings
        self.cooldown_s = cooldown_s
        self.open: dict[Key, _Open] = {}

    def observe(self, t: datetime, verdicts: list[Verdict],
                looked_at: Callable[[str, str], bool]) -> list[AlertEvent]:
        """Events caused by one reading at `t`: `verdicts` are its anomalies;
        `looked_at(detector, metric)` tells whether the reading counts as normal evidence."""
        if not verdicts and not self.open:
            return []
        events: list[AlertEvent] = []
        flagged: set[Key] = set()
        for v in verdicts:
            key = (v.detector, v.metric)
            if key in flagged:
                continue
            flagged.add(key)
            current = self.open.get(key)
            if current is None:
                events.append(self.open_alert(v, t))
            else:
                current.refresh(v, t)
        for key, current in list(self.open.items()):
            if key in flagged or not looked_at(*key):
                continue
            current.normal += 1
            quiet_s = (t - current.last_anomaly).total_seconds()
            if current.normal >= self.cooldown_readings or (self.cooldown_s and quiet_s >= self.cooldown_s):
                events.append(self.resolve(key, t, f"{current.normal} normal readings"))
        return events

    def open_alert(self, v: Verdict, t: datetime) -> AlertEvent:
        """Open an alert for the verdict's key (the caller checked none is open)."""
        aid = alert_id(self.device_id, v.detector, v.metric, t)
        self.open[(v.detector, v.metric)] = _Open(aid, v, t)
        return AlertEvent(aid, "open", self.device_id, self.device_type, t, v.detector, v.metric,
                          v.value, v.score, v.threshold, v.severity, v.message)

    def is_open(self, detector: str, metric: str) -> bool:
        return (detector, metric) in self.open

    def resolve(self, key: Key, t: datetime, why: str) -> AlertEvent:
        current = self.open.pop(key)
        detector, metric = key
        peak = "" if current.peak_score is None else f"; peak score {current.peak_score:.4g}"
        return AlertEvent(
            current.alert_id, "resolved", self.device_id, self.device_type, t, detector, metric,
            current.peak_value, current.peak_score, current.threshold, current.severity,
            f"resolved after {why} ({current.anomalous} anomalous{peak})",
        )
