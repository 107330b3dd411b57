"""HalfSpaceDetector's blocks: what a block mean is, and that an open block holds no reading."""

from __future__ import annotations

import gc
import math
import weakref
from datetime import UTC, datetime, timedelta

from fieldstream.detectors.halfspace import HalfSpaceDetector
from fieldstream.schemas.reading import Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


class Metrics(dict):
    """A metrics dict a weak reference can watch."""


def reading(i: int, metrics: dict[str, float], device: str = "tank-1") -> Reading:
    return Reading(device, "tank_probe", T0 + timedelta(seconds=10 * i), i, metrics)


def test_a_block_mean_is_the_mean_of_each_features_finite_values():
    det = HalfSpaceDetector(sample_every=4, seed=1)
    block = [{"ph": 7.0, "temp": 10.0}, {"ph": math.nan, "temp": 11.0}, {"ph": 7.5}, {"ph": 8.0, "temp": math.inf}]
    means = []
    det._block_mean = lambda b, mean=det._block_mean: means.append(mean(b)) or means[-1]
    for i, m in enumerate(block):
        det.score_learn_one(reading(i, m))
    assert means == [{"ph": (7.0 + 7.5 + 8.0) / 3, "temp": (10.0 + 11.0) / 2}]


def test_a_block_without_a_finite_value_of_a_feature_is_skipped():
    det = HalfSpaceDetector(sample_every=2, seed=1)
    means = []
    det._block_mean = lambda b, mean=det._block_mean: means.append(mean(b)) or means[-1]
    for i, m in enumerate([{"ph": 7.0, "temp": 10.0}, {"ph": 7.1}, {"ph": 7.2}, {"ph": 7.3, "temp": math.nan}]):
        det.score_learn_one(reading(i, m))
    assert means == [{"ph": 7.05, "temp": 10.0}, None]  # the features are fixed by the first block


def test_an_open_block_keeps_no_readings_metrics():
    det = HalfSpaceDetector(sample_every=30, seed=1)
    watched = []
    for i in range(10):  # a third of a block: all of it still open
        metrics = Metrics(ph=7.0 + i / 100, temp=10.0)
        watched.append(weakref.ref(metrics))
        det.score_learn_one(reading(i, metrics))
        del metrics
    gc.collect()
    assert [w() for w in watched] == [None] * 10
