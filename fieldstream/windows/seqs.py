"""Which seq numbers of a device were counted in panes that have since closed.

After a crash, Kafka re-delivers readings the state has already counted. While
their pane is open the pane's own seq list catches them; once it has closed
they would look merely "late" and be reported to the late-data topic a second
time. A device's seqs increase, so what was counted is a few runs of
consecutive numbers (a gap is a reading that never arrived): we keep the runs
as a flat `array('q')` [lo0, hi0, lo1, hi1, ...], sorted, at most `keep` of them.
The oldest runs are forgotten first; a replay that old is reported late, never
counted twice.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable


def contains(runs: array, seq: int) -> bool:
    for i in range(0, len(runs), 2):
        if runs[i] <= seq <= runs[i + 1]:
            return True
    return False


def add_all(runs: array, seqs: Iterable[int], keep: int) -> None:
    """Record `seqs` as counted, merging runs, keeping the `keep` newest runs."""
    pairs = [[runs[i], runs[i + 1]] for i in range(0, len(runs), 2)]
    for seq in seqs:
        if pairs and pairs[-1][1] + 1 == seq:  # the usual case: the next seq in order
            pairs[-1][1] = seq
        elif not pairs or not any(lo <= seq <= hi for lo, hi in pairs):
            pairs.append([seq, seq])
            pairs.sort()
            merged = [pairs[0]]
            for lo, hi in pairs[1:]:
                if lo <= merged[-1][1] + 1:
                    merged[-1][1] = max(merged[-1][1], hi)
                else:
                    merged.append([lo, hi])
            pairs = merged
    del runs[:]
    for lo, hi in pairs[-keep:]:
        runs.extend((lo, hi))
