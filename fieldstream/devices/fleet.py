"""A deterministic fleet of simulated devices with labelled anomalies (no Kafka here).

`simulate_fleet(config)` yields the events a fleet would send, in send order;
`fleet_labels(config)` lists every anomaly injected into them. Both are pure
functions of the config: each device draws from its own `random.Random`
streams seeded from (seed, device index), so the same config gives the same
events and labels, and adding devices does not change the existing ones.

Time: the config's `start` is required (the CLI derives it from the clock;
the generator never reads one). Each device samples every 10-60 s (scaled by
`interval_scale`), with jitter; event times are `start` + true time + the
device's clock offset, rounded to the millisecond.

Labels: `start`/`end` are event times (device clock) of the first and last
*sent* reading the anomaly changed, so they match what the pipeline sees.
A spike is one reading (start == end). `geofence` labels (metric "location")
span the readings whose position is outside the collar's paddock: a geofence
rule gets each collar's polygon from `collar_paddock(device_id)` (all of them:
`PADDOCKS`), defined in `fieldstream.devices.paddocks` and re-exported here.
`offline` labels (metric "*") run from the first reading the device did not
take to the first one it took again (or the last missed one, if the run ended
first). An anomaly none of whose readings were sent (all lost to dropouts, or
the run stopped first) has no label.

Disorder: an out-of-order reading is sent 1.5-4 sampling intervals late, after
later readings of its device; a late one `late_delay_s` late (beyond a window's
allowed lateness). Dropouts lose readings (the device's seq still advances).
Poison records (`bad_fraction` of all events) are bytes no decoder accepts,
keyed by a real device id.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fieldstream.devices.paddocks import PADDOCKS, Paddock, collar_paddock, delta_m, offset_m
from fieldstream.devices.signals import DEVICE_TYPES, METRICS, SITE_NAME, MetricModel, solar_hour

__all__ = [
    "ANOMALY_KINDS", "PADDOCKS", "AnomalyLabel", "DeviceSpec", "FleetConfig", "FleetRun", "SimEvent",
    "collar_paddock", "fleet_devices", "fleet_labels", "natural_rate", "simulate_fleet",
]

ANOMALY_KINDS: tuple[str, ...] = ("spike", "level_shift", "drift", "stuck", "noise_burst", "geofence", "offline")
#: Kinds that change one numeric metric (the others change location or silence the device).
METRIC_KINDS = frozenset({"spike", "level_shift", "drift", "stuck", "noise_burst"})
#: How many readings (sampling slots, for offline) each kind lasts.
KIND_READINGS: dict[str, tuple[int, int]] = {
    "spike": (1, 1), "level_shift": (30, 120), "drift": (60, 240), "stuck": (20, 60),
    "noise_burst": (15, 45), "geofence": (24, 60), "offline": (20, 80),
}
POISON_KINDS: tuple[str, ...] = ("json_text", "empty", "truncated", "bad_magic", "unknown_schema", "garbage")
FIRMWARE_V2: tuple[str, ...] = ("2.3.1", "2.4.0", "2.4.2")
TYPE_SHORT = {"soil_station": "soil", "collar": "collar", "tank_probe": "tank", "air_quality": "aq"}
GPS_SIGMA_M = 3.0


@dataclass(frozen=True)
class AnomalyLabel:
    device_id: str
    device_type: str
    metric: str  # a metric name, "location" (geofence) or "*" (offline)
    kind: str
    start: datetime
    end: datetime

    def to_dict(self) -> dict[str, str]:
        return {"device_id": self.device_id, "device_type": self.device_type, "metric": self.metric,
                "kind": self.kind, "start": self.start.isoformat(), "end": self.end.isoformat()}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> AnomalyLabel:
        return cls(d["device_id"], d["device_type"], d["metric"], d["kind"],
                   datetime.fromisoformat(d["start"]), datetime.fromisoformat(d["end"]))


@dataclass(frozen=True)
class FleetConfig:
    devices: int = 100
    seed: int = 0
    start: datetime | None = None  # required by the generator (tz-aware); the CLI derives it from now
    count: int | None = None  # stop after this many events (readings + poison)
    duration_s: float | None = None  # stop at this much event time after start
    v1_fraction: float = 0.3  # share of devices still on schema v1
    anomaly_rate: float = 0.05  # anomalies per device-hour of event time
    bad_fraction: float = 0.0  # share of events that are poison records
    out_of_order_fraction: float = 0.0
    late_fraction: float = 0.0
    clock_skew_s: float = 0.0  # each device's clock is off by up to ± this
    dropout_fraction: float = 0.0  # share of readings lost on the way
    anomaly_kinds: tuple[str, ...] = ANOMALY_KINDS
    device_types: tuple[str, ...] = DEVICE_TYPES  # assigned round-robin
    interval_s: tuple[float, float] = (10.0, 60.0)  # each device's sampling interval is drawn from this
    interval_scale: float = 1.0  # <1 compresses time (the simulator's --rate mode)
    late_delay_s: tuple[float, float] = (120.0, 900.0)
    warmup_s: float = 900.0  # no anomaly starts earlier: detectors need normal data first
    id_prefix: str = "sim"

    def __post_init__(self) -> None:
        if self.devices < 1:
            raise ValueError("devices must be at least 1")
        for name in ("v1_fraction", "out_of_order_fraction", "late_fraction", "dropout_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if not 0.0 <= self.bad_fraction < 1.0:
            raise ValueError("bad_fraction must be within [0, 1)")
        if self.out_of_order_fraction + self.late_fraction > 1.0:
            raise ValueError("out_of_order_fraction + late_fraction must not exceed 1")
        if self.anomaly_rate < 0 or self.clock_skew_s < 0 or self.warmup_s < 0:
            raise ValueError("anomaly_rate, clock_skew_s and warmup_s must not be negative")
        if self.interval_scale <= 0 or not 0 < self.interval_s[0] <= self.interval_s[1]:
            raise ValueError("intervals must be positive")
        if not 0 <= self.late_delay_s[0] <= self.late_delay_s[1]:
            raise ValueError("late_delay_s must be an increasing pair of non-negative seconds")
        unknown = set(self.anomaly_kinds) - set(ANOMALY_KINDS)
        if unknown:
            raise ValueError(f"unknown anomaly kinds {sorted(unknown)}; known: {', '.join(ANOMALY_KINDS)}")
        bad_types = set(self.device_types) - set(METRICS)
        if bad_types or not self.device_types:
            raise ValueError(f"device_types must be a non-empty subset of {', '.join(METRICS)}")
        if self.count is not None and self.count < 0:
            raise ValueError("count must not be negative")
        if self.duration_s is not None and self.duration_s < 0:
            raise ValueError("duration_s must not be negative")
        if self.start is not None and self.start.utcoffset() is None:
            raise ValueError("start must be timezone-aware")

    @property
    def bounded(self) -> bool:
        return self.count is not None or self.duration_s is not None


@dataclass(frozen=True)
class SimEvent:
    record: dict[str, Any] | None  # v2-shaped Reading dict (None for poison)
    schema_version: int  # 1 or 2: which schema the device writes with
    bad_value: bytes | None = None  # poison: the bytes to send as they are
    device_id: str = ""  # the Kafka key, also for poison
    send_time: datetime | None = None  # when a real device would send it (real-time pacing)
    disorder: str | None = None  # "out_of_order" | "late" | None
    bad_reason: str | None = None  # which POISON_KINDS this is


@dataclass(frozen=True)
class DeviceSpec:
    index: int
    device_id: str
    device_type: str
    schema_version: int
    interval_s: float
    clock_offset_s: float
    firmware: str | None
    paddock: Paddock | None  # collars only

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(METRICS[self.device_type])


def _rng(config: FleetConfig, index: int, stream: str) -> random.Random:
    # str seeds are hashed with sha512: stable across runs and Python versions, unlike hash().
    return random.Random(f"fieldstream-fleet:{config.seed}:{index}:{stream}")


def device_spec(config: FleetConfig, index: int) -> DeviceSpec:
    rng = _rng(config, index, "spec")
    device_type = config.device_types[index % len(config.device_types)]
    device_id = f"{config.id_prefix}-{TYPE_SHORT[device_type]}-{index:05d}"
    version = 1 if rng.random() < config.v1_fraction else 2
    interval = rng.uniform(*config.interval_s) * config.interval_scale
    offset = rng.uniform(-config.clock_skew_s, config.clock_skew_s) if config.clock_skew_s else 0.0
    firmware = rng.choice(FIRMWARE_V2) if version == 2 else None
    paddock = collar_paddock(device_id) if device_type == "collar" else None
    return DeviceSpec(index, device_id, device_type, version, interval, offset, firmware, paddock)


def fleet_devices(config: FleetConfig) -> tuple[DeviceSpec, ...]:
    return tuple(device_spec(config, i) for i in range(config.devices))


def natural_rate(config: FleetConfig) -> float:
    """Readings per second of event time the fleet sends (before dropouts and anomalies)."""
    return sum(1.0 / d.interval_s for d in fleet_devices(config))


@dataclass
class _Anomaly:
    kind: str
    metric: str
    slots: int  # readings (slots, for offline) it lasts
    magnitude: float = 0.0  # signed offset at full strength, in metric units
    noise_factor: float = 1.0
    stuck_value: float | None = None
    path: list[tuple[float, float]] = field(default_factory=list)  # geofence: positions per reading
    done: int = 0  # slots generated so far
    pending: int = 0  # affected readings generated but not yet sent
    first: datetime | None = None  # event times of the affected readings sent
    last: datetime | None = None

    @property
    def generated(self) -> bool:
        return self.done >= self.slots

    def sent(self, event_time: datetime) -> None:
        self.pending -= 1
        self.first = event_time if self.first is None or event_time < self.first else self.first
        self.last = event_time if self.last is None or event_time > self.last else self.last


@dataclass
class _Pending:
    """An event waiting for its send time, with the anomaly it belongs to."""

    send_t: float  # true seconds after start
    event: SimEvent
    anomaly: _Anomaly | None = None
    event_time: datetime | None = None


class _Device:
    """One device's evolving state; `step` produces what it sends at one sampling slot."""

    def __init__(self, config: FleetConfig, spec: DeviceSpec, start: datetime) -> None:
        self.config, self.spec, self.start = config, spec, start
        self.epoch0 = start.timestamp()
        self.sig = _rng(config, spec.index, "signal")  # sensor noise and motion
        self.anom = _rng(config, spec.index, "anomaly")  # anomaly schedule and shape
        self.net = _rng(config, spec.index, "network")  # dropouts, disorder, poison
        self.models = {m: MetricModel.draw(spec.device_type, m, self.sig) for m in spec.metric_names}
        self.last_values: dict[str, float] = {}
        # seq starts at the start time in ms: a later run of the same fleet never reuses a seq
        # the pipeline's dedup may still remember (unless a device sends >1000 readings/s).
        self.seq = int(self.epoch0 * 1000)
        self.battery0 = self.sig.uniform(0.55, 1.0)
        drain = (0.002, 0.005) if spec.device_type == "collar" else (0.0008, 0.003)
        self.drain_per_s = self.sig.uniform(*drain) / 3600.0
        self.signal_base = self.sig.uniform(-105, -55)
        self.t_next = self.sig.uniform(0, spec.interval_s)  # devices do not sample in lock-step
        self.pos: tuple[float, float] | None = None
        self.target: tuple[float, float] | None = None
        if spec.paddock is not None:
            self.pos = self.target = self._inside_point(spec.paddock)
        self.kinds = [k for k in config.anomaly_kinds if k != "geofence" or spec.device_type == "collar"]
        self.active: _Anomaly | None = None
        self.began: _Anomaly | None = None  # set by the slot that starts an anomaly
        self.ended = False  # set by the slot that ends one
        self.next_anomaly_t = self._schedule_after(config.warmup_s)

    def _schedule_after(self, t: float) -> float:
        if not self.kinds or self.config.anomaly_rate <= 0:
            return math.inf
        return t + self.anom.expovariate(self.config.anomaly_rate / 3600.0)

    def _inside_point(self, paddock: Paddock) -> tuple[float, float]:
        lat0, lon0, lat1, lon1 = paddock.bounds
        while True:
            p = (self.sig.uniform(lat0, lat1), self.sig.uniform(lon0, lon1))
            if paddock.contains(*p):
                return p

    def event_time(self, t: float) -> datetime:
        return self.start + timedelta(milliseconds=round((t + self.spec.clock_offset_s) * 1000))

    # --- anomalies -------------------------------------------------------------------------

    def _maybe_begin_anomaly(self, t: float) -> None:
        a = self._begin_anomaly()
        end = self.config.duration_s
        if end is not None and t + a.slots * self.spec.interval_s * 1.1 >= end:
            # It would be cut short by the end of the run: a truncated stuck or drift is
            # not the anomaly its label promises, so none starts this late.
            self.next_anomaly_t = math.inf
            return
        self.active = self.began = a

    def _begin_anomaly(self) -> _Anomaly:
        kind = self.anom.choice(self.kinds)
        slots = self.anom.randint(*KIND_READINGS[kind])
        if kind == "geofence":
            return _Anomaly(kind, "location", slots, path=self._escape_path(slots))
        if kind == "offline":
            return _Anomaly(kind, "*", slots)
        metric = self.anom.choice(sorted(self.models))
        model = self.models[metric]
        a = _Anomaly(kind, metric, slots)
        if kind == "spike":
            k = self.anom.uniform(6, 10)
        elif kind == "level_shift":
            k = self.anom.uniform(4, 8)
        elif kind == "drift":
            k = self.anom.uniform(6, 12)
        else:
            k = 0.0
        if k:
            a.magnitude = model.room_sign(k * model.sigma, self.anom) * k * model.sigma
        a.noise_factor = self.anom.uniform(5, 8) if kind == "noise_burst" else 1.0
        return a

    def _escape_path(self, slots: int) -> list[tuple[float, float]]:
        """Positions of a collar that walks out of its paddock, lingers, and walks back."""
        paddock = self.spec.paddock
        assert paddock is not None and self.pos is not None
        poly = paddock.polygon
        i = self.anom.randrange(len(poly))
        (a_lat, a_lon), (b_lat, b_lon) = poly[i], poly[(i + 1) % len(poly)]
        mid = ((a_lat + b_lat) / 2, (a_lon + b_lon) / 2)
        north, east = delta_m(paddock.centroid, mid)
        norm = math.hypot(north, east) or 1.0
        distance = self.anom.uniform(80, 250)
        outside = offset_m(mid, north / norm * distance, east / norm * distance)
        while paddock.contains(*outside):  # never for convex paddocks; a guard for other shapes
            distance *= 1.5
            outside = offset_m(mid, north / norm * distance, east / norm * distance)
        n_out = max(slots // 3, 1)
        n_stay = max(slots // 3, 1)
        n_back = max(slots - n_out - n_stay, 1)
        home = self.pos
        path = [_lerp(home, outside, (j + 1) / n_out) for j in range(n_out)]
        path += [offset_m(outside, self.anom.gauss(0, 5), self.anom.gauss(0, 5)) for _ in range(n_stay)]
        path += [_lerp(outside, home, (j + 1) / n_back) for j in range(n_back)]
        return path[:slots]

    # --- one sampling slot -----------------------------------------------------------------

    def step(self, t: float) -> tuple[list[_Pending], float]:
        """What the device sends for its sampling slot at true time t, and when its next slot is."""
        dt = self.spec.interval_s * self.sig.uniform(0.95, 1.05)
        self.t_next = t + dt
        self.ended = False
        if self.active is None and t >= self.next_anomaly_t:
            self._maybe_begin_anomaly(t)
        a = self.active
        if a is not None and a.kind == "offline":
            return self._offline_slot(a, t, dt), self.t_next
        record, affected = self._reading(t, a)
        self.seq += 1
        if a is not None:
            a.done += 1
            if a.generated:
                self._end_anomaly(t)
        if self.net.random() < self.config.dropout_fraction:
            return [], self.t_next
        out: list[_Pending] = []
        send_t, disorder = self._send_delay(t)
        cfg = self.config
        if cfg.bad_fraction and self.net.random() < cfg.bad_fraction / (1.0 - cfg.bad_fraction):
            out.append(_Pending(send_t, self._poison(record, send_t)))
        event = SimEvent(record, self.spec.schema_version, device_id=self.spec.device_id,
                         send_time=self._wall(send_t), disorder=disorder)
        if affected and a is not None:
            a.pending += 1
            out.append(_Pending(send_t, event, a, record["event_time"]))
        else:
            out.append(_Pending(send_t, event))
        return out, self.t_next

    def _offline_slot(self, a: _Anomaly, t: float, dt: float) -> list[_Pending]:
        a.done += 1
        a.first = a.first or self.event_time(t)
        a.last = self.event_time(t + dt) if a.generated else self.event_time(t)
        if a.generated:
            self._end_anomaly(t)
        return []

    def _end_anomaly(self, t: float) -> None:
        self.active = None
        self.ended = True
        self.next_anomaly_t = self._schedule_after(t)

    def _wall(self, t: float) -> datetime:
        return self.start + timedelta(milliseconds=round(t * 1000))

    def _send_delay(self, t: float) -> tuple[float, str | None]:
        r = self.net.random()
        cfg = self.config
        if r < cfg.late_fraction:
            return t + self.net.uniform(*cfg.late_delay_s), "late"
        if r < cfg.late_fraction + cfg.out_of_order_fraction:
            return t + self.spec.interval_s * self.net.uniform(1.5, 4.0), "out_of_order"
        return t, None

    def _reading(self, t: float, a: _Anomaly | None) -> tuple[dict[str, Any], bool]:
        hour = solar_hour(self.epoch0 + t)
        metrics: dict[str, float] = {}
        affected = False
        for name, model in self.models.items():
            noise = self.sig.gauss(0.0, model.sigma)
            value = model.clean(hour) + noise
            if a is not None and a.metric == name:
                affected = True
                value = self._distort(a, model, value, noise)
            metrics[name] = model.finish(value)
        self.last_values.update(metrics)
        location = None
        if self.pos is not None:
            location, outside = self._move(metrics["activity"], a)
            affected = affected or outside
            if self.spec.schema_version == 1:  # v1 collars report position as two metrics
                metrics["lat"], metrics["lon"] = location
                location = None
        v2 = self.spec.schema_version == 2
        tags = {"site": SITE_NAME, "source": "simulator"}
        if self.spec.paddock is not None:
            tags["paddock"] = self.spec.paddock.name
        record = {
            "device_id": self.spec.device_id,
            "device_type": self.spec.device_type,
            "event_time": self.event_time(t),
            "seq": self.seq,
            "metrics": metrics,
            "tags": tags,
            "location": {"lat": location[0], "lon": location[1]} if location else None,
            "firmware": self.spec.firmware,
            "battery": round(max(0.02, self.battery0 - self.drain_per_s * t), 3) if v2 else None,
            "signal_dbm": (max(-120, min(-40, round(self.signal_base + self.sig.gauss(0, 2)))) if v2 else None),
        }
        return record, affected

    def _distort(self, a: _Anomaly, model: MetricModel, value: float, noise: float) -> float:
        if a.kind in ("spike", "level_shift"):
            return value + a.magnitude
        if a.kind == "drift":
            return value + a.magnitude * (a.done + 1) / a.slots
        if a.kind == "noise_burst":
            return value - noise + self.anom.gauss(0.0, model.sigma * a.noise_factor)
        if a.kind == "stuck":
            if a.stuck_value is None:
                a.stuck_value = self.last_values.get(model.name, model.finish(value))
            return a.stuck_value
        return value

    def _move(self, activity: float, a: _Anomaly | None) -> tuple[tuple[float, float], bool]:
        """The collar's reported position and whether it is outside its paddock."""
        paddock = self.spec.paddock
        assert paddock is not None and self.pos is not None and self.target is not None
        gps_n, gps_e = self.sig.gauss(0, GPS_SIGMA_M), self.sig.gauss(0, GPS_SIGMA_M)
        if a is not None and a.kind == "geofence":
            self.pos = a.path[min(a.done, len(a.path) - 1)]
            reported = _round6(offset_m(self.pos, gps_n, gps_e))
            return reported, not paddock.contains(*reported)
        # Graze towards a target at a walking speed that follows activity; stay inside the fence.
        north, east = delta_m(self.pos, self.target)
        dist = math.hypot(north, east)
        step = min(dist, (0.02 + 0.01 * activity) * self.spec.interval_s)
        if dist < 5.0 or self.sig.random() < 0.02:
            self.target = self._inside_point(paddock)
        elif dist > 0:
            moved = offset_m(self.pos, north / dist * step, east / dist * step)
            if paddock.contains(*moved):
                self.pos = moved
            else:
                self.target = self._inside_point(paddock)
        reported = _round6(offset_m(self.pos, gps_n, gps_e))
        if not paddock.contains(*reported):  # GPS noise must not fake a fence breach
            reported = _round6(self.pos)
            if not paddock.contains(*reported):
                reported = self.pos
        return reported, False

    def _poison(self, record: dict[str, Any], send_t: float) -> SimEvent:
        kind = self.net.choice(POISON_KINDS)
        rb = self.net.randbytes
        if kind == "json_text":  # a gateway misconfigured to send JSON
            value = json.dumps(record, default=str).encode()
        elif kind == "empty":
            value = b""
        elif kind == "truncated":
            value = b"\x00" + rb(2)
        elif kind == "bad_magic":
            value = bytes([self.net.randint(1, 255)]) + rb(28)
        elif kind == "unknown_schema":  # framed, but with an id no registry holds
            value = b"\x00" + (2**31 - 1 - self.net.randrange(1000)).to_bytes(4, "big") + rb(24)
        else:
            value = rb(self.net.randint(1, 64))
        return SimEvent(None, self.spec.schema_version, bad_value=value, device_id=self.spec.device_id,
                        send_time=self._wall(send_t), bad_reason=kind)


def _round6(p: tuple[float, float]) -> tuple[float, float]:
    return round(p[0], 6), round(p[1], 6)


def _lerp(a: tuple[float, float], b: tuple[float, float], f: float) -> tuple[float, float]:
    return a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f


class FleetRun:
    """One run of a fleet: iterate it for events; `take_labels` hands over labels as they complete.

    A label is complete once its anomaly is over and all its readings are sent.
    Call `finish()` when stopping early: it closes the labels of anomalies still
    in progress (clipped to what was sent).
    """

    def __init__(self, config: FleetConfig) -> None:
        if config.start is None:
            raise ValueError("FleetConfig.start is required: the generator never reads the clock")
        self.config = config
        self.start = config.start.astimezone(UTC)
        self.devices = [_Device(config, spec, self.start) for spec in fleet_devices(config)]
        self.sent = 0
        self._ready: list[AnomalyLabel] = []
        self._open: list[tuple[_Device, _Anomaly]] = []
        self._finished = False

    def __iter__(self) -> Iterator[SimEvent]:
        cfg = self.config
        if cfg.count == 0:
            self.finish()
            return
        slots = [(d.t_next, d.spec.index) for d in self.devices]
        heapq.heapify(slots)
        queue: list[tuple[float, int, _Pending]] = []  # by send time, then generation order
        order = 0
        while slots and not self._finished:
            t, index = slots[0]
            if cfg.duration_s is not None and t >= cfg.duration_s:
                break
            device = self.devices[index]
            pendings, t_next = device.step(t)
            heapq.heapreplace(slots, (t_next, index))
            if device.began is not None:
                self._open.append((device, device.began))
                device.began = None
            if device.ended:
                self._close_ready()
            for p in pendings:
                heapq.heappush(queue, (p.send_t, order, p))
                order += 1
            while queue and queue[0][0] <= t:
                yield self._emit(heapq.heappop(queue)[2])
                if cfg.count is not None and self.sent >= cfg.count:
                    self.finish()
                    return
        while queue and not self._finished:
            yield self._emit(heapq.heappop(queue)[2])
            if cfg.count is not None and self.sent >= cfg.count:
                break
        self.finish()

    def _emit(self, p: _Pending) -> SimEvent:
        self.sent += 1
        if p.anomaly is not None and p.event_time is not None:
            p.anomaly.sent(p.event_time)
            if p.anomaly.generated and p.anomaly.pending == 0:
                self._close_ready()
        return p.event

    def _close_ready(self, force: bool = False) -> None:
        still = []
        for device, a in self._open:
            if force or (a.generated and a.pending == 0):
                if a.first is not None and a.last is not None:
                    spec = device.spec
                    self._ready.append(AnomalyLabel(spec.device_id, spec.device_type, a.metric, a.kind,
                                                    a.first, a.last))
            else:
                still.append((device, a))
        self._open = still

    def finish(self) -> None:
        """Stop: labels of anomalies still in progress are closed with what was sent."""
        if not self._finished:
            self._finished = True
            self._close_ready(force=True)

    def take_labels(self) -> list[AnomalyLabel]:
        """Labels completed since the last call."""
        out, self._ready = self._ready, []
        return out


def simulate_fleet(config: FleetConfig) -> Iterator[SimEvent]:
    """Every event of the fleet, in send order."""
    return iter(FleetRun(config))


def fleet_labels(config: FleetConfig) -> list[AnomalyLabel]:
    """Every anomaly injected into `simulate_fleet(config)`, ordered by start time."""
    if not config.bounded:
        raise ValueError("fleet_labels needs a bounded run: set count or duration_s")
    run = FleetRun(config)
    labels: list[AnomalyLabel] = []
    for _ in run:
        labels.extend(run.take_labels())
    labels.extend(run.take_labels())
    return sorted(labels, key=lambda lb: (lb.start, lb.device_id, lb.metric))
