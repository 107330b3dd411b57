"""The window state of one device: what the Faust table stores under its device_id.

The table is changelog-backed and serialises the whole object on every update,
so it is kept small and pickles compactly (`__getstate__` packs arrays to bytes,
metric names once per device instead of once per pane). It holds data only: the
specs, grace and intervals live in the `WindowEngine`, which is not stored.
"""

from __future__ import annotations

import sys
from array import array
from bisect import bisect_left, insort

from fieldstream.windows.measures import Ends, MeasureConfig, Sketched

_FORMAT = 3  # bump when the pickled layout changes; old changelogs must still load
NO_TIME = -(1 << 62)  # "before anything": nothing closed yet


NAN = float("nan")


class Pane:
    """One device's readings over one pane [k·pane, (k+1)·pane): seqs counted, values, locations.

    The values are kept exactly as rows of one flat array, sorted by (event time, seq):
    [t, seq, v_0 … v_{width−1}] per reading, NaN where the reading lacked that metric
    (indexed like DeviceWindows.metrics). One array per pane rather than one per metric:
    an array's own header and a first/last record per metric were most of a pane's memory.
    Past `exact_values` readings the pane keeps a `Sketched` per metric instead (`sketches`).
    """

    __slots__ = ("seqs", "rows", "width", "sketches", "locations")

    def __init__(self) -> None:
        self.seqs = array("q")  # sorted: the (device_id, seq) already counted here
        self.rows = array("d")  # exact values, see above; empty once sketched
        self.width = 0  # metrics per row
        # Per metric, past exact_values readings. A pane pickled before format 3 may also hold a
        # metric's exact (values, ends) here, sketched with the engine's mapping when next used.
        self.sketches: list[Sketched | tuple[array, Ends] | None] | None = None
        self.locations: array | None = None  # (t_us, seq, lat, lon) quadruples

    def __getstate__(self) -> tuple:
        locations = None if self.locations is None else self.locations.tobytes()
        return self.seqs.tobytes(), self.width, self.rows.tobytes(), self.sketches, locations

    def __setstate__(self, state: tuple) -> None:
        seqs, self.width, rows, sketches, locations = state
        self.seqs = array("q")
        self.seqs.frombytes(seqs)
        self.rows = array("d")
        self.rows.frombytes(rows)
        self.sketches = None if sketches is None else list(sketches)
        self.locations = None
        if locations is not None:
            self.locations = array("d")
            self.locations.frombytes(locations)

    def has(self, seq: int) -> bool:
        i = bisect_left(self.seqs, seq)
        return i < len(self.seqs) and self.seqs[i] == seq

    def remember(self, seq: int) -> None:
        if not self.seqs or seq > self.seqs[-1]:
            self.seqs.append(seq)
        else:
            insort(self.seqs, seq)

    def add_location(self, t: int, seq: int, lat: float, lon: float) -> None:
        if self.locations is None:
            self.locations = array("d")
        self.locations.extend((t, seq, lat, lon))

    # -- values ------------------------------------------------------------------------------

    def add(self, t: int, seq: int, values: dict[int, float], config: MeasureConfig) -> None:
        """Count one reading's finite values, by metric index."""
        if self.sketches is not None:
            sketches = self.sketches
            for i, value in values.items():
                if i >= len(sketches):
                    sketches.extend([None] * (i + 1 - len(sketches)))
                sketch = sketches[i]
                if sketch is None:
                    sketch = sketches[i] = Sketched()
                elif not isinstance(sketch, Sketched):  # exact values of a pane pickled before format 3
                    sketch = sketches[i] = Sketched.from_values(*sketch, config.mapping)
                sketch.add(t, seq, value, config.mapping)
            return
        if values and (widest := max(values)) >= self.width:
            self._widen(widest + 1)
        stride = 2 + self.width
        row = [NAN] * stride
        row[0], row[1] = t, seq
        for i, value in values.items():
            row[2 + i] = value
        rows = self.rows
        if not rows or t > rows[-stride] or (t == rows[-stride] and seq > rows[1 - stride]):
            rows.extend(row)  # the usual case: the newest reading
        else:
            at = len(rows) - stride
            while at > 0 and (t < rows[at - stride] or (t == rows[at - stride] and seq < rows[at + 1 - stride])):
                at -= stride
            rows[at:at] = array("d", row)
        if len(rows) > config.exact_values * stride:
            self._sketch(config)

    def column(self, i: int) -> array | None:
        """Metric i's exact values (None when this pane has none of them)."""
        if i >= self.width:
            return None
        values = self.rows[2 + i::2 + self.width]
        if (total := sum(values)) != total:  # NaN: some readings lacked the metric
            values = array("d", [v for v in values if v == v])
        return values or None

    def ends(self, i: int) -> tuple[float, float, float, float, float, float]:
        """Metric i's first and last reading in this pane, (t, seq, value) each; it has some."""
        rows, stride, at = self.rows, 2 + self.width, 2 + i
        first, last = 0, len(rows) - stride
        while rows[first + at] != rows[first + at]:  # NaN: that reading lacked the metric
            first += stride
        while rows[last + at] != rows[last + at]:
            last -= stride
        return rows[first], rows[first + 1], rows[first + at], rows[last], rows[last + 1], rows[last + at]

    def _widen(self, width: int) -> None:
        """Room for metrics first seen now (a device's later readings carry a new metric)."""
        old, pad = 2 + self.width, [NAN] * (width - self.width)
        rows = array("d")
        for k in range(0, len(self.rows), old):
            rows.extend(self.rows[k:k + old])
            rows.extend(pad)
        self.rows, self.width = rows, width

    def _sketch(self, config: MeasureConfig) -> None:
        self.sketches = [None if (values := self.column(i)) is None
                         else Sketched.from_values(values, self.ends(i), config.mapping)
                         for i in range(self.width)]
        self.rows = array("d")


class DeviceWindows:
    """Open panes, watermark and bookkeeping of one device (times in µs since the epoch)."""

    __slots__ = ("device_id", "device_type", "metrics", "panes", "watermark", "watermark_at",
                 "closed_to", "emitted_to", "spacings", "counted")

    def __init__(self, device_id: str, device_type: str = "") -> None:
        self.device_id = device_id
        self.device_type = device_type
        self.metrics: list[str] = []  # metric names in first-seen order; panes index by position
        self.panes: dict[int, Pane] = {}  # pane index (start // pane length) → pane
        self.watermark: int | None = None  # newest event time counted
        self.watermark_at = NO_TIME  # processing time when the watermark last rose
        self.closed_to = NO_TIME  # every window ending at or before this is closed: no reading joins it
        self.emitted_to = NO_TIME  # ... and emitted: its aggregates were handed out (<= closed_to)
        self.spacings = array("d")  # recent gaps (s) between consecutive newest readings
        self.counted = array("q")  # seq runs counted in panes that have closed (see seqs)

    def __getstate__(self) -> tuple:
        panes = tuple((key, pane.__getstate__()) for key, pane in self.panes.items())
        return (_FORMAT, self.device_id, self.device_type, tuple(self.metrics), self.watermark,
                self.watermark_at, self.closed_to, self.spacings.tobytes(), self.counted.tobytes(), panes,
                self.emitted_to)

    def __setstate__(self, state: tuple) -> None:
        if state[0] == 1:  # before deferred emission: everything closed had been emitted
            state = (*state, state[6])
        elif state[0] not in (2, _FORMAT):
            raise ValueError(f"unknown DeviceWindows format {state[0]!r}")
        (_, self.device_id, self.device_type, metrics, self.watermark, self.watermark_at,
         self.closed_to, spacings, counted, panes, self.emitted_to) = state
        # Interned so that thousands of devices share one copy of each metric name.
        self.metrics = [sys.intern(name) for name in metrics]
        self.device_type = sys.intern(self.device_type)
        self.spacings = array("d")
        self.spacings.frombytes(spacings)
        self.counted = array("q")
        self.counted.frombytes(counted)
        self.panes = {}
        for key, pane_state in panes:
            if state[0] < 3:
                self.panes[key] = _pane_before_format_3(pane_state)
            else:
                pane = Pane.__new__(Pane)
                pane.__setstate__(pane_state)
                self.panes[key] = pane

    def metric_index(self, name: str) -> int:
        try:
            return self.metrics.index(name)
        except ValueError:
            self.metrics.append(sys.intern(name))
            return len(self.metrics) - 1

    def __repr__(self) -> str:
        return (f"DeviceWindows({self.device_id!r}, panes={sorted(self.panes)}, "
                f"watermark={self.watermark}, closed_to={self.closed_to}, emitted_to={self.emitted_to})")


_LOADING = MeasureConfig(exact_values=1 << 40)  # a loaded pane is sketched by its next reading if need be


def _pane_before_format_3(state: tuple) -> Pane:
    """A pane pickled by formats 1 and 2: per metric, an exact array [first_t, first_seq,
    first_v, last_t, last_seq, last_v, values in arrival order] as bytes, or a Sketched.

    The exact values' own times were not kept, so each becomes a row at its metric's first
    reading's time with a seq just after it: the window measures (which depend only on the
    values and the first and last reading) come out as before.
    """
    seqs, accs, locations = state
    pane = Pane()
    pane.seqs.frombytes(seqs)
    if locations is not None:
        pane.locations = array("d")
        pane.locations.frombytes(locations)
    exact: list[tuple[array, Ends] | None] = []
    for acc in accs:
        if isinstance(acc, bytes):
            values = array("d")
            values.frombytes(acc)
            exact.append((values[6:], values[:6]))
        else:
            exact.append(None)
    if any(isinstance(acc, Sketched) for acc in accs):
        pane.sketches = [acc if isinstance(acc, Sketched) else exact[i] for i, acc in enumerate(accs)]
        return pane
    for i, kept in enumerate(exact):
        if kept is None:
            continue
        values, (first_t, first_seq, first_v, last_t, last_seq, last_v) = kept
        pane.add(first_t, first_seq, {i: first_v}, _LOADING)
        rest = list(values)
        rest.remove(first_v)
        if rest:
            rest.remove(last_v)
            pane.add(last_t, last_seq, {i: last_v}, _LOADING)
        for value in rest:
            pane.add(first_t, first_seq + 0.5, {i: value}, _LOADING)
    return pane
