"""Robust streaming z-score per metric of one device: spikes, bursts and level shifts.

Each metric's expected value is a Holt linear-trend forecast (an exponentially
weighted level plus an exponentially weighted slope): sensors follow daily
cycles tens of noise σ tall, and a level without a slope lags a rising or
falling cycle by slope/α, which would read as an anomaly. The spread is the
exponentially weighted mean squared forecast error (river.stats.EWMean),
deliberately slower than the level so that one odd hour neither shrinks nor
inflates σ. Warm-up statistics and excursions use river.stats.Var.

A reading is anomalous if |z| > threshold (a spike, a burst) or if it is the
`shift_after`-th reading in a row beyond half the threshold on the same side
(a level shift too small for any single reading to stand out). Readings
beyond half the threshold never move the level, so an anomaly cannot drag the
baseline towards itself: the forecast just carries on. A level shift would
then alert forever; instead an excursion lasting `rebaseline_after` readings
is accepted as the new level, re-seeded from the excursion's own mean and
variance, and the open alert resolves through the normal cool-down.

Forecasts are per reading, so the first reading after a silence of more than
`gap_factor` typical intervals is not judged: the level is re-anchored on it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar

from river import stats

from fieldstream.detectors.base import Verdict
from fieldstream.schemas.reading import Reading


class _Baseline:
    """What one metric has learned. Slots keep it small: there is one per device and metric."""

    __slots__ = ("n", "level", "trend", "warm", "msd", "side", "run")

    def __init__(self, x: float) -> None:
        self.n = 1
        self.level = x
        self.trend = 0.0
        self.warm: stats.Var | None = stats.Var()  # forecast errors during warm-up
        self.msd: stats.EWMean | None = None  # mean squared forecast error, once warm
        self.side = 0  # sign of the current excursion, 0 if none
        self.run: stats.Var | None = None  # values of the current excursion


class ZScoreDetector:
    """Per-device detector; one baseline per metric, created on first sight."""

    name: ClassVar[str] = "zscore"

    def __init__(
        self,
        threshold: float = 5.0,
        warmup: int = 30,
        fading: float = 0.3,
        trend_fading: float = 0.05,
        var_fading: float = 0.01,
        shift_after: int = 4,
        rebaseline_after: int = 40,
        min_std_rel: float = 1e-4,
        min_std_abs: float = 1e-6,
        gap_factor: float = 5.0,
        seed: int | None = None,  # deterministic; accepted for a uniform constructor
    ) -> None:
        self.threshold = threshold
        self.warmup = warmup
        self.fading = fading
        self.trend_fading = trend_fading
        self.var_fading = var_fading
        self.shift_after = shift_after
        self.rebaseline_after = rebaseline_after
        self.min_std_rel = min_std_rel
        self.min_std_abs = min_std_abs
        self.gap_factor = gap_factor
        self.seed = seed
        self._baselines: dict[str, _Baseline] = {}
        self._last_seen: datetime | None = None
        self._interval = stats.EWMean(0.1)  # typical seconds between readings
        self._intervals = 0

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        out: list[Verdict] = []
        baselines = self._baselines
        thr = self.threshold
        resume = self._after_gap(reading.event_time)
        for metric, x in reading.metrics.items():
            try:
                if x - x:  # NaN or ±inf: neither scored nor learned
                    continue
            except TypeError:  # None or not a number
                continue
            b = baselines.get(metric)
            if b is None:
                baselines[metric] = _Baseline(x)
                continue
            if resume:
                # Back after a silence: a per-reading forecast is stale (the daily cycle moved on).
                b.level = x
                b.side = 0
                b.run = None
                continue
            forecast = b.level + b.trend
            e = x - forecast
            msd = b.msd
            if msd is None:  # warming up: learn everything, judge nothing
                b.warm.update(e)
                self._learn(b, x, forecast)
                b.n += 1
                if b.n >= self.warmup:
                    b.msd = stats.EWMean(self.var_fading)
                    b.msd.update(b.warm.get())  # an EWMean's first update sets it exactly
                    b.warm = None
                continue
            std = math.sqrt(msd.get())
            floor = self.min_std_rel * abs(forecast)
            if floor < self.min_std_abs:
                floor = self.min_std_abs
            if std < floor:
                std = floor
            z = e / std
            half = 0.5 * thr
            if -half <= z <= half:  # normal: any excursion is over
                b.side = 0
                b.run = None
                msd.update(e * e)
                self._learn(b, x, forecast)
                continue
            # Beyond half the threshold: part of an excursion; the level is not learned from it.
            b.level = forecast
            side = 1 if z > 0 else -1
            if b.side != side:
                b.side = side
                b.run = stats.Var()
            run = b.run
            run.update(x)
            n = int(run.mean.n)
            outlier = z > thr or z < -thr
            if not outlier:
                msd.update(e * e)  # a plausible reading still tells how noisy the metric is
            if outlier or n >= self.shift_after:
                az = abs(z)
                why = (f"is {z:+.1f}σ from its expected {forecast:.4g}" if outlier
                       else f"has stayed {'above' if z > 0 else 'below'} its expected value for {n} readings "
                            f"(now {z:+.1f}σ from {forecast:.4g})")
                out.append(Verdict(self.name, metric, x, az, thr if outlier else half,
                                   "critical" if az >= 2 * thr else "warning",
                                   f"{metric}={x:.4g} {why} (σ={std:.3g})"))
            if n >= self.rebaseline_after:
                self._rebaseline(b)
        return out

    def _after_gap(self, t: datetime) -> bool:
        """Whether this reading ends a silence of more than `gap_factor` typical intervals."""
        last = self._last_seen
        if last is None or t > last:
            self._last_seen = t
        if last is None or t <= last:
            return False
        gap = (t - last).total_seconds()
        if self._intervals >= 3 and gap > self.gap_factor * self._interval.get():
            return True
        self._interval.update(gap)
        self._intervals += 1
        return False

    def _learn(self, b: _Baseline, x: float, forecast: float) -> None:
        """Holt's update: level towards x, slope towards the level's change."""
        level = forecast + self.fading * (x - forecast)
        b.trend += self.trend_fading * (level - b.level - b.trend)
        b.level = level

    def _rebaseline(self, b: _Baseline) -> None:
        """A long one-sided excursion is the new normal: re-seed from its own statistics."""
        run, old = b.run, b.msd.get()
        b.msd = stats.EWMean(self.var_fading)
        b.msd.update(max(run.get(), old))  # never trust a narrower spread at once
        b.level = run.mean.get()
        b.trend = 0.0
        b.side = 0
        b.run = None

    def baseline(self, metric: str) -> tuple[float, float] | None:
        """(next forecast, σ) of a metric once warmed up."""
        b = self._baselines.get(metric)
        if b is None or b.msd is None:
            return None
        return b.level + b.trend, math.sqrt(b.msd.get())
