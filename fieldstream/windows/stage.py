"""Windows in the stream: feed each batch to the engine, close due windows, emit the finals.

No Faust here. Per-device states live in CheckpointedStates (a Faust
changelog-backed table in the worker, a dict in tests). Finals are published to the
windows topic and upserted into PostgreSQL *before* the state that closed
them is checkpointed: a crash in between re-emits them (idempotent in
PostgreSQL) rather than losing them.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from fieldstream import metrics
from fieldstream.checkpoint import DeviceStateStage, Retry, no_retry
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.topic import AvroPublisher, TopicPublisher
from fieldstream.sinks.windows_pg import WindowTableSink
from fieldstream.windows.engine import LateMetric, WindowEngine
from fieldstream.windows.state import DeviceWindows

LATE_PREFIX = "fieldstream.late."



def late_headers(late: Sequence[LateMetric]) -> list[tuple[str, bytes]]:
    metrics_ = sorted({m.metric for m in late})
    windows = sorted({f"{w.name}@{w.start.isoformat()}" for m in late for w in m.windows})
    return [(LATE_PREFIX + "metrics", ",".join(metrics_).encode()),
            (LATE_PREFIX + "windows", ",".join(windows).encode())]


class WindowStage(DeviceStateStage[DeviceWindows]):
    name = "windows"

    def __init__(self, engine: WindowEngine, store: MutableMapping[str, bytes], partitions: int,
                 publisher: AvroPublisher, table_sink: WindowTableSink, late: TopicPublisher,
                 retry: Retry = no_retry, checkpoint_s: float = 5.0) -> None:
        super().__init__(store, partitions, checkpoint_s, (publisher, table_sink, late), retry)
        self.engine = engine
        self.publisher = publisher
        self.table_sink = table_sink
        self.late = late

    def state(self, device_id: str, device_type: str = "") -> DeviceWindows:
        return self.states.get(device_id, lambda: self.engine.new_state(device_id, device_type))

    def checkpoint(self) -> int:
        return self.states.checkpoint()

    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None:
        async with self._busy:
            finals: list[dict[str, Any]] = []
            late: list[tuple[Reading, tuple[LateMetric, ...]]] = []
            for r in readings:
                result = self.engine.add(self.state(r.device_id, r.device_type), r, now)
                if result.counted:
                    self.states.changed(r.device_id, r.topic, r.partition, r.offset)
                finals.extend(result.closed)
                if result.late:
                    late.append((r, result.late))
            await self._emit(finals)
            if late:
                await self._send_late(late)

    async def tick(self, owned: set[int], now: datetime, flowing_since: datetime | None) -> None:
        """Timer: close windows silence has closed, drop expired states, checkpoint when due."""
        async with self._busy:
            await self.close_due(self.states.devices(owned), now, flowing_since)
            if self.states.due():
                self.states.checkpoint()

    async def close_due(self, device_ids: Iterable[str], now: datetime, flowing_since: datetime | None) -> int:
        finals: list[dict[str, Any]] = []
        expired: list[str] = []
        for device_id in device_ids:
            state = self.state(device_id)
            closed = self.engine.close_due(state, now, flowing_since=flowing_since)
            if closed:
                finals.extend(closed)
                self.states.changed(device_id)
            elif self.engine.expired(state, now):
                expired.append(device_id)
        await self._emit(finals)
        for device_id in expired:
            self.states.delete(device_id)
        return len(finals)

    async def _emit(self, finals: list[dict[str, Any]]) -> None:
        if not finals:
            return
        await self.retry(self.publisher.name, self.publisher.publish, finals)
        await self.retry(self.table_sink.name, self.table_sink.write, finals)
        self.states.write_now({agg["device_id"] for agg in finals})
        for agg in finals:
            metrics.WINDOW_CLOSES.labels(agg["window"]).inc()

    async def _send_late(self, late: list[tuple[Reading, tuple[LateMetric, ...]]]) -> None:
        """The original record to the late-data topic, with which metrics and windows it missed."""
        for reading, missed in late:
            raw = reading.raw
            self.late.send_raw(getattr(raw, "key", reading.device_id.encode()), getattr(raw, "value", None),
                               late_headers(missed))
            for m in missed:
                metrics.LATE_READINGS.labels(m.metric).inc()
        await self.retry(self.late.name, self.late.flush)
