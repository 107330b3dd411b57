"""Closing, lateness, exactly-once emission, restarts and replays of the window engine (explicit times)."""

from __future__ import annotations

import pickle
import random
from array import array
from datetime import UTC, datetime, timedelta

import pytest

from fieldstream.schemas.reading import Reading
from fieldstream.windows import DeviceWindows, Outcome, WindowEngine, parse_specs
from fieldstream.windows.clock import to_us
from fieldstream.windows.engine import with_datetimes
from tests.unit.windowstream import INTERVALS, drive, generate, record_key

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
GRACE = 10


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def reading(seconds: float, seq: int, **metrics: float) -> Reading:
    return Reading("dev-1", "soil_station", s(seconds), seq, metrics or {"temperature": 20.0 + seq})


@pytest.fixture
def engine() -> WindowEngine:
    return WindowEngine(parse_specs(["tumbling:60", "hopping:300:60"]), grace_s=GRACE,
                        intervals_s={"soil_station": 10.0})


def feed(engine: WindowEngine, state: DeviceWindows, seconds: list[float], delay: float = 0.5) -> list[dict]:
    records = []
    for i, t in enumerate(seconds):
        records.extend(engine.add(state, reading(t, i), s(t + delay)).closed)
    return records


def test_silent_device_closes_within_grace_plus_one_window(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    feed(engine, state, [5 + 10 * i for i in range(16)])  # last reading at 155 s, arrives at 155.5 s
    last_arrival = 155.5
    closed_at: dict[tuple[str, datetime], float] = {}
    now = last_arrival
    while state.panes:
        now += 1
        for record in map(with_datetimes, engine.close_due(state, s(now))):
            closed_at[(record["window"], record["window_start"])] = now
        assert now < last_arrival + 1000, "windows of a silent device never closed"
    for spec in engine.specs:
        for start, end in spec.windows(s(155)):
            at = closed_at[(spec.name, start)]
            assert at <= last_arrival + spec.size_s + GRACE  # within one window + grace of silence
            # ... and not before its end + grace on the device's (silence-advanced) clock
            assert at - last_arrival >= (end - s(155)).total_seconds() + GRACE


def test_silence_counts_only_while_the_stream_flows(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    feed(engine, state, [5, 15, 25])
    # The worker was down (or catching up on a backlog) until 1000 s: that is not silence.
    assert engine.close_due(state, s(1005), flowing_since=s(1000)) == []
    assert engine.close_due(state, s(1000 + 35 + GRACE + 1), flowing_since=s(1000))  # [0, 60) closes
    # The backlog's next reading is not late: it was never silent in event time.
    assert engine.add(state, reading(65, 3), s(1050)).outcome == Outcome.ACCEPTED


def test_closing_twice_emits_nothing_the_second_time(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    feed(engine, state, [5, 15, 25])
    first = engine.close_due(state, s(25.5 + 60))
    # Both windows ending at 60 s: [0, 60) and the hopping [-240, 60).
    assert [(r["window"], r["count"]) for r in first] == [("tumbling_1m", 3), ("hopping_5m_1m", 3)]
    assert engine.close_due(state, s(25.5 + 60)) == []
    assert engine.close_due(state, s(25.5 + 61)) == []


def test_late_reading_after_close_is_reported_and_does_not_reopen(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    emitted = feed(engine, state, [5, 15, 25, 65, 75])  # watermark 75 → [0, 60) closed at 70
    assert [(r["window"], r["window_start"], r["count"]) for r in emitted] == [
        ("tumbling_1m", to_us(s(0)), 3), ("hopping_5m_1m", to_us(s(-240)), 3)]
    result = engine.add(state, reading(45, 10, temperature=99.0, humidity=50.0), s(76))
    assert result.outcome == Outcome.PARTLY_LATE  # still counted in the open hopping windows
    assert sorted(m.metric for m in result.late) == ["humidity", "temperature"]
    assert {(w.name, w.start, w.end) for w in result.late[0].windows} == {
        ("tumbling_1m", s(0), s(60)), ("hopping_5m_1m", s(-240), s(60))}
    assert result.late[0].value in (99.0, 50.0) and result.late[0].seq == 10
    later = [with_datetimes(r) for r in engine.close_due(state, s(2000))]
    assert ("tumbling_1m", s(0)) not in {(r["window"], r["window_start"]) for r in later}
    hopping = [r for r in later if r["window"] == "hopping_5m_1m" and r["window_start"] == s(-180)]
    # [-180, 120) holds 5, 15, 25, 45 (the partly late one), 65 and 75.
    assert {r["metric"]: r["count"] for r in hopping} == {"temperature": 6, "humidity": 1}
    # Once every window of its pane has closed, a reading is LATE and counted nowhere.
    result = engine.add(state, reading(50, 11), s(2001))
    assert result.outcome == Outcome.LATE and not result.closed
    assert {w.name for w in result.late[0].windows} == {"tumbling_1m", "hopping_5m_1m"}
    assert engine.close_due(state, s(3000)) == []


def test_reading_within_grace_updates_its_window(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    feed(engine, state, [5, 15, 65])  # watermark 65: [0, 60) closes at 70
    assert engine.add(state, reading(58, 3), s(66)).outcome == Outcome.ACCEPTED
    closed = engine.add(state, reading(71, 4), s(71.5)).closed
    assert [(r["window"], r["count"], r["last_value"]) for r in closed] == [
        ("tumbling_1m", 3, 23.0), ("hopping_5m_1m", 3, 23.0)]


def test_duplicates_in_an_open_pane_count_once(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    assert engine.add(state, reading(5, 1), s(6)).outcome == Outcome.ACCEPTED
    assert engine.add(state, reading(5, 1), s(7)).outcome == Outcome.DUPLICATE
    assert engine.add(state, reading(6, 2), s(8)).outcome == Outcome.ACCEPTED
    (record,) = [r for r in engine.close_due(state, s(100)) if r["window"] == "tumbling_1m"]
    assert record["count"] == 2


def test_pickle_round_trip_after_every_event_changes_nothing() -> None:
    events = generate(3)
    engine = WindowEngine(parse_specs(["tumbling:60", "hopping:300:60"]), grace_s=GRACE, intervals_s=INTERVALS)
    plain = drive(engine, events)
    restored = drive(engine, events, roundtrip_every=1)
    assert restored.records == plain.records
    assert [r and r.outcome for r in restored.results] == [r and r.outcome for r in plain.results]


def test_restart_from_changelog_then_replay_gives_the_same_aggregates() -> None:
    events = generate(4)
    engine = WindowEngine(parse_specs(["tumbling:60", "hopping:300:60"]), grace_s=GRACE, intervals_s=INTERVALS)
    plain = drive(engine, events)
    cut, crash = len(events) // 2, len(events) // 2 + 400
    first = drive(engine, events[:cut])
    snapshot = pickle.dumps(first.states)  # what the changelog holds
    before_crash = drive(engine, events[cut:crash], first.states)
    # The worker dies; its replacement restores the snapshot and Kafka re-delivers from `cut`.
    after = drive(engine, events[cut:], pickle.loads(snapshot))
    final = {record_key(r): r for r in first.records + before_crash.records}
    re_emitted = {record_key(r): r for r in after.records}
    for key, record in re_emitted.items():
        if key in final:  # emitted before the crash and again after the restart: identical
            assert final[key] == record
    final.update(re_emitted)
    assert final == {record_key(r): r for r in plain.records}


def test_deferred_emission_gives_the_same_aggregates_and_outcomes_whenever_it_happens() -> None:
    # No timer ticks: windows close by event time only, so both runs close the same windows.
    events = [e for e in generate(6) if e.reading is not None]
    engine = WindowEngine(parse_specs(["tumbling:60", "hopping:300:60"]), grace_s=GRACE, intervals_s=INTERVALS)
    eager = drive(engine, events)
    rng = random.Random(6)
    states: dict[str, DeviceWindows] = {}
    records: list[dict] = []
    outcomes = []
    waited = 0  # adds after which some device held a closed, unemitted window
    for n, event in enumerate(events):
        r = event.reading
        state = states.setdefault(r.device_id, engine.new_state(r.device_id))
        result = engine.add(state, r, event.at, defer=True)
        outcomes.append(result.outcome)
        records.extend(result.closed)  # only windows a partly late reading's pane shares
        waited += any(engine.unemitted(s) for s in states.values())
        if rng.random() < 0.01:
            for s_ in states.values():
                records.extend(engine.emit_closed(s_))
        if n % 97 == 0:  # a checkpoint and restore with windows still unemitted
            states = {k: pickle.loads(pickle.dumps(v)) for k, v in states.items()}
    for s_ in states.values():
        records.extend(engine.emit_closed(s_))
        assert not engine.unemitted(s_)
    assert Outcome.PARTLY_LATE in outcomes and waited > len(events) // 2
    assert outcomes == [r.outcome for r in eager.results]
    assert sorted(map(record_key, records)) == sorted(map(record_key, eager.records))  # each exactly once
    assert {record_key(r): r for r in records} == {record_key(r): r for r in eager.records}


def test_a_state_pickled_before_deferred_emission_existed_loads_with_everything_emitted(
        engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    feed(engine, state, [5, 15, 75])
    old_layout = as_format_2(state)[:-1]  # format 1 had no emitted_to
    loaded = DeviceWindows.__new__(DeviceWindows)
    loaded.__setstate__((1, *old_layout[1:]))
    assert loaded.emitted_to == loaded.closed_to == state.closed_to
    assert not engine.unemitted(loaded)


def as_format_2(state: DeviceWindows) -> tuple:
    """The state as format 2 pickled it: per pane and metric, an array [first_t, first_seq, first_v,
    last_t, last_seq, last_v, values...] as bytes (exact panes only)."""
    assert all(pane.sketches is None for pane in state.panes.values())
    panes = tuple(
        (key, (pane.seqs.tobytes(),
               tuple(None if (values := pane.column(i)) is None else array("d", [*pane.ends(i), *values]).tobytes()
                     for i in range(pane.width)),
               None if pane.locations is None else pane.locations.tobytes()))
        for key, pane in state.panes.items())
    now = state.__getstate__()
    return (2, *now[1:9], panes, now[10])


def test_a_state_pickled_in_format_2_gives_the_same_aggregates_after_a_restart() -> None:
    events = generate(4)
    engine = WindowEngine(parse_specs(["tumbling:60", "hopping:300:60"]), grace_s=GRACE, intervals_s=INTERVALS)
    plain = drive(engine, events)
    cut = len(events) // 2
    first = drive(engine, events[:cut])
    old = {}
    for device_id, state in first.states.items():
        old[device_id] = DeviceWindows.__new__(DeviceWindows)
        old[device_id].__setstate__(as_format_2(state))
    assert any(len(pane.rows) for state in old.values() for pane in state.panes.values())
    after = drive(engine, events[cut:], old)
    final = {record_key(r): r for r in first.records}
    final.update({record_key(r): r for r in after.records})
    assert final == {record_key(r): r for r in plain.records}


def test_replaying_every_reading_again_changes_nothing() -> None:
    events = generate(5)
    engine = WindowEngine(parse_specs(["tumbling:60", "hopping:300:60"]), grace_s=GRACE, intervals_s=INTERVALS)
    run = drive(engine, events)
    later = events[-1].at
    for event in events:
        if event.reading is not None:
            result = engine.add(run.states[event.reading.device_id], event.reading, later)
            assert not result.counted and not result.closed
    assert all(engine.close_due(state, later + timedelta(days=1)) == [] for state in run.states.values())


def test_interval_is_learned_from_the_median_spacing() -> None:
    engine = WindowEngine(parse_specs(["tumbling:60"]), grace_s=GRACE, default_interval_s=60.0)
    state = engine.new_state("dev-1")
    assert engine.expected_interval_s(state) == 60.0  # nothing learned yet: the default
    times = [6 * i for i in range(30) if i % 7 != 3]  # every 6 s, a few missing
    records = feed(engine, state, times)
    assert engine.expected_interval_s(state) == 6.0
    last = records[-1]
    assert (last["expected"], last["count"]) == (10, 10 - sum(1 for i in range(10) if (i + 10 * 1) % 7 == 3))
    assert last["missing"] == last["expected"] - last["count"]
    assert last["quality"] == last["count"] / last["expected"]


def test_state_pickles_small_and_is_dropped_after_the_ttl(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    feed(engine, state, [5 + 10 * i for i in range(40)])
    # One metric, 5 panes of 6 readings: ~1 KB (values 8 bytes each, plus seqs and first/last).
    assert len(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)) < 1500
    assert not engine.expired(state, s(1000))
    engine.close_due(state, s(1000))
    assert not state.panes and engine.expired(state, s(400 + 7 * 86400))


def test_next_close_says_when_silence_closes_the_next_window(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    assert engine.next_close(state) is None
    feed(engine, state, [5, 15, 25])  # watermark 25 at 25.5 s; [0, 60) closes at 70 on its clock
    due = engine.next_close(state)
    assert due == s(25.5 + 45)
    assert engine.close_due(state, due - timedelta(microseconds=1)) == []
    assert engine.close_due(state, due)


def test_times_must_be_timezone_aware(engine: WindowEngine) -> None:
    state = engine.new_state("dev-1")
    with pytest.raises(ValueError, match="timezone-aware"):
        engine.add(state, reading(5, 1), datetime(2024, 3, 1, 12, 0))


def test_a_reading_of_another_device_is_refused(engine: WindowEngine) -> None:
    with pytest.raises(ValueError, match="dev-1"):
        engine.add(engine.new_state("dev-2"), reading(5, 1), s(6))
