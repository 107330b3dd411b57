"""Detection in the stream: each reading through its device's engine, alerts out, offline by timer.

No Faust here. One DeviceEngine per device lives in CheckpointedStates (a
changelog-backed table in the worker), so a restart or rebalance resumes the
learned baselines instead of starting cold. HalfSpaceTrees models are per
device type and per worker (they re-warm after a rebalance). Alerts go to the
alerts topic and to PostgreSQL, idempotent there on (alert_id, state).
"""

from __future__ import annotations

import time
from collections.abc import Callable, MutableMapping, Sequence
from datetime import UTC, datetime
from typing import Any

from fieldstream import metrics
from fieldstream.checkpoint import DeviceStateStage, Retry, no_retry
from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.alerts import AlertEvent
from fieldstream.detectors.engine import DeviceEngine, HalfSpaceModels
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.alerts_pg import AlertTableSink
from fieldstream.sinks.topic import AvroPublisher
from fieldstream.turns import in_turns

GeofenceLookup = Callable[[str, str], Any]



def seen_at(reading: Reading) -> datetime | None:
    """When the record reached Kafka: the clock the offline timer ticks with."""
    ts = getattr(reading.raw, "timestamp_ms", None)
    return datetime.fromtimestamp(ts / 1000, UTC) if ts else None


class DetectionStage(DeviceStateStage[DeviceEngine]):
    name = "detection"

    def __init__(self, settings: DetectionSettings, store: MutableMapping[str, bytes], partitions: int,
                 publisher: AvroPublisher, table_sink: AlertTableSink, retry: Retry = no_retry,
                 checkpoint_s: float = 5.0, geofence_for: GeofenceLookup | None = None) -> None:
        super().__init__(store, partitions, checkpoint_s, (publisher, table_sink), retry)
        self.settings = settings
        self.models = HalfSpaceModels(settings)
        self.publisher = publisher
        self.table_sink = table_sink
        self.geofence_for = geofence_for
        self._last_offline_check = 0.0

    def engine(self, device_id: str, device_type: str = "", will_change: bool = True) -> DeviceEngine:
        def create() -> DeviceEngine:
            polygon = self.geofence_for(device_id, device_type) if self.geofence_for else None
            return DeviceEngine.from_settings(self.settings, device_id, device_type, polygon)

        return self.states.get(device_id, create, will_change)

    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None:
        async with self.busy:
            events: list[AlertEvent] = []
            started = time.perf_counter()
            async for r in in_turns(readings):
                engine = self.engine(r.device_id, r.device_type)
                if not engine.first_time(r):
                    continue  # learned before a restart or a seek back: its alerts went out then
                found = engine.process(r, self.models.for_type(r.device_type), seen_at(r))
                self.states.changed(r.device_id, r.topic, r.partition, r.offset)
                if found:
                    events += found
            if readings:
                metrics.DETECTOR_SECONDS.labels("all").inc(time.perf_counter() - started)
                metrics.DETECTOR_READINGS.labels("all").inc(len(readings))
            await self._emit(events)

    async def tick(self, owned: set[int], now: datetime, caught_up: bool) -> None:
        """Timer: offline checks (only while caught up: a backlog is not silence), checkpoint when due."""
        async with self.busy:
            # Offline means silent for k x the interval (a minute or more): checking every few
            # seconds is as good as every second, at a fraction of the cost for 10,000 devices.
            if caught_up and time.monotonic() - self._last_offline_check >= self.settings.offline_check_s:
                self._last_offline_check = time.monotonic()
                events: list[AlertEvent] = []
                for device_id in self.states.devices(owned):
                    # An alert it opens is written at once (_emit); nothing else changes here.
                    found = self.engine(device_id, will_change=False).check_offline(now)
                    if found:
                        events += found
                        self.states.changed(device_id)
                await self._emit(events)
            self.states.step()

    async def _emit(self, events: list[AlertEvent]) -> None:
        if not events:
            return
        records = [e.to_record() for e in events]
        await self.retry(self.publisher.name, self.publisher.publish, records)
        await self.retry(self.table_sink.name, self.table_sink.write, records)
        self.states.write_now({r["device_id"] for r in records})
        for r in records:
            metrics.ALERTS.labels(r["detector"], r["severity"], r["state"]).inc()
