"""Slow drift of one device's metrics: Page-Hinkley (or ADWIN) on block means.

Drift is a change in the mean too slow for the z-score, whose forecast follows
it. Feeding the drift test with means of `block` readings cuts its cost by
`block` and its noise by √block. Inputs are offsets from a reference level,
standardised by the noise of successive block means (half their mean squared
difference, which a slow drift barely moves), so λ and δ are in σ units
whatever the metric's scale. A detection is an informational alert. River's
Page-Hinkley resets itself after one (and the reference moves to the new
level), so a drift that goes on is reported again; ADWIN just drops the old
part of its window, so its reference stays put.

Off by default (DetectionSettings.drift_enabled): on a metric with a daily
cycle the test reports the cycle itself; see docs/DETECTION.md.
"""

from __future__ import annotations

import math
from typing import ClassVar

from river import stats

from fieldstream.detectors.base import Verdict
from fieldstream.detectors.river_models import ADWIN, PageHinkley
from fieldstream.schemas.reading import Reading


class _Stream:
    __slots__ = ("total", "count", "prev", "ref", "noise", "blocks", "test")

    def __init__(self, test: PageHinkley | ADWIN) -> None:
        self.total = 0.0
        self.count = 0
        self.prev: float | None = None  # previous block mean
        self.ref: float | None = None  # level the test measures from, reset after each drift
        self.noise = stats.EWMean(0.05)  # ≈ 2σ² of block means, from successive differences
        self.blocks = 0
        self.test = test


class DriftDetector:
    """Per-device; one drift test per metric, on block means."""

    name: ClassVar[str] = "drift"

    def __init__(
        self,
        block: int = 10,
        method: str = "page_hinkley",
        threshold: float = 25.0,
        delta: float = 0.5,
        adwin_delta: float = 0.002,
        warmup_blocks: int = 10,
        seed: int | None = None,  # deterministic; accepted for a uniform constructor
    ) -> None:
        if method not in ("page_hinkley", "adwin"):
            raise ValueError(f"unknown drift method {method!r}")
        self.block = block
        self.method = method
        self.threshold = threshold
        self.delta = delta
        self.adwin_delta = adwin_delta
        self.warmup_blocks = warmup_blocks
        self.warmup = block * warmup_blocks
        self.seed = seed
        self._streams: dict[str, _Stream] = {}
        self.fed: bool = False  # did the last reading complete a block (for the alert cool-down)?

    def _new_test(self) -> PageHinkley | ADWIN:
        if self.method == "adwin":
            # clock=1: check for a cut at every block mean; they are few, so that is cheap.
            return ADWIN(delta=self.adwin_delta, clock=1, min_window_length=self.warmup_blocks)
        return PageHinkley(min_instances=self.warmup_blocks, delta=self.delta,
                           threshold=self.threshold, alpha=1.0)

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        out: list[Verdict] = []
        self.fed = False
        streams = self._streams
        for metric, x in reading.metrics.items():
            try:
                if x - x:  # NaN or ±inf
                    continue
            except TypeError:
                continue
            s = streams.get(metric)
            if s is None:
                s = streams[metric] = _Stream(self._new_test())
            s.total += x
            s.count += 1
            if s.count < self.block:
                continue
            mean = s.total / s.count
            s.total = 0.0
            s.count = 0
            self.fed = True
            verdict = self._feed(metric, s, mean)
            if verdict is not None:
                out.append(verdict)
        return out

    def _feed(self, metric: str, s: _Stream, mean: float) -> Verdict | None:
        prev, s.prev = s.prev, mean
        if prev is None:
            return None
        d = mean - prev
        s.noise.update(d * d)
        s.blocks += 1
        sigma = math.sqrt(s.noise.get() / 2)
        if sigma <= 1e-12 * max(1.0, abs(mean)):
            return None  # a constant: nothing to standardise by
        if s.ref is None:
            s.ref = mean
        # Standardise the offset, not the level: σ's wobble then cannot look like drift.
        s.test.update((mean - s.ref) / sigma)
        if s.blocks < self.warmup_blocks or not s.test.drift_detected:
            return None
        if self.method == "page_hinkley":
            s.ref = None  # measured afresh from the new level, like the reset test
        threshold = self.threshold if self.method == "page_hinkley" else self.adwin_delta
        return Verdict(self.name, metric, mean, None, threshold, "info",
                       f"{metric} drifted (block mean {mean:.4g}, block σ {sigma:.3g})")
