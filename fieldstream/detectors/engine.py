"""Every detector family for one device's stream of readings, plus its alert lifecycle.

`DeviceEngine` is the unit of state: one per device, picklable, meant to be a
value in a Faust changelog table keyed by device_id (the readings topic is
keyed by device_id, so a device's engine lives on the partition that sees its
readings). HalfSpaceTrees is the exception: one model per device type, held by
the worker (`HalfSpaceModels`) and passed in, because a model per device
would cost hundreds of KB each.

Per reading: the z-score and the rules each walk the reading's metrics once;
HalfSpaceTrees (and the drift test, when enabled) do real work only every n-th
reading (block means); the alert tracker is skipped entirely when nothing is
anomalous and no alert is open. About 8-14 µs per reading in all
(bench/detection_cost.py). Pickling an engine costs about three times that, so
checkpoint engines to their table every few seconds, not after every reading.

Offline detection needs no reading: a timer calls `check_offline(now)`. Give
`process` the arrival time (`seen_at`, e.g. the Kafka record timestamp) and
tick with the same clock; device clocks may be skewed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.alerts import AlertEvent, AlertTracker
from fieldstream.detectors.base import DEVICE, LOCATION, Detector, Verdict, finite, normalise
from fieldstream.detectors.drift import DriftDetector
from fieldstream.detectors.halfspace import HalfSpaceDetector
from fieldstream.detectors.rules import GeofenceRule, OfflineRule, RateRule, StuckRule, ThresholdRule
from fieldstream.detectors.zscore import ZScoreDetector
from fieldstream.schemas.reading import Reading

Polygon = Sequence[Sequence[float]]
GeofenceLookup = Callable[[str, str], Polygon | None]  # (device_id, device_type) → polygon

OFFLINE_KEY = (OfflineRule.name, DEVICE)


class DeviceEngine:
    """The detectors of one device, its offline watch and its open alerts."""

    def __init__(self, device_id: str, device_type: str, detectors: Iterable[Detector],
                 tracker: AlertTracker, offline: OfflineRule | None = None) -> None:
        self.device_id = device_id
        self.device_type = device_type
        self.detectors = list(detectors)
        self.tracker = tracker
        self.offline = offline
        self.readings = 0
        self.last_position: tuple[str, int, int, int] | None = None  # see first_time()

    @classmethod
    def from_settings(cls, settings: DetectionSettings, device_id: str, device_type: str,
                      geofence: Polygon | None = None) -> DeviceEngine:
        """The engine `settings` describe; `geofence` overrides settings.geofences for this device."""
        s = settings
        detectors: list[Detector] = [
            ZScoreDetector(threshold=s.z_threshold_by_type.get(device_type, s.z_threshold), warmup=s.warmup,
                           fading=s.z_fading, trend_fading=s.z_trend_fading, var_fading=s.z_var_fading,
                           shift_after=s.z_shift_after, rebaseline_after=s.z_rebaseline_after,
                           min_std_rel=s.z_min_std_rel, min_std_abs=s.z_min_std_abs, seed=s.seed),
            StuckRule(n=s.stuck_readings, epsilon=s.stuck_epsilon, seed=s.seed),
        ]
        bounds = s.thresholds.get(device_type)
        if bounds:
            detectors.append(ThresholdRule({m: (b.min, b.max, b.severity) for m, b in bounds.items()}, seed=s.seed))
        limits = s.rates.get(device_type)
        if limits:
            detectors.append(RateRule(limits, warmup=s.warmup, seed=s.seed))
        polygon = geofence or s.geofences.get(device_id) or s.geofences.get(device_type)
        if polygon:
            detectors.append(GeofenceRule(polygon, seed=s.seed))
        if s.drift_enabled and (not s.drift_device_types or device_type in s.drift_device_types):
            detectors.append(DriftDetector(block=s.drift_block, method=s.drift_method,
                                           threshold=s.drift_threshold, delta=s.drift_delta,
                                           adwin_delta=s.drift_adwin_delta, seed=s.seed))
        offline = OfflineRule(k=s.offline_k, min_readings=s.offline_min_readings,
                              interval_s=s.expected_interval_s.get(device_type), seed=s.seed)
        tracker = AlertTracker(device_id, device_type, s.cooldown_readings, s.cooldown_s)
        return cls(device_id, device_type, detectors, tracker, offline)

    def first_time(self, reading: Reading) -> bool:
        """Record where `reading` came from; False if this engine has already learned from it.

        A device's readings come from one partition, in offset order (and index order
        within a ReadingBatch), so a position at or before the last one is a replay: after
        a restart from a state checkpointed ahead of the committed offset, or a seek back.
        Learning a reading twice would skew the baselines and raise alerts nobody saw
        the first time. Readings without a source position (tests, replays from files)
        are always new.
        """
        if reading.offset < 0:
            return True
        position = (reading.topic, reading.partition, reading.offset, reading.index)
        last = getattr(self, "last_position", None)  # engines pickled before this field have none
        if last is not None and last[:2] == position[:2] and position[2:] <= last[2:]:
            return False
        self.last_position = position
        return True

    def process(self, reading: Reading, halfspace: HalfSpaceDetector | None = None,
                seen_at: datetime | None = None) -> list[AlertEvent]:
        """Score and learn one reading of this device; the alert events it causes, in order.

        `seen_at` is when it arrived (the Kafka record timestamp), on the clock the offline
        timer ticks with; without it the reading's event time is used for both.
        """
        reading = normalise(reading)
        t = reading.event_time
        tracker = self.tracker
        self.readings += 1
        events: list[AlertEvent] = []
        if self.offline is not None:
            self.offline.heard(seen_at or t)
            if OFFLINE_KEY in tracker.open:
                events.append(tracker.resolve(OFFLINE_KEY, t, "the device reported again"))
        verdicts: list[Verdict] = []
        for detector in self.detectors:
            found = detector.score_learn_one(reading)
            if found:
                verdicts += found
        if halfspace is not None:
            found = halfspace.score_learn_one(reading)
            if found:
                verdicts += found
        if verdicts or tracker.open:
            events += tracker.observe(t, verdicts, self._looked_at(reading, halfspace))
        return events

    def check_offline(self, now: datetime) -> list[AlertEvent]:
        """Timer entry point: open an offline alert if the device has been silent too long.

        The alert's time is the deadline the device missed (last reading + k × interval),
        not `now`, so its id does not depend on when the timer happened to fire.
        """
        off = self.offline
        if off is None or OFFLINE_KEY in self.tracker.open:
            return []
        verdict = off.check(now)
        deadline = off.deadline()
        if verdict is None or deadline is None:
            return []
        return [self.tracker.open_alert(verdict, deadline)]

    def _looked_at(self, reading: Reading, halfspace: HalfSpaceDetector | None) -> Callable[[str, str], bool]:
        """Whether `reading` is evidence that an open alert's condition is over."""
        drift_fed = any(isinstance(d, DriftDetector) and d.fed for d in self.detectors)
        hst_fed = halfspace is not None and halfspace.fed

        def looked_at(detector: str, metric: str) -> bool:
            if detector == OfflineRule.name:
                return False  # only a reading resolves it, handled in process()
            if detector == HalfSpaceDetector.name:
                return hst_fed
            if detector == DriftDetector.name and not drift_fed:
                return False
            if metric == LOCATION:
                loc = reading.location
                return loc is not None and finite(loc.lat) is not None and finite(loc.lon) is not None
            if metric == DEVICE:
                return True
            return finite(reading.metrics.get(metric)) is not None

        return looked_at


class HalfSpaceModels:
    """The worker's HalfSpaceTrees, one per device type, created on first use."""

    def __init__(self, settings: DetectionSettings) -> None:
        self.settings = settings
        self.models: dict[str, HalfSpaceDetector] = {}

    def for_type(self, device_type: str) -> HalfSpaceDetector | None:
        s = self.settings
        if not s.hst_enabled:
            return None
        model = self.models.get(device_type)
        if model is None:
            model = self.models[device_type] = HalfSpaceDetector(
                sample_every=s.hst_sample_every, n_trees=s.hst_n_trees, height=s.hst_height,
                window_size=s.hst_window, q=s.hst_quantile, warmup_samples=s.hst_warmup_samples,
                device_warmup_blocks=s.hst_device_warmup_blocks, persistence=s.hst_persistence, seed=s.seed)
        return model


class FleetEngine:
    """All devices' engines and the per-type models: a replay, a test, or one worker's share."""

    def __init__(self, settings: DetectionSettings, geofence_for: GeofenceLookup | None = None) -> None:
        self.settings = settings
        self.geofence_for = geofence_for
        self.devices: dict[str, DeviceEngine] = {}
        self.models = HalfSpaceModels(settings)

    def engine(self, device_id: str, device_type: str) -> DeviceEngine:
        eng = self.devices.get(device_id)
        if eng is None:
            polygon = self.geofence_for(device_id, device_type) if self.geofence_for else None
            eng = self.devices[device_id] = DeviceEngine.from_settings(self.settings, device_id, device_type, polygon)
        return eng

    def process(self, reading: Reading, seen_at: datetime | None = None) -> list[AlertEvent]:
        eng = self.engine(reading.device_id, reading.device_type)
        return eng.process(reading, self.models.for_type(reading.device_type), seen_at)

    def tick(self, now: datetime) -> list[AlertEvent]:
        """The offline timer: every device's check at `now`."""
        events: list[AlertEvent] = []
        for eng in self.devices.values():
            found = eng.check_offline(now)
            if found:
                events += found
        return events
