"""Windows in the stream: feed each batch to the engine, close due windows, emit the finals.

No Faust here. Per-device states live in CheckpointedStates (a Faust
changelog-backed table in the worker, a dict in tests). Finals are published to the
windows topic and upserted into PostgreSQL *before* the state that emitted
them is checkpointed: a crash in between re-emits them (idempotent in
PostgreSQL) rather than losing them.

A batch closes windows but does not emit them: at a window boundary every device
closes its windows within one reading interval, several aggregates per reading,
and emitting them in the batch held every reading behind them (the latency spike
at each minute). The timer emits them a slice at a time instead, within its time
budget, and a batch emits those the timer has not come round to itself (below), so a
stream faster than the timer's budget cannot pile them up. Until emitted they are
part of the device's state (engine.add with defer), checkpoint included.

In a backlog every device closes its windows at about the same moment, and the timer's
budget is too small for them. With one deadline for all, their windows piled up and were
then emitted in one go while the stream stood still (~20 s at a time). So a batch emits a
device's windows once they have waited EMIT_AFTER_S and the device's turn comes round (one
of the twenty one-second turns up to EMIT_WITHIN_S, from a hash of its id): the same work,
spread evenly. Each device's state is still written once per 20-40 s, not once per window:
emitting sooner (10-20 s) cost 4-11 % of a worker's throughput (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import Counter
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from datetime import datetime
from typing import Any

from fieldstream import metrics
from fieldstream.checkpoint import DeviceStateStage, Retry, no_retry
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.topic import AvroPublisher, TopicPublisher
from fieldstream.sinks.windows_pg import WindowTableSink
from fieldstream.turns import in_turns
from fieldstream.windows.clock import to_us
from fieldstream.windows.engine import LateMetric, WindowEngine
from fieldstream.windows.state import DeviceWindows

LATE_PREFIX = "fieldstream.late."
CLOSE_SLICE = 250  # devices whose due windows one timer slice closes
CLOSE_BUDGET_S = 0.2  # of each timer tick spent closing windows; the rest waits for the next tick
EMIT_AFTER_S = 20.0  # a batch leaves a closed window this long (processing time) to the timer,
EMIT_WITHIN_S = 40.0  # and emits it by this long, in its device's turn in between (see above)
TURN_S = 1.0



def late_headers(late: Sequence[LateMetric]) -> list[tuple[str, bytes]]:
    metrics_ = sorted({m.metric for m in late})
    windows = sorted({f"{w.name}@{w.start.isoformat()}" for m in late for w in m.windows})
    return [(LATE_PREFIX + "metrics", ",".join(metrics_).encode()),
            (LATE_PREFIX + "windows", ",".join(windows).encode())]


class WindowStage(DeviceStateStage[DeviceWindows]):
    name = "windows"

    def __init__(self, engine: WindowEngine, store: MutableMapping[str, bytes], partitions: int,
                 publisher: AvroPublisher, table_sink: WindowTableSink, late: TopicPublisher,
                 retry: Retry = no_retry, checkpoint_s: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(store, partitions, checkpoint_s, (publisher, table_sink, late), retry)
        self.engine = engine
        self.monotonic = monotonic
        self.publisher = publisher
        self.table_sink = table_sink
        self.late = late
        # When each device next needs the timer (µs): a window to close or an idle state to drop.
        # Visiting every device every second cost more than the stream itself with 10,000 devices.
        self._schedule: list[tuple[int, str]] = []  # (when, device); entries not in _scheduled are stale
        self._scheduled: dict[str, int] = {}  # device → when it is due
        self._schedule_for: frozenset[int] | None = None  # the partitions the schedule covers
        # Devices with closed windows not yet emitted → when (monotonic) the first one closed.
        self._unemitted: dict[str, float] = {}
        self._turn = -1  # the last turn (monotonic // TURN_S) a batch served

    def state(self, device_id: str, device_type: str = "", will_change: bool = True) -> DeviceWindows:
        return self.states.get(device_id, lambda: self.engine.new_state(device_id, device_type), will_change)

    def checkpoint(self) -> int:
        return self.states.checkpoint()

    def pause(self) -> None:
        # Partitions may be leaving: their states go with them, unemitted windows included, and
        # their next owner emits those. Devices that stay are found again by their next reading
        # or by the timer.
        self._unemitted.clear()
        metrics.WINDOWS_WAITING.set(0)
        super().pause()

    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None:
        async with self.busy:
            finals: list[dict[str, Any]] = []
            late: list[tuple[Reading, tuple[LateMetric, ...]]] = []
            scheduled, unemitted, engine = self._scheduled, self._unemitted, self.engine
            now_us, clock = to_us(now), self.monotonic()
            async for r in in_turns(readings):
                state = self.state(r.device_id, r.device_type)
                result = engine.add(state, r, now, defer=True)
                if result.counted:
                    self.states.changed(r.device_id, r.topic, r.partition, r.offset)
                    if r.device_id not in unemitted and engine.unemitted(state):
                        unemitted[r.device_id] = clock
                        self._plan(r.device_id, now_us)  # the timer emits it
                finals.extend(result.closed)
                if result.late:
                    late.append((r, result.late))
                if r.device_id not in scheduled:
                    self._plan(r.device_id, 0)  # the next tick works out when it is due
            await self._emit(finals)
            if late:
                await self._send_late(late)
            await self._emit_devices(self._turn_come(clock))
            metrics.WINDOWS_WAITING.set(len(unemitted))

    def _turn_come(self, clock: float) -> list[str]:
        """Waiting devices a batch emits now: those that waited EMIT_AFTER_S whose turn has come
        since the last batch, and those that waited EMIT_WITHIN_S."""
        turns = max(1, round((EMIT_WITHIN_S - EMIT_AFTER_S) / TURN_S))
        turn = int(clock // TURN_S)
        served = {t % turns for t in range(max(self._turn + 1, turn - turns + 1), turn + 1)}
        self._turn = turn
        waited_within = clock - EMIT_WITHIN_S
        waited_after = clock - EMIT_AFTER_S if served else waited_within  # no new turn: the deadline only
        chosen = []
        for device_id, since in self._unemitted.items():  # oldest first
            if since > max(waited_after, waited_within):
                break
            if since <= waited_within or hash(device_id) % turns in served:
                chosen.append(device_id)
        return chosen

    async def _emit_devices(self, device_ids: list[str]) -> None:
        """Emit these devices' closed windows, a slice of devices at a time (their aggregates as one
        list, 100,000 dicts in a backlog, were once the worker's peak memory)."""
        for start in range(0, len(device_ids), CLOSE_SLICE):
            finals: list[dict[str, Any]] = []
            for device_id in device_ids[start:start + CLOSE_SLICE]:
                del self._unemitted[device_id]
                closed = self.engine.emit_closed(self.state(device_id))
                if closed:
                    finals.extend(closed)
                    self.states.changed(device_id)
            await self._emit(finals)

    async def tick(self, owned: set[int], now: datetime, flowing_since: datetime | None) -> None:
        """Timer: close windows silence has closed, drop expired states, checkpoint when due."""
        async with self.busy:
            if self._schedule_for != frozenset(owned):
                # New assignment: every device of the owned partitions, also those only in the
                # store (silent since a restart), is looked at on this tick.
                self._schedule_for = frozenset(owned)
                self._schedule, self._scheduled, self._unemitted = [], {}, {}
                for device_id in self.states.devices(owned):
                    self._plan(device_id, 0)
            rebalances = self.rebalances
        # A window boundary makes every device due at once (10,000 of them: seconds of work).
        # Closed a slice at a time with batches in between, and only for part of each tick:
        # the rest stays due for the next ticks, so the stream never waits behind a boundary.
        now_us = to_us(now)
        until = time.monotonic() + CLOSE_BUDGET_S
        while True:
            async with self.busy:
                if self.rebalances != rebalances:
                    return  # what is left stays planned; a new assignment plans anew
                due = self._due(now_us, CLOSE_SLICE)
                if due:
                    await self.close_due(due, now, flowing_since)
            if not due or time.monotonic() >= until:
                break
            await asyncio.sleep(0)
        async with self.busy:
            self.states.step()
        metrics.WINDOWS_WAITING.set(len(self._unemitted))

    def _plan(self, device_id: str, at_us: int) -> None:
        """Due at `at_us`, or earlier if it already is."""
        planned = self._scheduled.get(device_id)
        if planned is None or at_us < planned:
            self._scheduled[device_id] = at_us
            heapq.heappush(self._schedule, (at_us, device_id))

    def _due(self, now_us: int, limit: int) -> list[str]:
        due: list[str] = []
        while self._schedule and self._schedule[0][0] <= now_us and len(due) < limit:
            at_us, device_id = heapq.heappop(self._schedule)
            if self._scheduled.get(device_id) == at_us:  # else planned earlier since: stale
                del self._scheduled[device_id]
                due.append(device_id)
        return due

    async def close_due(self, device_ids: Iterable[str], now: datetime, flowing_since: datetime | None) -> int:
        finals: list[dict[str, Any]] = []
        expired: list[str] = []
        now_us = to_us(now)
        for device_id in device_ids:
            self._unemitted.pop(device_id, None)
            state = self.state(device_id, will_change=False)  # only a higher frontier, or closed windows written now
            closed = self.engine.close_due(state, now, flowing_since=flowing_since)
            if closed:
                finals.extend(closed)
                self.states.changed(device_id)
            elif self.engine.expired(state, now):
                expired.append(device_id)
                continue
            self._plan(device_id, self._next_visit(state, now_us))
        await self._emit(finals)
        for device_id in expired:
            self.states.delete(device_id)
        return len(finals)

    def _next_visit(self, state: Any, now_us: int) -> int:
        """When silence would next close a window of this device, or else expire its state.

        An estimate that errs early (a restart's flowing_since can push closing later):
        a visit before its time finds nothing and plans again, never later than a second on.
        """
        when = self.engine.next_close(state)
        at = to_us(when) if when is not None else state.watermark_at + self.engine.ttl_us
        return max(at, now_us + 1_000_000)

    async def _emit(self, finals: list[dict[str, Any]]) -> None:
        if not finals:
            return
        await self.retry(self.publisher.name, self.publisher.publish, finals)
        await self.retry(self.table_sink.name, self.table_sink.write, finals)
        self.states.write_now({agg["device_id"] for agg in finals})
        for window, n in Counter(agg["window"] for agg in finals).items():
            metrics.WINDOW_CLOSES.labels(window).inc(n)

    async def _send_late(self, late: list[tuple[Reading, tuple[LateMetric, ...]]]) -> None:
        """The original record to the late-data topic, with which metrics and windows it missed."""
        for reading, missed in late:
            raw = reading.raw
            self.late.send_raw(getattr(raw, "key", reading.device_id.encode()), getattr(raw, "value", None),
                               late_headers(missed))
            for m in missed:
                metrics.LATE_READINGS.labels(m.metric).inc()
        await self.retry(self.late.name, self.late.flush)
