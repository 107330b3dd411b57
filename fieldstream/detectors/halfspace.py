"""Multivariate anomalies per device type: River's HalfSpaceTrees on block means.

One model per device type (not per device): HalfSpaceTrees costs tens of µs per
sample and a few hundred KB per model. Sampling keeps the per-reading cost a
running sum: each device's readings are averaged in blocks of `sample_every`,
and only the block mean is scored.

Devices of one type sit at different levels (one tank is warmer than the
next), so raw block means would make a device that is merely different look
anomalous for ever. Each feature is therefore the block mean's deviation from
that device's own recent block means (river.stats.EWMean / EWVar), in σ,
clipped to ±`z_clip` and mapped onto the known range [0, 1]; the shared model
learns which joint deviations are normal for the type. Samples are classified
with river.anomaly.QuantileFilter: a score at or above the running `q`
quantile is anomalous and the model does not learn from it. By construction
that flags a fraction 1 - q of samples, so a device must have `persistence`
anomalous samples in a row before it alerts: chance hits rarely repeat,
lasting changes do.

The model is per worker and device type, not in a changelog: after a
rebalance it warms up again, which is cheap and loses only sensitivity.
"""

from __future__ import annotations

import math
from typing import ClassVar

from river import stats

from fieldstream.detectors.base import DEVICE, Verdict
from fieldstream.detectors.river_models import HalfSpaceTrees, QuantileFilter
from fieldstream.schemas.reading import Reading


def _finite(v: object) -> bool:
    return (v.__class__ is float or v.__class__ is int) and v - v == 0  # type: ignore[operator]


class _DeviceNorm:
    """A device's recent block means, per metric: what its normal looks like."""

    __slots__ = ("blocks", "mean", "var", "streak")

    def __init__(self, features: tuple[str, ...], fading: float) -> None:
        self.blocks = 0
        self.streak = 0  # anomalous samples in a row
        self.mean = {f: stats.EWMean(fading) for f in features}
        self.var = {f: stats.EWVar(fading) for f in features}

    def learn(self, x: dict[str, float]) -> None:
        self.blocks += 1
        for f, v in x.items():
            self.mean[f].update(v)
            self.var[f].update(v)


class _Block:
    """A device's open block: per metric, the sum and count of its finite values.

    Running sums, not the readings' metric dicts: with 10,000 devices the dicts of open
    blocks (up to `sample_every` each) were ~1M live objects, 54 MB of a worker's peak.
    """

    __slots__ = ("readings", "sums", "counts")

    def __init__(self) -> None:
        self.readings = 0
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, float]) -> None:
        self.readings += 1
        sums, counts = self.sums, self.counts
        for k, v in metrics.items():
            if _finite(v):
                if k in sums:
                    sums[k] += v
                    counts[k] += 1
                else:
                    sums[k] = v
                    counts[k] = 1


class HalfSpaceDetector:
    """Per device type; scores a block mean of each device's readings."""

    name: ClassVar[str] = "halfspace"

    def __init__(
        self,
        sample_every: int = 30,
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        q: float = 0.999,
        warmup_samples: int = 500,
        device_warmup_blocks: int = 5,
        persistence: int = 2,
        fading: float = 0.1,
        z_clip: float = 6.0,
        seed: int | None = None,
    ) -> None:
        self.sample_every = sample_every
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.q = q
        self.warmup_samples = warmup_samples
        self.device_warmup_blocks = device_warmup_blocks
        self.persistence = persistence
        self.fading = fading
        self.z_clip = z_clip
        self.warmup = sample_every * max(1, warmup_samples)
        self.seed = seed
        self._filter = QuantileFilter(
            HalfSpaceTrees(n_trees=n_trees, height=height, window_size=window_size, seed=seed),
            q=q,
        )
        self._features: tuple[str, ...] | None = None  # fixed by the first complete block
        self._pending: dict[str, _Block] = {}  # device → its open block
        self._norms: dict[str, _DeviceNorm] = {}
        self.samples = 0
        self.fed: bool = False  # did the last reading complete a sample (for the alert cool-down)?

    def score_learn_one(self, reading: Reading) -> list[Verdict]:
        self.fed = False
        device = reading.device_id
        block = self._pending.get(device)
        if block is None:
            block = self._pending[device] = _Block()
        block.add(reading.metrics)
        if block.readings < self.sample_every:
            return []
        del self._pending[device]
        x = self._block_mean(block)
        if x is None:
            return []
        norm = self._norms.get(device)
        if norm is None:
            norm = self._norms[device] = _DeviceNorm(tuple(x), self.fading)
        if norm.blocks < self.device_warmup_blocks:
            norm.learn(x)
            return []
        self.fed = True
        return self._score_learn(x, norm, reading.device_type)

    def _block_mean(self, block: _Block) -> dict[str, float] | None:
        features = self._features
        if features is None:  # fixed by the first block: every metric it has a finite value for
            if not block.sums:
                return None
            features = self._features = tuple(sorted(block.sums))
        x: dict[str, float] = {}
        for f in features:
            n = block.counts.get(f)
            if not n:
                return None  # HalfSpaceTrees needs every feature; a partial sample is skipped, not imputed
            x[f] = block.sums[f] / n
        return x

    def _scaled(self, x: dict[str, float], norm: _DeviceNorm) -> dict[str, float]:
        """Deviation from the device's own normal, in σ, clipped and mapped onto [0, 1]."""
        c = self.z_clip
        out = {}
        for f, v in x.items():
            sd = math.sqrt(norm.var[f].get())
            z = (v - norm.mean[f].get()) / sd if sd > 0 else 0.0
            z = c if z > c else (-c if z < -c else z)
            out[f] = 0.5 + z / (2 * c)
        return out

    def _score_learn(self, x: dict[str, float], norm: _DeviceNorm, device_type: str) -> list[Verdict]:
        scaled = self._scaled(x, norm)
        hst = self._filter.anomaly_detector
        score = hst.score_one(scaled)
        warm = self.samples >= self.warmup_samples
        anomalous = warm and self._filter.classify(score)
        # QuantileFilter.learn_one would score again; do its two steps ourselves.
        if not anomalous:
            hst.learn_one(scaled)
        # The device's own normal learns even from an anomalous block (one block moves it by
        # `fading`), so a device that changes for good stops being flagged after a few blocks.
        norm.learn(x)
        self._filter.quantile.update(score)
        self.samples += 1
        norm.streak = norm.streak + 1 if anomalous else 0
        if norm.streak < self.persistence:
            return []
        cut = self._filter.quantile.get()
        worst = max(scaled, key=lambda f: abs(scaled[f] - 0.5))
        return [Verdict(self.name, DEVICE, None, score, cut, "warning",
                        f"last {self.sample_every} readings are unusual for a {device_type} "
                        f"(HalfSpaceTrees score {score:.3f} ≥ q{self.q:g} {cut:.3f}; most off: {worst})")]
