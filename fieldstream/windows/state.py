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

from fieldstream.windows.measures import Accumulator, Exact

_FORMAT = 2  # bump when the pickled layout changes; old changelogs must still load
NO_TIME = -(1 << 62)  # "before anything": nothing closed yet


class Pane:
    """One device's readings over one pane [k·pane, (k+1)·pane): seqs counted and per-metric accumulators."""

    __slots__ = ("seqs", "accs", "locations")

    def __init__(self) -> None:
        self.seqs = array("q")  # sorted: the (device_id, seq) already counted here
        self.accs: list[Accumulator | None] = []  # indexed like DeviceWindows.metrics
        self.locations: array | None = None  # (t_us, seq, lat, lon) quadruples

    def __getstate__(self) -> tuple:
        accs = tuple(acc.tobytes() if isinstance(acc, Exact) else acc for acc in self.accs)
        return self.seqs.tobytes(), accs, None if self.locations is None else self.locations.tobytes()

    def __setstate__(self, state: tuple) -> None:
        seqs, accs, locations = state
        self.seqs = array("q")
        self.seqs.frombytes(seqs)
        self.accs = [Exact.from_bytes(acc) if isinstance(acc, bytes) else acc for acc in accs]
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
        elif state[0] != _FORMAT:
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
