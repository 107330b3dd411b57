"""Validation of decoded readings: pure code, every rule with a reason."""

from __future__ import annotations

import math
from collections import deque
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
    """Remembers the last `size` sequence numbers of each device to drop duplicates.

    Kept per Kafka partition (a device's readings all land in one), so a worker
    that loses a partition forgets its devices: if the partition comes back, the
    readings replayed from its committed offset are new work for the buffering
    sinks and stages (whose uncommitted state was dropped with the partition),
    not duplicates.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: dict[tuple[str, int], dict[str, tuple[deque[int], set[int]]]] = {}

    def is_duplicate(self, device_id: str, seq: int, partition: tuple[str, int] = ("", 0)) -> bool:
        """True if (device_id, seq) was seen recently; otherwise remember it."""
        devices = self._seen.get(partition)
        if devices is None:
            devices = self._seen[partition] = {}
        entry = devices.get(device_id)
        if entry is None:
            entry = devices[device_id] = (deque(), set())
        order, members = entry
        if seq in members:
            return True
        order.append(seq)
        members.add(seq)
        if len(order) > self.size:
            members.discard(order.popleft())
        return False

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        for tp in partitions:
            self._seen.pop(tp, None)
