import math
import pickle
import random
from datetime import UTC, datetime, timedelta

from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.engine import DeviceEngine, FleetEngine, HalfSpaceModels
from fieldstream.schemas.reading import Location, Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(seconds=30)
PADDOCK = [(-37.0, 142.0), (-37.0, 142.01), (-37.01, 142.01), (-37.01, 142.0)]


def soil(n: int = 300, spike_at: tuple[int, ...] = (), device: str = "soil-1", seed: int = 4) -> list[Reading]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        temp = 15 + 3 * math.sin(i / 200) + rng.gauss(0, 0.15)
        if i in spike_at:
            temp += 3.0  # 20 σ
        out.append(Reading(device, "soil_station", T0 + i * STEP, i,
                           {"temperature": round(temp, 2), "moisture": round(30 + rng.gauss(0, 0.25), 2)}))
    return out


def run(engine: DeviceEngine, readings: list[Reading], models: HalfSpaceModels | None = None) -> list:
    events = []
    for r in readings:
        events += engine.process(r, models.for_type(r.device_type) if models else None)
    return events


def test_a_spike_is_one_open_and_one_resolved_alert():
    settings = DetectionSettings()
    engine = DeviceEngine.from_settings(settings, "soil-1", "soil_station")
    events = run(engine, soil(spike_at=(200,)))
    assert [(e.state, e.detector, e.metric) for e in events] == \
        [("open", "zscore", "temperature"), ("resolved", "zscore", "temperature")]
    assert events[0].event_time == T0 + 200 * STEP
    assert events[1].event_time == T0 + (200 + settings.cooldown_readings) * STEP


def test_nothing_alerts_on_a_normal_stream():
    engine = DeviceEngine.from_settings(DetectionSettings(), "soil-1", "soil_station")
    assert run(engine, soil(n=1000)) == []


def test_replays_and_pickled_engines_give_identical_events():
    settings = DetectionSettings()
    readings = soil(spike_at=(120, 240, 241))
    first = run(DeviceEngine.from_settings(settings, "soil-1", "soil_station"), readings)
    again = run(DeviceEngine.from_settings(settings, "soil-1", "soil_station"), readings)
    assert first and first == again
    engine = DeviceEngine.from_settings(settings, "soil-1", "soil_station")
    head = run(engine, readings[:241])  # stop in the middle of an open alert
    clone = pickle.loads(pickle.dumps(engine))
    assert head + run(clone, readings[241:]) == first


def test_offline_opens_at_the_missed_deadline_and_a_reading_resolves_it():
    settings = DetectionSettings(offline_k=3, offline_min_readings=5)
    engine = DeviceEngine.from_settings(settings, "soil-1", "soil_station")
    readings = soil(n=50)
    run(engine, readings)
    last = readings[-1].event_time
    assert engine.check_offline(last + 2 * STEP) == []
    (opened,) = engine.check_offline(last + 10 * STEP)  # the timer fires late
    assert (opened.state, opened.detector, opened.metric) == ("open", "offline", "*")
    assert opened.event_time == last + 3 * STEP  # the deadline, whenever the timer fired
    assert engine.check_offline(last + 20 * STEP) == []  # already open: no second alert
    back = Reading("soil-1", "soil_station", last + 30 * STEP, 99, {"temperature": 15.0, "moisture": 30.0})
    events = engine.process(back)
    assert [(e.state, e.alert_id) for e in events] == [("resolved", opened.alert_id)]
    assert events[0].event_time == back.event_time


def test_a_v1_collar_position_in_metrics_is_geofenced_not_zscored():
    settings = DetectionSettings(geofences={"collar-1": PADDOCK})
    engine = DeviceEngine.from_settings(settings, "collar-1", "collar")
    rng = random.Random(2)
    events = []
    for i in range(120):
        lat, lon = (-37.005 + rng.uniform(-0.003, 0.003), 142.005 + rng.uniform(-0.003, 0.003))
        if 80 <= i < 90:
            lat -= 0.02  # wandered out of the paddock
        metrics = {"activity": 30 + rng.gauss(0, 3), "body_temperature": 38.6 + rng.gauss(0, 0.08),
                   "lat": lat, "lon": lon}
        events += engine.process(Reading("collar-1", "collar", T0 + i * STEP, i, metrics))
    assert [(e.state, e.detector, e.metric) for e in events] == \
        [("open", "geofence", "location"), ("resolved", "geofence", "location")]
    assert events[0].event_time == T0 + 80 * STEP


def test_a_v2_location_is_geofenced_by_lookup():
    fleet = FleetEngine(DetectionSettings(), geofence_for=lambda d, t: PADDOCK if t == "collar" else None)
    outside = Reading("c2", "collar", T0, 0, {"activity": 30.0}, location=Location(-36.9, 142.005))
    inside = Reading("c3", "collar", T0, 0, {"activity": 30.0}, location=Location(-37.005, 142.005))
    assert [e.detector for e in fleet.process(outside)] == ["geofence"]
    assert fleet.process(inside) == []


def test_fleet_tick_checks_every_device():
    fleet = FleetEngine(DetectionSettings(offline_min_readings=3))
    for r in soil(n=10, device="a") + soil(n=5, device="b"):
        fleet.process(r)
    # "b" stopped after 5 readings, "a" after 10: 2 intervals after a's last one, b has missed 6.
    now = T0 + 11 * STEP
    assert [e.device_id for e in fleet.tick(now)] == ["b"]


def test_halfspace_is_one_model_per_device_type_and_can_be_off():
    models = HalfSpaceModels(DetectionSettings())
    assert models.for_type("soil_station") is models.for_type("soil_station")
    assert models.for_type("soil_station") is not models.for_type("collar")
    assert HalfSpaceModels(DetectionSettings(hst_enabled=False)).for_type("soil_station") is None


def test_halfspace_samples_every_nth_reading_of_a_device():
    settings = DetectionSettings(hst_sample_every=10, hst_device_warmup_blocks=3)
    models = HalfSpaceModels(settings)
    engine = DeviceEngine.from_settings(settings, "soil-1", "soil_station")
    run(engine, soil(n=95), models)
    # 9 complete blocks: 3 teach the device's normal, 6 are scored by the type's model.
    assert models.for_type("soil_station").samples == 6


def test_offline_runs_on_arrival_times_when_given():
    """A device whose clock is an hour behind is not offline if its readings keep arriving."""
    engine = DeviceEngine.from_settings(DetectionSettings(), "soil-1", "soil_station")
    skew = timedelta(hours=1)
    readings = soil(n=50)
    for r in readings:
        engine.process(Reading(r.device_id, r.device_type, r.event_time - skew, r.seq, r.metrics),
                       seen_at=r.event_time)
    assert engine.check_offline(readings[-1].event_time + STEP) == []
    assert engine.check_offline(readings[-1].event_time + 10 * STEP) != []


def positioned(readings: list[Reading], partition: int = 3) -> list[Reading]:
    """The readings as consumed: one partition, consecutive offsets."""
    for offset, r in enumerate(readings):
        r.topic, r.partition, r.offset = "readings", partition, 100 + offset
    return readings


def test_a_reading_learned_before_a_restart_is_not_learned_again():
    settings = DetectionSettings()
    readings = positioned(soil(spike_at=(200,)))
    engine = DeviceEngine.from_settings(settings, "soil-1", "soil_station")
    events = []
    for r in readings[:230]:
        assert engine.first_time(r)
        events += engine.process(r)
    # Restored from a checkpoint written after reading 230, the worker reads from an older
    # committed offset: readings 150-229 come again, then the stream goes on.
    restored = pickle.loads(pickle.dumps(engine))
    replayed = [r for r in readings[150:] if restored.first_time(r)]
    assert replayed == readings[230:]
    for r in replayed:
        events += restored.process(r)
    assert events == run(DeviceEngine.from_settings(settings, "soil-1", "soil_station"), soil(spike_at=(200,)))


def test_positions_of_another_partition_and_readings_without_one_are_new():
    engine = DeviceEngine.from_settings(DetectionSettings(), "soil-1", "soil_station")
    first, second = positioned(soil(n=2))
    assert engine.first_time(second)
    assert not engine.first_time(first)
    moved = Reading("soil-1", "soil_station", T0, 0, {"temperature": 15.0}, topic="readings", partition=4, offset=1)
    assert engine.first_time(moved)  # the partition count changed: a new sequence of offsets
    assert engine.first_time(soil(n=1)[0]) and engine.first_time(soil(n=1)[0])  # no position: always new
    del engine.last_position  # as pickled before the field existed
    assert engine.first_time(first)
