"""One conformance check run over every detector (River's `check_estimator` idea).

Each case gives a detector factory and a stream that makes it alert after its
warm-up. Every detector must: survive a pickle round-trip mid-stream and then
score exactly like the original; give the same verdicts for the same seed;
treat a NaN / inf / None value exactly like a missing metric (never crash,
never learn it); and stay silent before its warm-up.
"""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from fieldstream.detectors.base import Detector, Verdict
from fieldstream.detectors.drift import DriftDetector
from fieldstream.detectors.halfspace import HalfSpaceDetector
from fieldstream.detectors.rules import GeofenceRule, OfflineRule, RateRule, StuckRule, ThresholdRule
from fieldstream.detectors.zscore import ZScoreDetector
from fieldstream.schemas.reading import Location, Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STEP = timedelta(seconds=60)
SQUARE = [(0.0, 0.0), (0.0, 1.0), (1.0, 1.0), (1.0, 0.0)]


def reading(i: int, metrics: dict[str, float], location: Location | None = None, at: datetime | None = None) -> Reading:
    return Reading("dev-1", "soil_station", at or T0 + i * STEP, i, metrics, location=location)


def noisy(seed: int = 3) -> Callable[[int], float]:
    rng = random.Random(seed)
    return lambda i: 20.0 + 2.0 * math.sin(i / 15.0) + rng.gauss(0.0, 0.2)


@dataclass
class Case:
    make: Callable[[int], Detector]
    stream: Callable[[], list[Reading]]  # normal warm-up, then anomalies
    metric: str  # the input the anomalies are in
    warmup: int  # readings before the detector may alert
    absolute: bool = False  # a rule that alerts from the first reading (thresholds, geofence)
    probe: Callable[[Detector, Reading], list[Verdict]] | None = None

    def run(self, det: Detector, readings: list[Reading]) -> list[Verdict]:
        out: list[Verdict] = []
        for r in readings:
            out += self.probe(det, r) if self.probe else det.score_learn_one(r)
        return out


def zscore_stream() -> list[Reading]:
    v = noisy()
    out = [reading(i, {"temperature": v(i), "moisture": 30.0 + 0.01 * i}) for i in range(200)]
    for i in (120, 160, 161):
        out[i].metrics["temperature"] += 25.0
    return out


def stuck_stream() -> list[Reading]:
    v = noisy()
    return [reading(i, {"temperature": v(i) if not 100 <= i < 130 else 7.5}) for i in range(160)]


def threshold_stream() -> list[Reading]:
    v = noisy()
    return [reading(i, {"temperature": 45.0 if i in (50, 90) else v(i)}) for i in range(120)]


def rate_stream() -> list[Reading]:
    v = noisy()
    return [reading(i, {"temperature": v(i) + (30.0 if i in (60, 100) else 0.0)}) for i in range(120)]


def geofence_stream() -> list[Reading]:
    rng = random.Random(5)
    out = []
    for i in range(120):
        lat, lon = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)) if i not in (40, 41, 80) else (1.5, 0.5)
        out.append(reading(i, {"temperature": 20.0}, Location(lat, lon)))
    return out


def offline_stream() -> list[Reading]:
    # A reading every minute, with two silences of 10 minutes.
    times, t = [], T0
    for i in range(80):
        t += STEP * (10 if i in (40, 65) else 1)
        times.append(t)
    return [reading(i, {"temperature": 20.0}, at=t) for i, t in enumerate(times)]


def offline_probe(det: Detector, r: Reading) -> list[Verdict]:
    """Was the device offline just before this reading arrived? (The timer's view.)"""
    assert isinstance(det, OfflineRule)
    found = det.check(r.event_time - timedelta(microseconds=1))
    det.score_learn_one(r)
    return [found] if found else []


def shift_stream() -> list[Reading]:
    v = noisy()
    return [reading(i, {"temperature": v(i) + (8.0 if i >= 200 else 0.0)}) for i in range(300)]


def multi_stream() -> list[Reading]:
    rng = random.Random(9)
    out = []
    for i in range(400):
        a, b = rng.gauss(0.5, 0.05), rng.gauss(0.5, 0.05)
        if i >= 300 and i % 10 < 2:
            a, b = a + 3.0, b - 3.0
        out.append(reading(i, {"temperature": a, "humidity": b}))
    return out


CASES: dict[str, Case] = {
    "zscore": Case(lambda seed: ZScoreDetector(warmup=30, seed=seed), zscore_stream, "temperature", 30),
    "stuck": Case(lambda seed: StuckRule(n=10, seed=seed), stuck_stream, "temperature", 10),
    "threshold": Case(lambda seed: ThresholdRule({"temperature": (None, 40.0, "warning")}, seed=seed),
                      threshold_stream, "temperature", 0, absolute=True),
    "rate": Case(lambda seed: RateRule({"temperature": 0.2}, warmup=10, seed=seed), rate_stream, "temperature", 10),
    "geofence": Case(lambda seed: GeofenceRule(SQUARE, seed=seed), geofence_stream, "location", 0, absolute=True),
    "offline": Case(lambda seed: OfflineRule(k=3.0, min_readings=5, seed=seed), offline_stream, "temperature", 5,
                    probe=offline_probe),
    "drift_page_hinkley": Case(lambda seed: DriftDetector(block=5, warmup_blocks=5, threshold=10.0, seed=seed),
                               shift_stream, "temperature", 25),
    "drift_adwin": Case(lambda seed: DriftDetector(block=5, warmup_blocks=5, method="adwin", seed=seed),
                        shift_stream, "temperature", 25),
    "halfspace": Case(lambda seed: HalfSpaceDetector(sample_every=2, window_size=25, warmup_samples=60, q=0.95,
                                                     seed=seed),
                      multi_stream, "temperature", 120),
}


def spoil(readings: list[Reading], metric: str, bad: object, every: int = 7) -> tuple[list[Reading], list[Reading]]:
    """(readings with `metric` set to `bad` every n-th reading, the same readings with it removed)."""
    with_bad, without = [], []
    for i, r in enumerate(readings):
        if i % every != 3:
            with_bad.append(r)
            without.append(r)
            continue
        if metric == "location":
            lat = bad if isinstance(bad, float) else None
            with_bad.append(replace(r, location=Location(lat, 0.5)))  # type: ignore[arg-type]
            without.append(replace(r, location=None))
        else:
            with_bad.append(replace(r, metrics={**r.metrics, metric: bad}))
            without.append(replace(r, metrics={k: v for k, v in r.metrics.items() if k != metric}))
    return with_bad, without


@pytest.fixture(params=sorted(CASES), ids=sorted(CASES))
def case(request) -> Case:
    return CASES[request.param]


def test_it_is_a_detector_with_its_name_and_seed(case):
    det = case.make(7)
    assert isinstance(det, Detector)
    assert det.name and det.seed == 7


def test_the_stream_makes_it_alert(case):
    assert case.run(case.make(1), case.stream()), "the conformance stream must exercise the alert path"


def test_pickle_round_trip_scores_the_same(case):
    readings = case.stream()
    cut = len(readings) // 2
    original = case.make(1)
    case.run(original, readings[:cut])
    clone = pickle.loads(pickle.dumps(original))
    assert clone is not original
    rest_original = case.run(original, readings[cut:])
    rest_clone = case.run(clone, readings[cut:])
    assert rest_original and rest_original == rest_clone
    # And they stay in step: the whole stream once more gives the same verdicts again.
    assert case.run(original, readings) == case.run(clone, readings)


def test_same_seed_same_verdicts(case):
    a = case.run(case.make(11), case.stream())
    b = case.run(case.make(11), case.stream())
    assert a and a == b


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf"), None], ids=["nan", "inf", "-inf", "none"])
def test_a_bad_value_is_a_missing_value(case, bad):
    spoilt, stripped = spoil(case.stream(), case.metric, bad)
    a, b = case.make(1), case.make(1)
    verdicts_a = case.run(a, spoilt)
    verdicts_b = case.run(b, stripped)
    assert verdicts_a == verdicts_b  # the bad value was neither scored nor learned
    assert pickle.dumps(a) == pickle.dumps(b)
    assert verdicts_a  # and it still detects what it detects without them
    assert all(v.value is None or math.isfinite(v.value) for v in verdicts_a)


def test_a_missing_metric_is_skipped(case):
    det = case.make(1)
    readings = case.stream()
    case.run(det, readings[:40])
    empty = [reading(40 + i, {}, at=readings[40].event_time + i * timedelta(seconds=1)) for i in range(3)]
    other = [reading(43, {"unrelated": 1.0}, at=readings[40].event_time + timedelta(seconds=5))]
    verdicts = case.run(det, empty + other)
    assert all(v.metric != "unrelated" or case.metric == "unrelated" for v in verdicts)
    assert not [v for v in verdicts if v.metric == case.metric]


def test_cold_start_is_silent_until_warm(case):
    readings = case.stream()
    det = case.make(1)
    if case.absolute:
        # Bounds need no history: silent on normal readings from the first one, alert on the first breach.
        normal = [r for r in readings if not case.run(case.make(1), [r])]
        assert case.run(det, normal[:5]) == []
        breach = next(r for r in readings if case.run(case.make(1), [r]))
        assert case.run(case.make(1), [breach])
        return
    # The readings up to the first one a warm detector flags, fed to a fresh one: too few to judge.
    warm = case.make(1)
    first = next(i for i, r in enumerate(readings) if case.run(warm, [r]))
    cold = readings[max(0, first - case.warmup + 2): first + 1]
    assert len(cold) == case.warmup - 1 and case.run(det, cold) == []
