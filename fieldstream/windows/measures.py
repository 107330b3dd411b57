"""One metric's measures over a window, from its panes' values.

Memory is what matters here (10,000 devices × ~4 metrics × ~6 live panes). A pane
keeps its readings exactly as one flat `array('d')` of rows (state.Pane), and a
window's measures of one metric are computed at close time from the values of that
metric's column and its first and last reading by event time (ties broken by seq),
so the arrival order never changes a result: sums with `math.fsum` (correctly
rounded), variance two-pass, median and p95 from the sorted values.

Past `exact_values` readings in one pane, the pane keeps per metric a `Sketched`
instead: streaming moments (count, Neumaier-compensated sum, Welford mean and M2
merged with Chan's formula, min, max) plus a DDSketch for median and p95 (relative
error ≤ α on the value of rank ⌊q·(n−1)⌋, see `sketch`). A window with any sketched
pane is summarised that way; otherwise it is exact.

Quantile definitions on the exact path: the median is the middle value, or the
mean of the two middle values (as `statistics.median`); p95 is linear
interpolation between closest ranks (Hyndman & Fan type 7, numpy's default
"linear", computed with numpy's rounding).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from math import fsum, sqrt
from operator import mul
from typing import NamedTuple

from fieldstream.windows.sketch import DDSketch, Mapping


@dataclass(frozen=True, slots=True)
class MeasureConfig:
    exact_values: int = 256  # readings kept exactly per pane
    mapping: Mapping = Mapping()


# A metric's first and last reading by (event time, seq): (first_t, first_seq, first_v, last_t, last_seq, last_v).
Ends = Sequence[float]


def _update_ends(ends: array, t: float, seq: float, value: float) -> None:
    if t < ends[0] or (t == ends[0] and seq < ends[1]):
        ends[0], ends[1], ends[2] = t, seq, value
    if t > ends[3] or (t == ends[3] and seq > ends[4]):
        ends[3], ends[4], ends[5] = t, seq, value


class Sketched:
    """Streaming moments and a DDSketch, for panes with more values than are kept exactly."""

    __slots__ = ("ends", "count", "total", "comp", "mean", "m2", "min", "max", "sketch")

    def __init__(self) -> None:
        self.ends = array("d", (float("inf"), 0.0, 0.0, float("-inf"), 0.0, 0.0))
        self.count = 0
        self.total = 0.0  # Neumaier-compensated sum: total + comp
        self.comp = 0.0
        self.mean = 0.0
        self.m2 = 0.0  # sum of squared deviations from the mean (Welford)
        self.min = float("inf")
        self.max = float("-inf")
        self.sketch = DDSketch()

    def __getstate__(self) -> tuple:
        return (self.ends.tobytes(), self.count, self.total, self.comp, self.mean, self.m2,
                self.min, self.max, self.sketch)

    def __setstate__(self, state: tuple) -> None:
        ends, self.count, self.total, self.comp, self.mean, self.m2, self.min, self.max, self.sketch = state
        self.ends = array("d")
        self.ends.frombytes(ends)

    @classmethod
    def from_values(cls, values: Sequence[float], ends: Ends, mapping: Mapping) -> Sketched:
        """A sketch of exactly kept values, with their first and last reading."""
        out = cls()
        out.ends = array("d", ends)
        for value in values:
            out.sketch.add(value, mapping)
        out.count = len(values)
        out.total = fsum(values)
        out.mean = out.total / out.count
        out.m2 = _squared_deviations(values, out.mean)
        out.min, out.max = min(values), max(values)
        return out

    def add(self, t: int, seq: int, value: float, mapping: Mapping) -> None:
        _update_ends(self.ends, t, seq, value)
        self.count += 1
        total = self.total + value
        if abs(self.total) >= abs(value):
            self.comp += (self.total - total) + value
        else:
            self.comp += (value - total) + self.total
        self.total = total
        delta = value - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (value - self.mean)
        self.min = min(self.min, value)
        self.max = max(self.max, value)
        self.sketch.add(value, mapping)

    def merge(self, other: Sketched, mapping: Mapping) -> None:
        _update_ends(self.ends, other.ends[0], other.ends[1], other.ends[2])
        _update_ends(self.ends, other.ends[3], other.ends[4], other.ends[5])
        n = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.mean += delta * other.count / n
        self.count = n
        self.total, self.comp = _two_sum(self.total, other.total, self.comp + other.comp)
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)
        self.sketch.merge(other.sketch, mapping)


class Summary(NamedTuple):  # a tuple: built once per aggregate, a dataclass's __init__ cost more
    count: int
    sum: float
    mean: float
    min: float
    max: float
    variance: float  # population
    stddev: float
    first_t: int  # µs
    first_value: float
    last_t: int
    last_value: float
    median: float
    p95: float
    exact: bool  # False when median and p95 are sketch estimates

    @property
    def range(self) -> float:
        return self.max - self.min

    @property
    def rate_of_change(self) -> float:
        """(last − first) per second between them; 0 for one reading or equal times."""
        seconds = (self.last_t - self.first_t) / 1e6
        return (self.last_value - self.first_value) / seconds if seconds > 0 else 0.0


def summarize_sketched(parts: Sequence[Sketched | tuple[Sequence[float], Ends]], mapping: Mapping) -> Summary:
    """The measures of a window's panes of one metric when some are sketched: each part a
    `Sketched`, or a pane's exact (values, ends)."""
    merged = Sketched()
    for part in parts:
        merged.merge(part if isinstance(part, Sketched) else Sketched.from_values(part[0], part[1], mapping), mapping)
    return _summarize_sketched(merged, mapping)


def summarize_exact(values: list[float], ends: Ends) -> Summary:
    """The measures of a window's values of one metric, kept exactly (`values` is sorted in place)."""
    values.sort()
    n = len(values)
    total = fsum(values)
    mean = total / n
    variance = max(_squared_deviations(values, mean) / n, 0.0)
    mid = n // 2
    median = values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2
    return Summary(
        count=n, sum=total, mean=mean, min=values[0], max=values[-1], variance=variance,
        stddev=sqrt(variance), first_t=int(ends[0]), first_value=ends[2], last_t=int(ends[3]),
        last_value=ends[5], median=median, p95=_linear_quantile(values, 0.95), exact=True,
    )


def _summarize_sketched(acc: Sketched, mapping: Mapping) -> Summary:
    ends = acc.ends
    variance = max(acc.m2 / acc.count, 0.0)

    def quantile(q: float) -> float:
        # The bin's answer may lie just outside the values seen: clamp to them.
        return min(max(acc.sketch.quantile(q, mapping), acc.min), acc.max)

    return Summary(
        count=acc.count, sum=acc.total + acc.comp, mean=acc.mean, min=acc.min, max=acc.max,
        variance=variance, stddev=sqrt(variance), first_t=int(ends[0]), first_value=ends[2],
        last_t=int(ends[3]), last_value=ends[5], median=quantile(0.5), p95=quantile(0.95), exact=False,
    )


def _squared_deviations(values: Sequence[float], mean: float) -> float:
    """Σ(x − mean)², two-pass; the second term corrects for the rounding of `mean`."""
    deviations = [v - mean for v in values]
    return fsum(map(mul, deviations, deviations)) - fsum(deviations) ** 2 / len(values)


def _linear_quantile(ordered: list[float], q: float) -> float:
    """Type-7 quantile of sorted values, with numpy's lerp so results match it bit for bit."""
    h = (len(ordered) - 1) * q
    i = int(h)
    g = h - i
    a = ordered[i]
    b = ordered[min(i + 1, len(ordered) - 1)]
    diff = b - a
    return b - diff * (1 - g) if g >= 0.5 else a + diff * g


def _two_sum(a: float, b: float, comp: float) -> tuple[float, float]:
    """a + b as (sum, compensation) without losing the low bits (Neumaier step)."""
    total = a + b
    if abs(a) >= abs(b):
        comp += (a - total) + b
    else:
        comp += (b - total) + a
    return total, comp
