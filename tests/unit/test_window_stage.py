"""The window stage's timer: only devices with something due are visited, and every window still closes once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import REGISTRY

from fieldstream.partitioning import partition_for
from fieldstream.schemas.reading import Reading
from fieldstream.windows import WindowEngine, parse_specs
from fieldstream.windows.stage import CLOSE_SLICE, EMIT_AFTER_S, EMIT_WITHIN_S, WindowStage

T0 = datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)
PARTITIONS = 4
OWNED = set(range(PARTITIONS))


class Collect:
    """An output that keeps what it is given (the stage's publisher, table sink and late topic)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.records: list[dict] = []

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, records) -> None:
        self.records.extend(records)

    async def write(self, records) -> None: ...

    def send_raw(self, key, value, headers) -> None: ...

    async def flush(self) -> None: ...


class CountingEngine(WindowEngine):
    visits = 0

    def close_due(self, state, now, *, flowing_since=None):
        self.visits += 1
        return super().close_due(state, now, flowing_since=flowing_since)


def stage_with(engine: WindowEngine) -> tuple[WindowStage, Collect]:
    published = Collect("windows_topic")
    stage = WindowStage(engine, {}, PARTITIONS, published, Collect("windows_pg"), Collect("late"))
    return stage, published


def reading(device: str, seconds: float, seq: int) -> Reading:
    return Reading(device, "soil_station", T0 + timedelta(seconds=seconds), seq, {"moisture": 20.0 + seq},
                   topic="readings", partition=partition_for(device.encode(), PARTITIONS), offset=seq)


def test_the_timer_visits_only_devices_with_a_window_due_and_closes_each_window_once():
    engine = CountingEngine(parse_specs(["tumbling:60"]), grace_s=10, intervals_s={"soil_station": 10.0})
    stage, published = stage_with(engine)
    devices = [f"dev-{i}" for i in range(200)]
    owned = set(range(PARTITIONS))

    async def scenario() -> None:
        arrival = T0 + timedelta(seconds=1)
        await stage.on_batch([reading(d, 0, 0) for d in devices], arrival)
        await stage.tick(owned, arrival, None)
        assert engine.visits == len(devices)  # first sight: each device is looked at once
        for second in range(2, 40):  # silence well before the window (12:00-12:01) can close
            await stage.tick(owned, T0 + timedelta(seconds=second), None)
        assert engine.visits == len(devices)  # nobody was due: nobody was visited
        assert published.records == []
        for second in range(40, 120):  # silence now closes it: end 12:01 + grace 10 s
            await stage.tick(owned, T0 + timedelta(seconds=second), None)
        assert sorted(r["device_id"] for r in published.records) == sorted(devices)
        assert engine.visits <= 3 * len(devices)

    asyncio.run(scenario())


def test_a_new_assignment_visits_devices_known_only_from_the_store():
    engine = CountingEngine(parse_specs(["tumbling:60"]), grace_s=10, intervals_s={"soil_station": 10.0})
    first, _ = stage_with(engine)
    owned = set(range(PARTITIONS))

    async def scenario() -> None:
        await first.on_batch([reading("dev-a", 0, 0), reading("dev-b", 1, 1)], T0)
        first.states.checkpoint()
        restarted, published = stage_with(engine)
        restarted.states.store = first.states.store  # the changelog-backed table, restored
        for second in range(0, 120):
            await restarted.tick(owned, T0 + timedelta(seconds=second), None)
        assert sorted(r["device_id"] for r in published.records) == ["dev-a", "dev-b"]

    asyncio.run(scenario())


def crowded_stage() -> tuple[WindowStage, Collect, list[str]]:
    """Three slices' worth of devices, all with a reading at T0: their windows all end at once."""
    engine = WindowEngine(parse_specs(["tumbling:60"]), grace_s=10, intervals_s={"soil_station": 10.0})
    stage, published = stage_with(engine)
    return stage, published, [f"dev-{i}" for i in range(3 * CLOSE_SLICE)]


async def seen_once(stage: WindowStage, devices: list[str]) -> None:
    await stage.on_batch([reading(d, 0, 0) for d in devices], T0)
    await stage.tick(OWNED, T0, None)  # first sight: each device planned


def test_closing_many_devices_at_once_lets_a_batch_in_between_slices_and_closes_each_window_once():
    stage, published, devices = crowded_stage()
    between: list[int] = []  # windows published when the batch got in

    async def batch_while_closing() -> None:
        await asyncio.sleep(0)  # the timer's first slice holds the lock: wait for it to let go
        async with stage.busy:
            between.append(len(published.records))
        await stage.on_batch([reading(devices[-1], 75, 1)], T0 + timedelta(seconds=75))

    async def scenario() -> None:
        await seen_once(stage, devices)
        await asyncio.gather(stage.tick(OWNED, T0 + timedelta(seconds=75), None), batch_while_closing())
        assert 0 < between[0] < len(devices)  # the batch ran after some slices, before the last
        for second in range(76, 200):
            await stage.tick(OWNED, T0 + timedelta(seconds=second), None)
        closed = [(r["device_id"], r["window_start"]) for r in published.records]
        assert len(closed) == len(set(closed)) == len(devices) + 1  # and the late device's next window

    asyncio.run(scenario())


def test_a_rebalance_between_slices_stops_the_closing_and_the_rest_is_closed_later():
    stage, published, devices = crowded_stage()

    async def revoke_and_assign_again() -> None:
        await asyncio.sleep(0)
        stage.pause()  # what the worker does on a revocation
        stage.resume()  # and the same partitions assigned again

    async def scenario() -> None:
        await seen_once(stage, devices)
        await asyncio.gather(stage.tick(OWNED, T0 + timedelta(seconds=75), None), revoke_and_assign_again())
        assert 0 < len(published.records) < len(devices)  # stopped after the slice under way
        for second in range(76, 200):
            await stage.tick(OWNED, T0 + timedelta(seconds=second), None)
        assert sorted(r["device_id"] for r in published.records) == sorted(devices)

    asyncio.run(scenario())


def test_a_tick_closes_only_its_time_budget_and_leaves_the_rest_due_for_the_next(monkeypatch):
    monkeypatch.setattr("fieldstream.windows.stage.CLOSE_BUDGET_S", 0.0)  # one slice per tick
    stage, published, devices = crowded_stage()

    async def scenario() -> None:
        await seen_once(stage, devices)
        closed_after = []
        for second in (75, 76, 77):
            await stage.tick(OWNED, T0 + timedelta(seconds=second), None)
            closed_after.append(len(published.records))
        assert closed_after == [CLOSE_SLICE, 2 * CLOSE_SLICE, 3 * CLOSE_SLICE]

    asyncio.run(scenario())


def boundary_batch(devices: list[str]) -> list[Reading]:
    """Each device's next reading, 75 s on: its tumbling window [12:00:05 − 5 s, +60 s) has closed."""
    return [reading(d, 75, 1) for d in devices]


def test_a_batch_closes_windows_and_the_timer_emits_them_each_once():
    stage, published, devices = crowded_stage()
    at = T0 + timedelta(seconds=75)

    async def scenario() -> None:
        await seen_once(stage, devices)
        await stage.on_batch(boundary_batch(devices), at)
        assert published.records == []  # the batch did not wait for 750 aggregates
        assert all(stage.engine.unemitted(stage.state(d, will_change=False)) for d in devices)
        assert REGISTRY.get_sample_value("fieldstream_windows_waiting_devices") == len(devices)
        await stage.tick(OWNED, at, None)
        assert REGISTRY.get_sample_value("fieldstream_windows_waiting_devices") == 0
        closed = [(r["device_id"], r["window_start"]) for r in published.records]
        assert sorted(closed) == sorted(set(closed)) and {d for d, _ in closed} == set(devices)
        for second in range(76, 100):  # nothing more until the next windows close
            await stage.tick(OWNED, T0 + timedelta(seconds=second), None)
        assert len(published.records) == len(devices)

    asyncio.run(scenario())


def test_a_batch_emits_windows_that_waited_too_long_for_the_timer(monkeypatch):
    monkeypatch.setattr("fieldstream.windows.stage.EMIT_WITHIN_S", 0.0)
    stage, published, devices = crowded_stage()

    async def scenario() -> None:
        await seen_once(stage, devices)
        await stage.on_batch(boundary_batch(devices), T0 + timedelta(seconds=75))
        assert sorted(r["device_id"] for r in published.records) == sorted(devices)
        assert not any(stage.engine.unemitted(stage.state(d, will_change=False)) for d in devices)

    asyncio.run(scenario())


def test_windows_all_devices_closed_at_once_are_emitted_by_later_batches_spread_over_the_devices_turns():
    """A backlog: no timer tick gets round to them, and a batch a second follows."""
    engine = WindowEngine(parse_specs(["tumbling:60"]), grace_s=10, intervals_s={"soil_station": 10.0})
    clock = [0.0]
    published = Collect("windows_topic")
    stage = WindowStage(engine, {}, PARTITIONS, published, Collect("windows_pg"), Collect("late"),
                        monotonic=lambda: clock[0])
    devices = [f"dev-{i}" for i in range(3 * CLOSE_SLICE)]

    async def scenario() -> None:
        await seen_once(stage, devices)
        await stage.on_batch(boundary_batch(devices), T0 + timedelta(seconds=75))  # every device closes one
        per_batch = []
        for second in range(1, int(EMIT_WITHIN_S) + 1):
            clock[0] = float(second)
            before = len(published.records)
            await stage.on_batch([], T0 + timedelta(seconds=75))
            per_batch.append(len(published.records) - before)
        waited = int(EMIT_AFTER_S) - 1
        assert per_batch[:waited] == [0] * waited  # before EMIT_AFTER_S they are the timer's
        emitting = per_batch[waited:]
        assert sum(emitting) == len(devices)
        assert sorted(r["device_id"] for r in published.records) == sorted(devices)  # each once
        # spread: no batch took more than twice a turn's share, and most turns had some
        turns = round(EMIT_WITHIN_S - EMIT_AFTER_S)
        assert max(emitting) <= 2 * len(devices) // turns
        assert sum(1 for n in emitting if n) >= turns - 1

    asyncio.run(scenario())


def test_unemitted_windows_survive_a_checkpoint_and_are_emitted_by_the_next_owner():
    stage, published, devices = crowded_stage()

    async def scenario() -> None:
        await seen_once(stage, devices)
        await stage.on_batch(boundary_batch(devices), T0 + timedelta(seconds=75))
        stage.pause()  # revoked before the timer came round: nothing emitted here
        stage.states.checkpoint()
        assert published.records == []
        successor, theirs = stage_with(stage.engine)
        successor.states.store = stage.states.store  # the changelog-backed table, restored
        for second in (76, 77, 78):  # a slice per tick: three slices of devices
            await successor.tick(OWNED, T0 + timedelta(seconds=second), None)
        assert sorted(r["device_id"] for r in theirs.records) == sorted(devices)

    asyncio.run(scenario())
