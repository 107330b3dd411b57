"""Validation of decoded readings: pure code, every rule with a reason."""

from __future__ import annotations

import math
from array import array
from datetime import datetime, timedelta

from fieldstream.config.validation import ValidationSettings
from fieldstream.errors import ValidationError
from fieldstream.schemas.reading import Reading


class Validator:
    def __init__(self, settings: ValidationSettings) -> None:
        self.skew = timedelta(seconds=settings.clock_skew_s)
        self.max_age = timedelta(seconds=settings.max_age_s)
        self.max_metrics = settings.max_metrics
        self.ranges = settings.ranges

    def check(self, reading: Reading, key: bytes | None, now: datetime) -> None:
        """Raise ValidationError (with a reason) for the first rule `reading` breaks."""
        if not reading.device_id:
            raise ValidationError("device_id is empty", reason="missing_device_id")
        if not reading.device_type:
            raise ValidationError("device_type is empty", reason="missing_device_type")
        if key is None:
            raise ValidationError("record has no key; the key must be the device_id", reason="missing_key")
        if key != reading.device_id.encode():
            raise ValidationError(
                f"record key {key[:64]!r} differs from device_id {reading.device_id!r}", reason="key_mismatch"
            )
        if reading.seq < 0:
            raise ValidationError(f"seq {reading.seq} is negative", reason="bad_seq")
        if not reading.metrics:
            raise ValidationError("reading has no metrics", reason="no_metrics")
        if len(reading.metrics) > self.max_metrics:
            raise ValidationError(f"{len(reading.metrics)} metrics exceed {self.max_metrics}",
                                  reason="too_many_metrics")
        if reading.event_time > now + self.skew:
            raise ValidationError(f"event time {reading.event_time.isoformat()} is in the future beyond "
                                  f"the {self.skew.total_seconds():.0f}s clock-skew tolerance", reason="future")
        if reading.event_time < now - self.max_age:
            raise ValidationError(f"event time {reading.event_time.isoformat()} is older than "
                                  f"{self.max_age.total_seconds():.0f}s", reason="too_old")
        bounds = self.ranges.get(reading.device_type, {})
        for name, value in reading.metrics.items():
            if not math.isfinite(value):
                raise ValidationError(f"metric {name} is {value}", reason="not_finite")
            limits = bounds.get(name)
            if limits is not None and not limits[0] <= value <= limits[1]:
                raise ValidationError(f"metric {name}={value} is outside [{limits[0]}, {limits[1]}] for "
                                      f"{reading.device_type}", reason="out_of_range")
        for name, value in (("battery", reading.battery),):
            if value is not None and not math.isfinite(value):
                raise ValidationError(f"{name} is {value}", reason="not_finite")
        if reading.location is not None:
            lat, lon = reading.location.lat, reading.location.lon
            if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
                raise ValidationError(f"location ({lat}, {lon}) is not on Earth", reason="bad_location")


class RecentSeqs:
    """Remembers the `size` highest sequence numbers of each device to drop duplicates.

    A device's seqs mostly rise by one, so they are kept as runs of consecutive
    numbers in one flat `array('q')` per device: [count, lo0, hi0, lo1, hi1, ...],
    runs sorted, `count` the seqs they cover. 256 remembered seqs are then a run or
    two (~140 bytes) instead of 256 ints in a deque and a set (~20 KB a device,
    196 MiB for 10,000 devices: bench/dedup_memory.py). Only seqs actually seen are ever in a run, so a
    reading is never wrongly dropped; what falls below the remembered ones (a very
    old replay, a device that restarted its counter) passes, and the idempotent
    sinks absorb it.

    Kept per Kafka partition (a device's readings all land in one), so a worker
    that loses a partition forgets its devices: if the partition comes back, the
    readings replayed from its committed offset are new work for the buffering
    sinks and stages (whose uncommitted state was dropped with the partition),
    not duplicates.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: dict[tuple[str, int], dict[str, array]] = {}

    def is_duplicate(self, device_id: str, seq: int, partition: tuple[str, int] = ("", 0)) -> bool:
        """True if (device_id, seq) was seen recently; otherwise remember it."""
        devices = self._seen.get(partition)
        if devices is None:
            devices = self._seen[partition] = {}
        runs = devices.get(device_id)
        if runs is None:
            devices[device_id] = array("q", (1, seq, seq))
            return False
        last = runs[-1]
        if seq == last + 1:  # the usual case: the next seq in order
            runs[-1] = seq
        elif seq > last:
            runs.extend((seq, seq))
        elif not _insert(runs, seq):
            return True
        if runs[0] < self.size:
            runs[0] += 1
        elif runs[1] == runs[2]:  # full: forget the lowest seq
            del runs[1:3]
        else:
            runs[1] += 1
        return False

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self._seen.pop(tp, None)


def _insert(runs: array, seq: int) -> bool:
    """Add `seq` (lower than the newest) to the runs; False if it is already there."""
    i = len(runs) - 2  # runs are (lo, hi) pairs from index 1; walk down from the newest
    while i >= 1 and runs[i] > seq:
        i -= 2
    if i >= 1 and seq <= runs[i + 1]:
        return False
    # seq lies after run i (if any) and before run i + 2: join either or both, or start a run.
    joins_low = i >= 1 and runs[i + 1] + 1 == seq
    joins_high = runs[i + 2] - 1 == seq
    if joins_low and joins_high:
        runs[i + 1] = runs[i + 3]
        del runs[i + 2:i + 4]
    elif joins_low:
        runs[i + 1] = seq
    elif joins_high:
        runs[i + 2] = seq
    else:
        runs[i + 2:i + 2] = array("q", (seq, seq))
    return True
