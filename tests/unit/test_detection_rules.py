import random
from datetime import UTC, datetime, timedelta

import pytest

from fieldstream.detectors.rules import (
    GeofenceRule,
    OfflineRule,
    RateRule,
    StuckRule,
    ThresholdRule,
    is_silent,
    point_in_polygon,
    silent_devices,
)
from fieldstream.devices import paddocks
from fieldstream.schemas.reading import Location, Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SQUARE = [(0.0, 0.0), (0.0, 10.0), (10.0, 10.0), (10.0, 0.0)]
# An L: the square minus its top-right quarter.
ELL = [(0.0, 0.0), (0.0, 10.0), (5.0, 10.0), (5.0, 5.0), (10.0, 5.0), (10.0, 0.0)]


def reading(i: int, metrics: dict, location: Location | None = None, step_s: float = 60.0,
            device_type: str = "soil_station") -> Reading:
    return Reading("d1", device_type, T0 + timedelta(seconds=i * step_s), i, metrics, location=location)


@pytest.mark.parametrize(("lat", "lon", "inside"), [
    (5.0, 5.0, True), (0.5, 9.5, True), (-0.1, 5.0, False), (5.0, 10.1, False), (20.0, 20.0, False),
])
def test_point_in_a_square(lat, lon, inside):
    assert point_in_polygon(lat, lon, SQUARE) is inside


@pytest.mark.parametrize(("lat", "lon", "inside"), [
    (2.0, 2.0, True), (2.0, 8.0, True), (8.0, 2.0, True), (8.0, 8.0, False), (6.0, 6.0, False),
])
def test_point_in_a_concave_polygon(lat, lon, inside):
    assert point_in_polygon(lat, lon, ELL) is inside


def test_point_in_polygon_agrees_with_the_simulators_paddocks():
    rng = random.Random(1)
    for paddock in paddocks.PADDOCKS:
        lat0, lon0, lat1, lon1 = paddock.bounds
        for _ in range(500):
            lat, lon = rng.uniform(lat0 - 0.001, lat1 + 0.001), rng.uniform(lon0 - 0.001, lon1 + 0.001)
            assert point_in_polygon(lat, lon, paddock.polygon) == paddock.contains(lat, lon)


def test_geofence_flags_only_positions_outside():
    rule = GeofenceRule(ELL)
    assert rule.score_learn_one(reading(0, {}, Location(2.0, 2.0))) == []
    assert rule.score_learn_one(reading(1, {})) == []  # no position: nothing to say
    (v,) = rule.score_learn_one(reading(2, {}, Location(8.0, 8.0)))
    assert (v.detector, v.metric, v.severity) == ("geofence", "location", "critical")
    with pytest.raises(ValueError):
        GeofenceRule([(0.0, 0.0), (1.0, 1.0)])


def test_stuck_needs_n_identical_readings_of_a_metric_that_used_to_vary():
    rule = StuckRule(n=5)
    values = [1.0, 1.2, 0.9] + [3.3] * 6 + [3.4]
    flagged = [bool(rule.score_learn_one(reading(i, {"m": v}))) for i, v in enumerate(values)]
    # Index 3 starts the run; its 5th reading (index 7) is the first verdict, then it stays stuck.
    assert flagged == [False] * 7 + [True, True, False]


def test_a_metric_that_never_varied_is_not_stuck():
    rule = StuckRule(n=3)
    assert not any(rule.score_learn_one(reading(i, {"switch": 0.0})) for i in range(50))


def test_stuck_epsilon_treats_tiny_changes_as_identical():
    rule = StuckRule(n=4, epsilon=0.01)
    values = [5.0, 7.0, 7.001, 7.002, 6.999, 7.0]
    assert [bool(rule.score_learn_one(reading(i, {"m": v}))) for i, v in enumerate(values)] == \
        [False, False, False, False, True, True]


def test_threshold_bounds_and_severity():
    rule = ThresholdRule({"dissolved_oxygen": (3.0, None, "critical"), "ph": (6.0, 9.0, "warning")})
    assert rule.score_learn_one(reading(0, {"dissolved_oxygen": 7.0, "ph": 7.5})) == []
    verdicts = rule.score_learn_one(reading(1, {"dissolved_oxygen": 2.5, "ph": 9.5}))
    assert [(v.metric, v.severity, v.threshold) for v in verdicts] == \
        [("dissolved_oxygen", "critical", 3.0), ("ph", "warning", 9.0)]


def test_rate_of_change_is_per_second_and_skips_disorder():
    rule = RateRule({"t": 0.1}, warmup=2)
    assert rule.score_learn_one(reading(0, {"t": 10.0})) == []
    assert rule.score_learn_one(reading(1, {"t": 15.0})) == []  # 5 per 60 s = 0.083/s
    (v,) = rule.score_learn_one(reading(2, {"t": 22.0}))  # 7 per 60 s = 0.117/s
    assert v.score == pytest.approx(7 / 60)
    late = Reading("d1", "soil_station", T0, 9, {"t": 100.0})  # older than the last one: no rate
    assert rule.score_learn_one(late) == []


def test_silent_devices_with_an_injected_now():
    now = T0 + timedelta(minutes=10)
    seen = {
        "quiet": (T0, 60.0),  # 600 s silent, expected every 60 s
        "fine": (now - timedelta(seconds=100), 60.0),  # 100 s < 3 × 60 s
        "slow": (T0 + timedelta(minutes=5), 600.0),  # 300 s < 3 × 600 s
        "edge": (now - timedelta(seconds=180), 60.0),  # exactly 3 intervals
    }
    assert silent_devices(seen, now, k=3) == [("quiet", 600.0), ("edge", 180.0)]
    assert is_silent(T0, 60.0, T0 + timedelta(seconds=179), 3) is False


def test_offline_learns_the_interval_and_ignores_outages_when_learning():
    rule = OfflineRule(k=3, min_readings=4)
    for i in range(4):
        rule.score_learn_one(reading(i, {"m": 1.0}, step_s=30))
    assert rule.expected_interval() == pytest.approx(30.0)
    last = T0 + timedelta(seconds=90)
    assert rule.check(last + timedelta(seconds=89)) is None
    v = rule.check(last + timedelta(seconds=90))
    assert v is not None and v.detector == "offline" and v.threshold == pytest.approx(90.0)
    assert rule.deadline() == last + timedelta(seconds=90)
    # The device comes back after a 10-minute outage: that gap does not teach a 10-minute interval.
    rule.score_learn_one(Reading("d1", "soil_station", last + timedelta(minutes=10), 5, {}))
    assert rule.expected_interval() == pytest.approx(30.0)


def test_offline_is_silent_until_it_knows_the_interval_unless_configured():
    learned = OfflineRule(k=3, min_readings=5)
    configured = OfflineRule(k=3, min_readings=1, interval_s=60.0)
    for rule in (learned, configured):
        rule.score_learn_one(reading(0, {}))
    much_later = T0 + timedelta(hours=1)
    assert learned.check(much_later) is None
    assert configured.check(much_later) is not None
