"""A DDSketch: bounded, mergeable quantile estimates with a relative-error guarantee.

Used only when a metric has more values in one pane than are kept exactly.

Estimator (Masson, Rim, Lee, "DDSketch", VLDB 2019): a value x > 0 is counted in
bin i = ceil(log_γ x), γ = (1 + α) / (1 − α); the bin answers 2γ^i / (1 + γ).
Negative values go to a mirror store, |x| < `ZERO` to a zero bin.

Error bound: for rank r = ⌊q·(n − 1)⌋, the estimate x̂ of the r-th smallest value
x_r satisfies |x̂ − x_r| ≤ α·|x_r| (values in the zero bin: |x̂ − x_r| < ZERO),
as long as no bins were collapsed. Bins collapse only when the magnitudes seen
span more than γ^max_bins (about 10^8.8 for α = 1 % and 1024 bins); the smallest
magnitudes then share a bin and lose the guarantee, the rest keep it.
Merging two sketches adds their bins: the merge is exact (same as one sketch
fed every value), so the bound holds for merged windows too.

Note the exact path interpolates (the median of an even count is the mean of
the two middle values); the sketch answers one stored value's bin instead.
"""

from __future__ import annotations

from array import array
from math import ceil, exp, log

ZERO = 1e-9  # |x| below this counts as 0


class Mapping:
    """Value ↔ bin index for one relative accuracy; shared, never stored per sketch."""

    __slots__ = ("relative_accuracy", "max_bins", "_gamma", "_multiplier")

    def __init__(self, relative_accuracy: float = 0.01, max_bins: int = 1024) -> None:
        if not 0 < relative_accuracy < 1:
            raise ValueError(f"relative accuracy {relative_accuracy} must be in (0, 1)")
        if max_bins < 1:
            raise ValueError(f"max_bins {max_bins} must be positive")
        self.relative_accuracy = relative_accuracy
        self.max_bins = max_bins
        self._gamma = (1 + relative_accuracy) / (1 - relative_accuracy)
        self._multiplier = 1 / log(self._gamma)

    def index(self, magnitude: float) -> int:
        return ceil(log(magnitude) * self._multiplier)

    def value(self, index: int) -> float:
        return 2 * exp(index / self._multiplier) / (1 + self._gamma)


class _Store:
    """Dense counts of bins offset .. offset+len-1, collapsing the lowest bins past max_bins."""

    __slots__ = ("offset", "counts")

    def __init__(self) -> None:
        self.offset = 0
        self.counts = array("q")

    def __getstate__(self) -> tuple[int, bytes]:
        return self.offset, self.counts.tobytes()

    def __setstate__(self, state: tuple[int, bytes]) -> None:
        self.offset = state[0]
        self.counts = array("q")
        self.counts.frombytes(state[1])

    def total(self) -> int:
        return sum(self.counts)

    def _span(self, lo: int, hi: int, max_bins: int) -> int:
        """Make room for bins lo..hi (folding what falls below the kept range); the lowest kept bin."""
        if self.counts:
            lo = min(lo, self.offset)
            hi = max(hi, self.offset + len(self.counts) - 1)
        lo = max(lo, hi - max_bins + 1)
        if self.counts and lo == self.offset and hi == self.offset + len(self.counts) - 1:
            return lo
        grown = array("q", bytes(8 * (hi - lo + 1)))
        for j, count in enumerate(self.counts):
            grown[max(self.offset + j, lo) - lo] += count
        self.offset, self.counts = lo, grown
        return lo

    def add(self, index: int, count: int, max_bins: int) -> None:
        lo = self._span(index, index, max_bins)
        self.counts[max(index, lo) - lo] += count

    def merge(self, other: _Store, max_bins: int) -> None:
        if not other.counts:
            return
        lo = self._span(other.offset, other.offset + len(other.counts) - 1, max_bins)
        for j, count in enumerate(other.counts):
            if count:
                self.counts[max(other.offset + j, lo) - lo] += count


class DDSketch:
    __slots__ = ("positive", "negative", "zero")

    def __init__(self) -> None:
        self.positive = _Store()
        self.negative = _Store()
        self.zero = 0

    def add(self, value: float, mapping: Mapping) -> None:
        if value > ZERO:
            self.positive.add(mapping.index(value), 1, mapping.max_bins)
        elif value < -ZERO:
            self.negative.add(mapping.index(-value), 1, mapping.max_bins)
        else:
            self.zero += 1

    def merge(self, other: DDSketch, mapping: Mapping) -> None:
        self.positive.merge(other.positive, mapping.max_bins)
        self.negative.merge(other.negative, mapping.max_bins)
        self.zero += other.zero

    def count(self) -> int:
        return self.positive.total() + self.negative.total() + self.zero

    def quantile(self, q: float, mapping: Mapping) -> float:
        """Estimate of the value of rank ⌊q·(n − 1)⌋ (0-based); NaN when empty."""
        n = self.count()
        if n == 0:
            return float("nan")
        rank = q * (n - 1)
        seen = 0
        neg = self.negative
        for j in range(len(neg.counts) - 1, -1, -1):  # most negative first
            seen += neg.counts[j]
            if seen > rank:
                return -mapping.value(neg.offset + j)
        seen += self.zero
        if seen > rank:
            return 0.0
        pos = self.positive
        for j, count in enumerate(pos.counts):
            seen += count
            if seen > rank:
                return mapping.value(pos.offset + j)
        raise AssertionError("unreachable: the ranks add up to the count")
