"""Windows in the stream: feed each batch to the engine, close due windows, emit the finals.

No Faust here. Per-device states are worked on in memory and checkpointed,
pickled, into a mapping (a Faust changelog-backed table in the worker, a dict
in tests) every `checkpoint_s`: writing every state after every batch would
put one changelog message per reading on the wire. Offsets stay uncommitted
until the checkpoint covering them is written (the stage reports its lowest
pending offset per partition, like a buffering sink), so a crash replays
exactly what the restored state has not seen. Finals are published to the
windows topic and upserted into PostgreSQL *before* the state that closed
them is checkpointed: a crash in between re-emits them (idempotent in
PostgreSQL) rather than losing them.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from fieldstream import metrics
from fieldstream.partitioning import partition_for
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

    def __init__(self, engine: WindowEngine, store: MutableMapping[str, bytes], partitions: int,
                 publisher: AvroPublisher, table_sink: WindowTableSink, late: TopicPublisher,
                 retry: Retry = _no_retry, checkpoint_s: float = 5.0) -> None:
        self.engine = engine
        self.store = store
        self.partitions = partitions
        self.publisher = publisher
        self.table_sink = table_sink
        self.late = late
        self.retry = retry
        self.checkpoint_s = checkpoint_s
        self._cache: dict[str, DeviceWindows] = {}
        self._partition: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._pending: dict[tuple[str, int], int] = {}
        self._last_checkpoint = time.monotonic()
        # A checkpoint must never capture a state whose closed windows are still being emitted.
        self._busy = asyncio.Lock()

    async def start(self) -> None:
        for part in (self.publisher, self.table_sink, self.late):
            await self.retry(part.name, part.start)

    async def close(self) -> None:
        for part in (self.publisher, self.table_sink, self.late):
            await part.close()

    # -- state -------------------------------------------------------------
    def partition_of(self, device_id: str) -> int:
        p = self._partition.get(device_id)
        if p is None:
            p = self._partition[device_id] = partition_for(device_id.encode(), self.partitions)
        return p

    def state(self, device_id: str, device_type: str = "") -> DeviceWindows:
        state = self._cache.get(device_id)
        if state is None:
            blob = self.store.get(device_id)
            state = pickle.loads(blob) if blob else self.engine.new_state(device_id, device_type)  # noqa: S301 - our own changelog
            self._cache[device_id] = state
        return state

    def checkpoint(self) -> int:
        """Write every changed state to the store; returns how many."""
        n = len(self._dirty)
        for device_id in self._dirty:
            state = self._cache.get(device_id)
            if state is not None:
                self.store[device_id] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        self._dirty.clear()
        self._pending.clear()
        self._last_checkpoint = time.monotonic()
        return n

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._pending)

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Revoked: drop in-memory states of those partitions; the new owner restores the checkpoint."""
        numbers = {p for _, p in partitions}
        for device_id in [d for d in self._cache if self.partition_of(d) in numbers]:
            self._cache.pop(device_id, None)
            self._dirty.discard(device_id)
        for tp in partitions:
            self._pending.pop(tp, None)

    def forget_all(self) -> None:
        """After a rebalance the store is the truth: reload states from it lazily."""
        self._cache.clear()
        self._dirty.clear()
        self._pending.clear()

    # -- stream ------------------------------------------------------------
    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None:
        async with self._busy:
            await self._add(readings, now)

    async def _add(self, readings: Sequence[Reading], now: datetime) -> None:
        finals: list[dict[str, Any]] = []
        late: list[tuple[Reading, tuple[LateMetric, ...]]] = []
        pending = self._pending
        for r in readings:
            state = self.state(r.device_id, r.device_type)
            result = self.engine.add(state, r, now)
            if result.counted:
                self._dirty.add(r.device_id)
                tp = (r.topic, r.partition)
                if tp not in pending or r.offset < pending[tp]:
                    pending[tp] = r.offset
            finals.extend(result.closed)
            if result.late:
                late.append((r, result.late))
        await self._emit(finals)
        if late:
            await self._send_late(late)

    async def tick(self, owned: set[int], now: datetime, flowing_since: datetime | None) -> None:
        """Timer: close windows silence has closed, drop expired states, checkpoint when due."""
        async with self._busy:
            await self.close_due([d for d in self._devices() if self.partition_of(d) in owned], now, flowing_since)
            if time.monotonic() - self._last_checkpoint >= self.checkpoint_s:
                self.checkpoint()

    def _devices(self) -> set[str]:
        return set(self._cache) | {k.decode() if isinstance(k, bytes) else k for k in self.store}

    async def close_due(self, device_ids: Iterable[str], now: datetime, flowing_since: datetime | None) -> int:
        finals: list[dict[str, Any]] = []
        expired: list[str] = []
        for device_id in device_ids:
            state = self.state(device_id)
            closed = self.engine.close_due(state, now, flowing_since=flowing_since)
            if closed:
                finals.extend(closed)
                self._dirty.add(device_id)
            elif self.engine.expired(state, now):
                expired.append(device_id)
        await self._emit(finals)
        for device_id in expired:
            self._cache.pop(device_id, None)
            self._dirty.discard(device_id)
            if self.store.get(device_id) is not None:
                del self.store[device_id]
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
