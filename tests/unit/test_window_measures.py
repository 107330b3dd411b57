"""Pane values and the DDSketch: order independence, merging, sketch accuracy, pickling."""

from __future__ import annotations

import math
import pickle
import random
import statistics
from array import array

import numpy as np
import pytest

from fieldstream.windows.engine import summarize as summarize_metric
from fieldstream.windows.measures import MeasureConfig, Sketched
from fieldstream.windows.sketch import DDSketch, Mapping
from fieldstream.windows.state import Pane, _pane_before_format_3

T0 = 1_709_294_400_000_000  # µs


def readings(n: int, seed: int = 0) -> list[tuple[int, int, float]]:
    rng = random.Random(seed)
    return [(T0 + i * 1_000_000 + rng.randrange(500_000), i, round(rng.gauss(20, 5), rng.choice((1, 6))))
            for i in range(n)]


def accumulate(items, config: MeasureConfig) -> Pane:
    pane = Pane()
    for t, seq, value in items:
        pane.add(t, seq, {0: value}, config)
    return pane


def summarize(panes: list[Pane], config: MeasureConfig):
    return summarize_metric(panes, 0, config)


@pytest.mark.parametrize("exact_values", [256, 8])
def test_arrival_order_does_not_change_the_result(exact_values: int) -> None:
    config = MeasureConfig(exact_values)
    items = readings(40)
    in_order = summarize([accumulate(items, config)], config)
    shuffled = items[:]
    random.Random(1).shuffle(shuffled)
    out_of_order = summarize([accumulate(shuffled, config)], config)
    for name in ("count", "min", "max", "first_t", "first_value", "last_t", "last_value", "median", "p95"):
        assert getattr(out_of_order, name) == getattr(in_order, name), name
    for name in ("sum", "mean", "variance"):
        assert math.isclose(getattr(out_of_order, name), getattr(in_order, name), rel_tol=1e-12), name
    assert in_order.first_t == T0 + (items[0][0] - T0) and in_order.last_value == items[-1][2]


def test_equal_event_times_are_ordered_by_seq() -> None:
    config = MeasureConfig()
    acc = accumulate([(T0, 2, 2.0), (T0, 1, 1.0), (T0, 3, 3.0)], config)
    m = summarize([acc], config)
    assert (m.first_value, m.last_value, m.rate_of_change) == (1.0, 3.0, 0.0)


def test_exact_panes_merge_to_exact_measures() -> None:
    config = MeasureConfig()
    items = readings(101)
    panes = [accumulate(items[i:i + 17], config) for i in range(0, len(items), 17)]
    m = summarize(panes, config)
    values = [v for _, _, v in items]
    assert m.exact and m.count == 101 and m.sum == math.fsum(values)
    assert m.median == statistics.median(values) and m.p95 == float(np.percentile(values, 95))
    assert math.isclose(m.variance, statistics.pvariance(values), rel_tol=1e-12)
    assert m.rate_of_change == (items[-1][2] - items[0][2]) / ((items[-1][0] - items[0][0]) / 1e6)


@pytest.mark.parametrize("distribution", ["normal", "lognormal", "signed", "zeros"])
def test_sketched_panes_stay_within_the_documented_error(distribution: str) -> None:
    rng = random.Random(3)
    draw = {
        "normal": lambda: rng.gauss(400, 50),
        "lognormal": lambda: rng.lognormvariate(0, 2),
        "signed": lambda: rng.gauss(0, 10),
        "zeros": lambda: rng.choice((0.0, 0.0, 1.5, -2.5)),
    }[distribution]
    config = MeasureConfig(exact_values=64, mapping=Mapping(0.01, 1024))
    items = [(T0 + i, i, draw()) for i in range(3000)]
    panes = [accumulate(items[i:i + 700], config) for i in range(0, len(items), 700)]
    assert any(p.sketches is not None for p in panes)
    m = summarize(panes, config)
    values = sorted(v for _, _, v in items)
    assert not m.exact and m.count == len(values)
    assert math.isclose(m.sum, math.fsum(values), rel_tol=1e-12, abs_tol=1e-9)
    assert math.isclose(m.mean, statistics.fmean(values), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(m.variance, statistics.pvariance(values), rel_tol=1e-9)
    assert (m.min, m.max) == (values[0], values[-1])
    for q, estimate in ((0.5, m.median), (0.95, m.p95)):
        target = values[int(q * (len(values) - 1))]
        assert abs(estimate - target) <= 0.01 * abs(target) + 1e-9, (q, estimate, target)


def test_merged_sketches_equal_one_sketch_of_everything() -> None:
    mapping = Mapping(0.02, 64)
    rng = random.Random(5)
    values = [rng.lognormvariate(0, 3) * rng.choice((1, -1)) for _ in range(2000)]
    whole, parts = DDSketch(), [DDSketch() for _ in range(4)]
    for i, value in enumerate(values):
        whole.add(value, mapping)
        parts[i % 4].add(value, mapping)
    merged = DDSketch()
    for part in parts:
        merged.merge(part, mapping)
    for q in (0.0, 0.1, 0.5, 0.95, 1.0):
        assert merged.quantile(q, mapping) == whole.quantile(q, mapping)
    assert len(merged.positive.counts) <= 64 and merged.count() == len(values)


def test_collapsing_keeps_the_high_quantiles_accurate() -> None:
    # 200 bins of 1 % span a factor γ^200 ≈ 54: too few for values spanning 1e-6 .. 1e3,
    # so the smallest share a bin, while quantiles within 54x of the largest stay exact to 1 %.
    mapping = Mapping(0.01, 200)
    sketch = DDSketch()
    values = sorted([10 ** random.Random(i).uniform(-6, 3) for i in range(1000)])
    for value in values:
        sketch.add(value, mapping)
    assert len(sketch.positive.counts) == 200
    for q in (0.95, 0.99):
        target = values[int(q * (len(values) - 1))]
        assert abs(sketch.quantile(q, mapping) - target) <= 0.01 * target
    low = values[int(0.05 * (len(values) - 1))]
    assert abs(sketch.quantile(0.05, mapping) - low) > 0.01 * low  # the collapsed end lost its bound


def test_panes_pickle() -> None:
    config = MeasureConfig(exact_values=8)
    exact = accumulate(readings(5), config)
    sketched = accumulate(readings(50), config)
    assert exact.sketches is None and sketched.sketches is not None
    for pane in (exact, sketched):
        copy = pickle.loads(pickle.dumps(pane))
        assert summarize([copy], config) == summarize([pane], config)


def test_a_pane_keeps_metrics_a_reading_lacked_apart() -> None:
    config = MeasureConfig()
    pane = Pane()
    pane.add(T0 + 2, 2, {0: 2.0, 1: 20.0}, config)
    pane.add(T0 + 1, 1, {1: 10.0}, config)  # earlier, without metric 0
    pane.add(T0 + 3, 3, {0: 3.0, 2: 300.0}, config)  # a metric first seen now: the rows widen
    pane.add(T0 + 4, 4, {1: 40.0}, config)
    first = summarize_metric([pane], 0, config)
    assert (first.count, first.sum, first.first_value, first.last_value) == (2, 5.0, 2.0, 3.0)
    second = summarize_metric([pane], 1, config)
    assert (second.count, second.sum, second.first_t, second.last_t) == (3, 70.0, T0 + 1, T0 + 4)
    third = summarize_metric([pane], 2, config)
    assert (third.count, third.first_value, third.last_value) == (1, 300.0, 300.0)
    assert summarize_metric([pane], 3, config) is None


def test_a_pane_pickled_before_format_3_with_a_sketched_metric_keeps_its_exact_ones() -> None:
    config = MeasureConfig()
    sketched = Sketched.from_values([1.0, 2.0, 3.0], (T0, 1, 1.0, T0 + 2, 3, 3.0), config.mapping)
    exact = array("d", [T0, 1, 10.0, T0 + 2, 3, 30.0, 10.0, 20.0, 30.0]).tobytes()
    pane = _pane_before_format_3((array("q", [1, 2, 3]).tobytes(), (sketched, exact), None))
    assert summarize_metric([pane], 0, config).count == 3
    pane.add(T0 + 5, 4, {1: 40.0}, config)
    m = summarize_metric([pane], 1, config)
    assert (m.count, m.sum, m.first_value, m.last_value, m.exact) == (4, 100.0, 10.0, 40.0, False)


def test_a_pane_turns_to_sketches_past_its_exact_readings_and_loses_no_metric() -> None:
    config = MeasureConfig(exact_values=4)
    pane = Pane()
    for seq in range(10):
        pane.add(T0 + seq, seq, {0: float(seq), 1: 100.0 + seq} if seq % 2 else {0: float(seq)}, config)
    assert pane.sketches is not None and not pane.rows
    m0, m1 = summarize_metric([pane], 0, config), summarize_metric([pane], 1, config)
    assert (m0.count, m0.sum, m0.first_value, m0.last_value) == (10, 45.0, 0.0, 9.0)
    assert (m1.count, m1.sum, m1.first_t, m1.last_t) == (5, 525.0, T0 + 1, T0 + 9)
