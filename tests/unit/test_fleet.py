"""The fleet generator: deterministic, realistic, and every anomaly labelled and detectable."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from fieldstream.config.validation import DEFAULT_RANGES, ValidationSettings
from fieldstream.devices.fleet import (
    ANOMALY_KINDS,
    AnomalyLabel,
    FleetConfig,
    FleetRun,
    SimEvent,
    fleet_devices,
    fleet_labels,
    simulate_fleet,
)
from fieldstream.devices.paddocks import collar_paddock
from fieldstream.devices.signals import METRICS
from fieldstream.devices.simulator import v1_record
from fieldstream.errors import DecodeError
from fieldstream.ingest.validate import Validator
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_V1, READING_V2, parsed
from fieldstream.schemas.reading import Reading

START = datetime(2025, 3, 1, 6, 0, tzinfo=UTC)
# Enough device-hours that every kind, including collar-only geofences, occurs.
BASE = FleetConfig(devices=40, seed=7, start=START, duration_s=4 * 3600, anomaly_rate=1.0)


@pytest.fixture(scope="module")
def clean() -> tuple[list[SimEvent], list[AnomalyLabel]]:
    """A run with anomalies but no network trouble, so every anomalous reading arrives."""
    return list(simulate_fleet(BASE)), fleet_labels(BASE)


def _by_device(events: list[SimEvent]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for e in events:
        if e.record is not None:
            out[e.device_id].append(e.record)
    for records in out.values():
        records.sort(key=lambda r: r["event_time"])
    return out


def _labelled(labels: list[AnomalyLabel], device_id: str, t: datetime) -> list[AnomalyLabel]:
    return [lb for lb in labels if lb.device_id == device_id and lb.start <= t <= lb.end]


def test_same_seed_gives_identical_events_and_labels() -> None:
    cfg = replace(BASE, devices=12, duration_s=2 * 3600, bad_fraction=0.02, out_of_order_fraction=0.05,
                  late_fraction=0.02, dropout_fraction=0.02, clock_skew_s=30)
    first, second = list(simulate_fleet(cfg)), list(simulate_fleet(cfg))
    assert len(first) > 1000
    assert first == second
    assert fleet_labels(cfg) == fleet_labels(cfg)
    assert len(fleet_labels(cfg)) > 5


def test_different_seed_gives_a_different_fleet() -> None:
    a = replace(BASE, devices=8, duration_s=2 * 3600)
    b = replace(a, seed=a.seed + 1)
    records_a = [e.record for e in simulate_fleet(a)][:200]
    records_b = [e.record for e in simulate_fleet(b)][:200]
    assert records_a != records_b
    assert fleet_labels(a) != fleet_labels(b)


def test_adding_devices_leaves_existing_devices_unchanged() -> None:
    small = replace(BASE, devices=4, duration_s=3600)
    large = replace(small, devices=9)
    first = [e.record for e in simulate_fleet(small) if e.device_id.endswith("00002")]
    again = [e.record for e in simulate_fleet(large) if e.device_id.endswith("00002")]
    assert len(first) > 50
    assert first == again


def test_generator_needs_an_explicit_start() -> None:
    with pytest.raises(ValueError, match="start"):
        list(simulate_fleet(replace(BASE, start=None)))
    with pytest.raises(ValueError, match="bounded"):
        fleet_labels(replace(BASE, duration_s=None))


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown anomaly kinds"):
        replace(BASE, anomaly_kinds=("spike", "meteor"))
    with pytest.raises(ValueError, match="bad_fraction"):
        replace(BASE, bad_fraction=1.0)
    with pytest.raises(ValueError, match="exceed"):
        replace(BASE, out_of_order_fraction=0.7, late_fraction=0.5)


def test_values_stay_in_the_validator_ranges(clean: tuple[list[SimEvent], list[AnomalyLabel]]) -> None:
    events, labels = clean
    readings = [e.record for e in events if e.record is not None]
    assert len(readings) > 10_000
    for r in readings:
        ranges = DEFAULT_RANGES[r["device_type"]]
        assert set(r["metrics"]) - {"lat", "lon"} == set(METRICS[r["device_type"]])
        for name, value in r["metrics"].items():
            low, high = ranges[name]
            assert low <= value <= high, (r["device_id"], name, value)
        if r["battery"] is not None:
            assert 0.0 <= r["battery"] <= 1.0
        assert r["event_time"].tzinfo is not None


def test_normal_readings_look_normal(clean: tuple[list[SimEvent], list[AnomalyLabel]]) -> None:
    """Outside labels, a metric never jumps by more than a daily cycle allows, and collars stay home."""
    events, labels = clean
    for device_id, records in _by_device(events).items():
        device_type = records[0]["device_type"]
        normal = [r for r in records if not _labelled(labels, device_id, r["event_time"])]
        assert len(normal) >= 30
        for name, spec in METRICS[device_type].items():
            values = [r["metrics"][name] for r in normal]
            # Noise around a smooth cycle: consecutive normal readings differ by a few sigma at most.
            jumps = [abs(b - a) for a, b in zip(values, values[1:])]
            assert statistics.median(jumps) < 3 * spec.sigma + 1e-9
        if device_type == "collar":
            paddock = collar_paddock(device_id)
            for r in normal:
                lat, lon = (r["location"]["lat"], r["location"]["lon"]) if r["location"] else (
                    r["metrics"]["lat"], r["metrics"]["lon"])
                assert paddock.contains(lat, lon), (device_id, r["event_time"])


def test_every_kind_is_injected_and_labelled(clean: tuple[list[SimEvent], list[AnomalyLabel]]) -> None:
    events, labels = clean
    kinds = Counter(lb.kind for lb in labels)
    assert set(kinds) == set(ANOMALY_KINDS), kinds
    devices = {d.device_id: d for d in fleet_devices(BASE)}
    end = START + timedelta(seconds=BASE.duration_s or 0)
    for lb in labels:
        assert lb.device_id in devices and devices[lb.device_id].device_type == lb.device_type
        assert START + timedelta(seconds=BASE.warmup_s) <= lb.start <= lb.end <= end + timedelta(minutes=5)
        if lb.kind == "geofence":
            assert (lb.device_type, lb.metric) == ("collar", "location")
        elif lb.kind == "offline":
            assert lb.metric == "*"
        else:
            assert lb.metric in METRICS[lb.device_type]
        assert AnomalyLabel.from_dict(lb.to_dict()) == lb
    # One anomaly at a time per device: a device's labels never overlap.
    per_device: dict[str, list[AnomalyLabel]] = defaultdict(list)
    for lb in labels:
        per_device[lb.device_id].append(lb)
    for lbs in per_device.values():
        lbs.sort(key=lambda lb: lb.start)
        assert all(a.end < b.start for a, b in zip(lbs, lbs[1:]))


def test_anomalies_are_detectable(clean: tuple[list[SimEvent], list[AnomalyLabel]]) -> None:
    events, labels = clean
    by_device = _by_device(events)
    checked: Counter[str] = Counter()
    for lb in labels:
        records = by_device[lb.device_id]
        inside = [r for r in records if lb.start <= r["event_time"] <= lb.end]
        before = [r for r in records if r["event_time"] < lb.start][-6:]
        if lb.kind == "offline":
            assert inside == [] or inside[-1]["event_time"] == lb.end  # only the reading it came back with
            assert lb.end - lb.start >= timedelta(seconds=15 * BASE.interval_s[0])
        elif lb.kind == "geofence":
            paddock = collar_paddock(lb.device_id)

            def out(r: dict) -> bool:
                loc = r["location"] or {"lat": r["metrics"]["lat"], "lon": r["metrics"]["lon"]}
                return not paddock.contains(loc["lat"], loc["lon"])

            assert out(inside[0]) and out(inside[-1])
        elif lb.kind == "stuck":
            values = [r["metrics"][lb.metric] for r in inside]
            assert len(values) >= 20 and len(set(values)) == 1
        elif lb.kind in ("spike", "level_shift") and len(before) >= 5:
            sigma = METRICS[lb.device_type][lb.metric].sigma
            base = statistics.median(r["metrics"][lb.metric] for r in before)
            first = statistics.median(r["metrics"][lb.metric] for r in inside[:5])
            # Clamping at a range edge may shave a shift; a clear majority must stand out strongly.
            if abs(first - base) >= (5 if lb.kind == "spike" else 2.5) * sigma:
                checked[lb.kind] += 1
            checked[lb.kind + "_total"] += 1
        elif lb.kind == "noise_burst":
            sigma = METRICS[lb.device_type][lb.metric].sigma
            values = [r["metrics"][lb.metric] for r in inside]
            jumps = [abs(b - a) for a, b in zip(values, values[1:])]
            assert statistics.median(jumps) > 3 * sigma
    assert checked["spike"] >= 0.9 * checked["spike_total"] > 0
    assert checked["level_shift"] >= 0.8 * checked["level_shift_total"] > 0


def test_out_of_order_and_late_fractions_are_honoured() -> None:
    cfg = replace(BASE, devices=30, duration_s=3 * 3600, anomaly_rate=0.0, out_of_order_fraction=0.05,
                  late_fraction=0.02)
    events = list(simulate_fleet(cfg))
    n = len(events)
    disorder = Counter(e.disorder for e in events)
    assert disorder["out_of_order"] / n == pytest.approx(0.05, abs=0.01)
    assert disorder["late"] / n == pytest.approx(0.02, abs=0.006)
    newest: dict[str, datetime] = {}
    behind = 0
    for e in events:
        t = e.record["event_time"]
        if t < newest.get(e.device_id, t):
            behind += 1
            assert e.disorder is not None
        newest[e.device_id] = max(t, newest.get(e.device_id, t))
        if e.disorder == "late":
            assert e.send_time - t >= timedelta(seconds=cfg.late_delay_s[0])
    # Almost every delayed reading really arrives after a later one of its device.
    assert behind / n == pytest.approx(0.07, abs=0.015)
    # Send order: send times never go backwards.
    sends = [e.send_time for e in events]
    assert sends == sorted(sends)


def test_poison_records_when_asked() -> None:
    cfg = replace(BASE, devices=20, duration_s=2 * 3600, bad_fraction=0.03)
    events = list(simulate_fleet(cfg))
    poison = [e for e in events if e.bad_value is not None]
    assert len(poison) / len(events) == pytest.approx(0.03, abs=0.008)
    ids = {d.device_id for d in fleet_devices(cfg)}
    assert len({e.bad_reason for e in poison}) >= 5
    for e in poison:
        assert e.record is None and e.device_id in ids
        try:
            schema_id, _ = codec.split_frame(e.bad_value)
        except DecodeError:
            continue
        assert schema_id >= 2**31 - 1000  # framed, but with an id no registry hands out
    assert not [e for e in simulate_fleet(replace(cfg, bad_fraction=0.0)) if e.bad_value is not None]


def test_dropouts_lose_readings_but_not_sequence_numbers() -> None:
    cfg = replace(BASE, devices=10, duration_s=2 * 3600, anomaly_rate=0.0, dropout_fraction=0.1)
    full = replace(cfg, dropout_fraction=0.0)
    lossy = list(simulate_fleet(cfg))
    whole = list(simulate_fleet(full))
    assert len(lossy) / len(whole) == pytest.approx(0.9, abs=0.03)
    seqs = [r["seq"] for r in _by_device(lossy)["sim-soil-00000"]]
    assert seqs == sorted(seqs) and max(b - a for a, b in zip(seqs, seqs[1:])) > 1


def test_count_and_duration_bound_the_run() -> None:
    assert len(list(simulate_fleet(replace(BASE, duration_s=None, count=777)))) == 777
    cfg = replace(BASE, devices=5, duration_s=600)
    assert all(e.record["event_time"] < START + timedelta(seconds=600) for e in simulate_fleet(cfg))


def test_anomaly_kinds_can_be_restricted() -> None:
    cfg = replace(BASE, devices=8, duration_s=3 * 3600, anomaly_kinds=("stuck", "offline"))
    kinds = {lb.kind for lb in fleet_labels(cfg)}
    assert kinds == {"stuck", "offline"}


def test_records_fit_their_schema_versions(clean: tuple[list[SimEvent], list[AnomalyLabel]]) -> None:
    events, _ = clean
    versions = Counter(e.schema_version for e in events)
    assert versions[1] > 0.15 * len(events) and versions[2] > 0.5 * len(events)
    v1, v2 = parsed(READING_V1), parsed(READING_V2)
    seen_collar = {1: False, 2: False}
    for e in events[:3000]:
        r = e.record
        if e.schema_version == 1:
            assert r["location"] is None and r["firmware"] is None and r["battery"] is None
            decoded = codec.decode_body(codec.encode_body(v1_record(r), v1), v1, v2)  # v1 bytes, v2 reader
        else:
            decoded = codec.decode_body(codec.encode_body(r, v2), v2, v2)
        assert decoded == r  # what the pipeline decodes is exactly the generator's record
        if r["device_type"] == "collar":
            seen_collar[e.schema_version] = True
            assert ("lat" in r["metrics"]) == (e.schema_version == 1)
            assert (r["location"] is not None) == (e.schema_version == 2)
    assert all(seen_collar.values())


def test_labels_arrive_while_the_run_is_in_progress() -> None:
    run = FleetRun(replace(BASE, devices=20, duration_s=3 * 3600))
    early = 0
    for i, _ in enumerate(run):
        early += len(run.take_labels()) if i < 2000 else 0
    assert early > 0  # the simulator can write labels as they complete, not only at the end


def test_every_reading_passes_the_pipelines_validator(clean: tuple[list[SimEvent], list[AnomalyLabel]]) -> None:
    events, _ = clean
    validator = Validator(ValidationSettings())
    now = START + timedelta(seconds=BASE.duration_s or 0, minutes=1)
    checked = 0
    for e in events:
        validator.check(Reading.from_record(e.record), e.device_id.encode(), now)  # raises if not
        checked += 1
    assert checked == len(events) > 10_000
