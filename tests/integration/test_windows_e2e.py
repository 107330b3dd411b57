"""Windows end to end: real workers against the independent reference, silent devices, SIGKILL mid-window.

The stream and its reference are in windows_support.py: a seeded, messy stream
(out of order, late beyond grace, duplicate seqs, gaps, ties, collars with GPS)
produced in one deterministic order, which is also the order the reference sees.
"""

from __future__ import annotations

import threading
import time
import urllib.error
from collections import Counter
from datetime import UTC, datetime, timedelta

from fieldstream.devices import DeviceProducer
from fieldstream.partitioning import partition_for

from .harness import Worker, metric_total, wait_for
from .windows_support import (
    GRACE_S, Stream, decode_reading, describe_duplicates, generate, mismatches, outside_the_crash_gap, pg,
    pg_while_starting, produce, read_topic, tally, window_messages, window_row_count, window_rows, worker_env,
)

LATE_METRICS, LATE_WINDOWS = "fieldstream.late.metrics", "fieldstream.late.windows"
# A published final's state is handed to the changelog at once (WindowStage._emit); this
# bounds how long before a kill a final can have been published and not yet checkpointed.
CHECKPOINT_GAP_S = 5.0


def assigned(worker: Worker, partitions: int) -> bool:
    """The worker holds `partitions` partitions of the readings topic (its web server answers)."""
    try:
        return metric_total(worker.port, "fieldstream_assigned_partitions") == partitions
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def messy_enough(stream: Stream) -> None:
    counts = tally(stream)
    for what in ("outcome:late", "outcome:partly_late", "accepted_out_of_order", "duplicate"):
        assert counts[what] >= 2, f"the stream has too few {what}: {counts}"


def assert_rows_match_reference(settings, prefix: str, stream: Stream) -> dict[tuple, dict]:
    """PostgreSQL holds every window the stream closed, once, equal to the reference; nothing else."""
    rows = window_rows(settings, prefix)
    want, closed = stream.expected(), stream.expected_closed()
    missing = sorted(set(closed) - set(rows))
    assert not missing, f"{len(missing)} closed windows missing in PostgreSQL, e.g. {missing[:3]}"
    # Windows of the final readings may also have closed by now, through silence: they must be right too.
    unknown = sorted(set(rows) - set(want))
    assert not unknown, f"{len(unknown)} window rows the reference does not have, e.g. {unknown[:3]}"
    wrong = {k: bad for k, row in rows.items() if (bad := mismatches(row, want[k]))}
    assert not wrong, f"{len(wrong)} window rows differ from the reference, e.g. {list(wrong.items())[:3]}"
    return rows


def late_messages(settings, prefix: str) -> Counter:
    """(device, seq, metrics header, windows header) of each late-topic message of the scenario's devices."""
    out: Counter = Counter()
    for msg in read_topic(settings, settings.topics.late):
        if not msg.key.decode().startswith(prefix + "-"):
            continue
        rec = decode_reading(msg.value)
        assert msg.key == rec["device_id"].encode()  # the original record, as it was produced
        out[(rec["device_id"], rec["seq"], msg.headers[LATE_METRICS].decode(),
             msg.headers[LATE_WINDOWS].decode())] += 1
    return out


def expected_late(stream: Stream) -> set[tuple]:
    return {(device, seq, m, w) for (device, seq), (m, w) in stream.late().items()}


def readings_in_pg(settings, prefix: str) -> tuple[int, int]:
    row = pg(settings, "SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d FROM readings "
                       "WHERE device_id LIKE $1", prefix + "-%")[0]
    return row["n"], row["d"]


def test_window_aggregates_equal_the_reference(scenario, workers):
    settings = scenario.settings()
    prefix = f"{scenario.name}-w"
    stream = generate(prefix, seed=11)
    messy_enough(stream)
    closed = stream.expected_closed()
    produce(settings, stream.deliveries)

    worker = Worker(scenario, extra_env=worker_env())
    workers.append(worker)
    wait_for(lambda: window_row_count(settings, prefix) >= len(closed), 90,
             f"{len(closed)} closed windows in PostgreSQL", workers=[worker])
    time.sleep(3)  # a window emitted twice, or one too many, would show up now
    rows = assert_rows_match_reference(settings, prefix, stream)

    # The windows topic: each final once, equal to its row.
    published = window_messages(settings, prefix)
    dups = {k: v for k, v in published.items() if len(v) > 1}
    assert not dups, f"{len(dups)} windows published more than once:\n{describe_duplicates(dups, None)}"
    assert set(published) == set(rows)
    want = stream.expected()
    wrong = {k: bad for k, [(_, rec)] in published.items() if (bad := mismatches(rec, want[k]))}
    assert not wrong, f"published aggregates differ from the reference: {list(wrong.items())[:3]}"

    # Late readings: each once on the late topic, naming its metrics and the windows it missed.
    late = late_messages(settings, prefix)
    assert set(late) == expected_late(stream)
    assert all(n == 1 for n in late.values()), [k for k, n in late.items() if n > 1]
    assert metric_total(worker.port, "fieldstream_late_readings_total") == sum(
        len(m.split(",")) for _, _, m, _ in expected_late(stream))

    # Late or not, every reading is stored once.
    n = len(stream.distinct_readings())
    assert readings_in_pg(settings, prefix) == (n, n)
    assert worker.alive()


def test_silent_device_gets_its_last_window_within_grace_plus_one_window(scenario, workers):
    settings = scenario.settings()
    prefix = f"{scenario.name}-s"
    quiet = f"{prefix}-quiet"
    # A neighbour on the same partition keeps talking: the device is silent, not its partition.
    chatty = next(f"{prefix}-chatty-{i}" for i in range(1000)
                  if partition_for(f"{prefix}-chatty-{i}".encode(), scenario.partitions)
                  == partition_for(quiet.encode(), scenario.partitions))
    worker = Worker(scenario, extra_env=worker_env())
    workers.append(worker)
    wait_for(lambda: assigned(worker, scenario.partitions), 60, "the partitions", workers=[worker])

    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings, linger_ms=0)
    seqs = {quiet: 0, chatty: 0}

    def send(device: str) -> datetime:
        seqs[device] += 1
        at = datetime.now(UTC)
        producer.send({"device_id": device, "device_type": "tank_probe", "event_time": at, "seq": seqs[device],
                       "metrics": {"dissolved_oxygen": 7.0 + seqs[device] % 5, "ph": 7.2}, "tags": None,
                       "location": None, "firmware": None, "battery": None, "signal_dbm": None})
        producer.flush(10)
        return at

    # The quiet device stops in the first 40 s of a minute: its last window then waits 20 to 60 s of silence.
    sent_quiet: list[datetime] = []
    while len(sent_quiet) < 3 or sent_quiet[-1].second >= 40:
        sent_quiet.append(send(quiet))
        send(chatty)
        time.sleep(1)
    last = sent_quiet[-1]
    start = last.replace(second=0, microsecond=0)
    end = start + timedelta(minutes=1)
    in_window = [t for t in sent_quiet if t >= start]

    stop = threading.Event()

    def keep_talking() -> None:
        while not stop.wait(1.0):
            send(chatty)

    talker = threading.Thread(target=keep_talking, daemon=True)
    talker.start()
    try:
        def final_row() -> list:
            return pg_while_starting(
                settings, "SELECT * FROM windows_tumbling_1m WHERE device_id = $1 AND window_start = $2", quiet, start)

        slack_s = 5.0  # the 1 s timer, a batch, the upsert and this poll
        wait_for(lambda: bool(final_row()), GRACE_S + 60 + slack_s + 5, "the quiet device's last window",
                 interval_s=0.2, workers=[worker])
        elapsed = time.time() - last.timestamp()
        seen_at = datetime.now(UTC)
    finally:
        stop.set()
        talker.join(10)
    needed = (end - last).total_seconds() + GRACE_S  # silence that closes it: to its end, plus grace
    print(f"last reading {last.isoformat()}, window end {end.isoformat()}: row after {elapsed:.2f}s of silence "
          f"(closing needs {needed:.2f}s; bound grace + 60 s + slack = {GRACE_S + 60 + slack_s:.0f}s)")
    assert needed - 0.5 <= elapsed <= needed + slack_s, (elapsed, needed)
    rows = {r["metric"]: r for r in final_row()}
    assert rows["dissolved_oxygen"]["count"] == len(in_window) and rows["ph"]["count"] == len(in_window)
    assert rows["ph"]["last_time"] == last
    # The 5-minute window ending with it closed with it; those ending later are still open.
    hopping = pg(settings, "SELECT window_end FROM windows_hopping_5m_1m WHERE device_id = $1 AND metric = 'ph'",
                 quiet)
    ends = {r["window_end"] for r in hopping}
    assert end in ends
    assert all(e <= seen_at for e in ends) and not any(e > end for e in ends), (sorted(ends), end)
    assert worker.alive()


def test_sigkill_mid_window_restart_publishes_every_window_equal_to_the_reference(scenario, workers):
    settings = scenario.settings()
    prefix = f"{scenario.name}-k"
    stream = generate(prefix, seed=23)
    messy_enough(stream)
    closed = stream.expected_closed()
    env = worker_env()
    first = Worker(scenario, "first", extra_env=env)
    workers.append(first)
    wait_for(lambda: assigned(first, scenario.partitions), 60, "the partitions", workers=[first])

    errors: list[BaseException] = []

    def producing() -> None:
        try:
            produce(settings, stream.deliveries, pace_s=0.04)  # ~25 s: windows close as event time moves on
        except BaseException as e:  # noqa: BLE001 - reported by the test thread
            errors.append(e)

    producer = threading.Thread(target=producing)
    producer.start()
    # Killed while windows are open and some have been published: some of their state not yet checkpointed.
    wait_for(lambda: window_row_count(settings, prefix) >= len(closed) // 4, 60, "the first windows",
             interval_s=0.2, workers=[first])
    kill_at = time.time()
    first.kill()
    rows_at_kill = window_row_count(settings, prefix)
    assert rows_at_kill < len(closed) // 2, "the kill came too late to test anything"

    second = Worker(scenario, "second", extra_env=env)
    workers.append(second)
    producer.join(120)
    assert not errors, errors
    wait_for(lambda: window_row_count(settings, prefix) >= len(closed), 110,
             f"{len(closed)} closed windows in PostgreSQL", workers=[second])
    time.sleep(3)
    rows = assert_rows_match_reference(settings, prefix, stream)

    # Late readings replayed after the kill may be reported again (at-least-once), never wrongly.
    late = late_messages(settings, prefix)
    assert set(late) == expected_late(stream)
    n = len(stream.distinct_readings())
    assert readings_in_pg(settings, prefix) == (n, n)

    published = window_messages(settings, prefix)
    assert set(published) == set(rows)
    want = stream.expected()
    wrong = {k: bad for k, copies in published.items() for _, rec in copies if (bad := mismatches(rec, want[k]))}
    assert not wrong, f"published aggregates differ from the reference: {list(wrong.items())[:3]}"
    # At-least-once (docs/ARCHITECTURE.md): the kill may fall between a final's publication
    # and the changelog write of its state; that final is published again, identically.
    # Anything published longer before the kill was checkpointed and must not come again.
    dups = {k: v for k, v in published.items() if len(v) > 1}
    bad = outside_the_crash_gap(dups, kill_at, CHECKPOINT_GAP_S)
    assert not bad, (f"{len(bad)} of {len(published)} windows published more than once on "
                     f"{settings.topics.windows} outside the crash gap (kill at {kill_at:.3f}, "
                     f"{rows_at_kill} rows then):\n" + describe_duplicates(bad, kill_at))
    assert second.alive()
