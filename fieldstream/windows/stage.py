"""Windows in the stream: feed each batch to the engine, close due windows, emit the finals.

No Faust here: the per-device states live in any mutable mapping (a Faust
changelog-backed table in the worker, a dict in tests). Finals are published
to the windows topic and upserted into PostgreSQL *before* the state that
closed them is stored, so a crash in between re-emits (idempotent in
PostgreSQL) rather than loses them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from fieldstream import metrics
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.topic import AvroPublisher, TopicPublisher
from fieldstream.sinks.windows_pg import WindowTableSink
from fieldstream.windows.engine import LateMetric, WindowEngine
from fieldstream.windows.state import DeviceWindows

Retry = Callable[..., Awaitable[Any]]
LATE_PREFIX = "fieldstream.late."


async def _no_retry(name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(*args)


def late_headers(late: Sequence[LateMetric]) -> list[tuple[str, bytes]]:
    metrics_ = sorted({m.metric for m in late})
    windows = sorted({f"{w.name}@{w.start.isoformat()}" for m in late for w in m.windows})
    return [(LATE_PREFIX + "metrics", ",".join(metrics_).encode()),
            (LATE_PREFIX + "windows", ",".join(windows).encode())]


class WindowStage:
    name = "windows"

    def __init__(self, engine: WindowEngine, states: MutableMapping[str, DeviceWindows],
                 publisher: AvroPublisher, table_sink: WindowTableSink, late: TopicPublisher,
                 retry: Retry = _no_retry) -> None:
        self.engine = engine
        self.states = states
        self.publisher = publisher
        self.table_sink = table_sink
        self.late = late
        self.retry = retry

    async def start(self) -> None:
        for part in (self.publisher, self.table_sink, self.late):
            await self.retry(part.name, part.start)

    async def close(self) -> None:
        for part in (self.publisher, self.table_sink, self.late):
            await part.close()

    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None:
        local: dict[str, DeviceWindows] = {}
        dirty: set[str] = set()
        finals: list[dict[str, Any]] = []
        late: list[tuple[Reading, tuple[LateMetric, ...]]] = []
        for r in readings:
            state = local.get(r.device_id)
            if state is None:
                state = self.states.get(r.device_id)
                if state is None:
                    state = self.engine.new_state(r.device_id, r.device_type)
                local[r.device_id] = state
            result = self.engine.add(state, r, now)
            if result.counted:
                dirty.add(r.device_id)
            finals.extend(result.closed)
            if result.late:
                late.append((r, result.late))
        await self._emit(finals)
        if late:
            await self._send_late(late)
        for device_id in dirty:
            self.states[device_id] = local[device_id]

    async def close_due(self, device_ids: Iterable[str], now: datetime, flowing_since: datetime | None) -> int:
        """Close what silence has closed; store the states that changed; drop expired ones."""
        finals: list[dict[str, Any]] = []
        changed: dict[str, DeviceWindows] = {}
        expired: list[str] = []
        for device_id in device_ids:
            state = self.states.get(device_id)
            if state is None:
                continue
            closed = self.engine.close_due(state, now, flowing_since=flowing_since)
            if closed:
                finals.extend(closed)
                changed[device_id] = state
            elif self.engine.expired(state, now):
                expired.append(device_id)
        await self._emit(finals)
        for device_id, state in changed.items():
            self.states[device_id] = state
        for device_id in expired:
            del self.states[device_id]
        return len(finals)

    async def _emit(self, finals: list[dict[str, Any]]) -> None:
        if not finals:
            return
        await self.retry(self.publisher.name, self.publisher.publish, finals)
        await self.retry(self.table_sink.name, self.table_sink.write, finals)
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
