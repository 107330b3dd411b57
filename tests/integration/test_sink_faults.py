"""Sinks under faults: SIGKILL between write and commit, PostgreSQL gone for 30 seconds."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pyarrow.dataset as ds

from fieldstream.devices import DeviceProducer
from fieldstream.errors import SinkUnavailable
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.timescale import TimescaleSink
from fieldstream.stack.postgres import PostgresService

from .conftest import pg_fetch
from .harness import FAST_FAILOVER_ENV, Worker, wait_for


def produce(settings, prefix: str, n: int, devices: int = 20, pace_s: float = 0.0) -> None:
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    start = datetime.now(UTC) - timedelta(seconds=n // devices * 5 + 60)
    for i in range(n):
        d, seq = i % devices, i // devices
        producer.send({"device_id": f"{prefix}-{d}", "device_type": "tank_probe",
                       "event_time": start + timedelta(seconds=seq * 5, milliseconds=d),
                       "seq": seq, "metrics": {"dissolved_oxygen": 7 + (seq % 10) / 10, "ph": 7.0},
                       "tags": None, "location": None, "firmware": None, "battery": None, "signal_dbm": None})
        if pace_s and i % 100 == 99:
            producer.poll(0)
            time.sleep(pace_s)
    assert producer.flush(60) == 0 and producer.failed == 0


def pg_counts(settings, prefix: str) -> tuple[int, int]:
    row = pg_fetch(settings, "SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d FROM readings "
                             "WHERE device_id LIKE $1", prefix + "-%")[0]
    return row["n"], row["d"]


def lake_counts(path) -> tuple[int, int]:
    if not path.exists():
        return 0, 0
    table = ds.dataset(str(path), format="parquet", partitioning="hive").to_table(columns=["device_id", "seq"])
    pairs = set(zip(table.column("device_id").to_pylist(), table.column("seq").to_pylist(), strict=True))
    return table.num_rows, len(pairs)


def test_sigkill_between_write_and_commit_leaves_exactly_n_rows(scenario, workers):
    settings = scenario.settings()
    prefix, n = f"{scenario.name}-k", 6000
    produce(settings, prefix, n)
    # The killed worker's partitions reach the second once its session times out.
    first = Worker(scenario, "first", extra_env=FAST_FAILOVER_ENV)
    workers.append(first)
    # Kill while rows are landing: written to PostgreSQL and Parquet buffers, offsets not yet committed.
    wait_for(lambda: pg_counts(settings, prefix)[0] >= 1500, 90, "a first share of the rows", workers=[first])
    first.kill()
    landed_before_restart = pg_counts(settings, prefix)[0]
    assert landed_before_restart < n, "the kill came too late to test anything"

    second = Worker(scenario, "second")
    workers.append(second)
    wait_for(lambda: pg_counts(settings, prefix)[0] >= n, 180, f"{n} rows in PostgreSQL (had "
             f"{landed_before_restart} at the kill)", workers=[second])
    time.sleep(3)  # anything extra would show up now
    assert pg_counts(settings, prefix) == (n, n)
    assert second.stop() == 0  # a clean stop writes the last Parquet files
    assert lake_counts(scenario.tmp / "lake") == (n, n)


def test_postgres_down_for_30_seconds_loses_and_duplicates_nothing(scenario, workers, stack_settings):
    settings = scenario.settings()
    prefix, n = f"{scenario.name}-pg", 4000
    postgres = PostgresService(stack_settings.stack, password=stack_settings.pg.password.get_secret_value())
    worker = Worker(scenario)
    workers.append(worker)
    producing = threading.Thread(target=produce, args=(settings, prefix, n), kwargs={"pace_s": 0.05})
    producing.start()
    try:
        wait_for(lambda: pg_counts(settings, prefix)[0] > 200, 90, "the first rows", workers=[worker])
        postgres.down()
        time.sleep(30)
        assert worker.alive(), f"the worker exited while PostgreSQL was down:\n{worker.log_text()[-5000:]}"
    finally:
        postgres.up()
        producing.join(120)
    wait_for(lambda: pg_counts(settings, prefix)[0] >= n, 180, f"{n} rows after the outage", workers=[worker])
    time.sleep(3)
    assert pg_counts(settings, prefix) == (n, n)
    assert worker.alive()
    log = worker.log_text()
    assert "unavailable" in log and "retrying" in log  # it said what happened
    assert worker.stop() == 0
    assert lake_counts(scenario.tmp / "lake") == (n, n)


def test_postgres_shutting_down_under_writes_is_only_ever_sink_unavailable(stack_settings):
    """Every error PostgreSQL's shutdown gives a writer with pooled connections is a pause.

    Connections the server terminates while idle in the pool fail their next query in
    asyncpg-specific ways (InternalClientError, ConnectionResetError, ...): any of them
    escaping as "unexpected" would stop the worker.
    """
    settings = stack_settings
    prefix = f"pgdown-{int(time.time() * 1000)}"
    postgres = PostgresService(settings.stack, password=settings.pg.password.get_secret_value())
    t0 = datetime.now(UTC) - timedelta(hours=1)

    def batch(seq: int) -> list[Reading]:
        return [Reading(f"{prefix}-{d}", "tank_probe", t0 + timedelta(seconds=seq), seq, {"ph": 7.0})
                for d in range(5)]

    async def writing_through_a_shutdown() -> tuple[Counter, list[int], bool]:
        # Several pooled connections, so some sit idle when the server terminates them.
        sink = TimescaleSink(settings.pg.model_copy(update={"pool_min": 3}))
        await sink.start()
        pauses: Counter = Counter()
        landed: list[int] = []
        stopping = asyncio.create_task(asyncio.to_thread(postgres.down))
        try:
            seq = 0
            while not stopping.done() or not pauses:
                seq += 1
                try:
                    await sink.write(batch(seq))
                    landed.append(seq)
                except SinkUnavailable as e:
                    pauses[str(e).split(":")[1].strip()] += 1
                await asyncio.sleep(0.01)
            await stopping
        finally:
            await asyncio.to_thread(postgres.up)
        seq += 1
        back = False
        for _ in range(100):  # the same sink writes again once its pool reconnects
            try:
                await sink.write(batch(seq))
                landed.append(seq)
                back = True
                break
            except SinkUnavailable:
                await asyncio.sleep(0.2)
        await sink.close()
        return pauses, landed, back

    pauses, landed, back = asyncio.run(writing_through_a_shutdown())
    assert pauses, "no write met the shutdown"
    assert back, f"no write succeeded after PostgreSQL came back: {pauses}"
    stored = pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1 AND seq = ANY($2::bigint[])",
                      prefix + "-%", landed)[0]["n"]
    assert stored == 5 * len(landed), (stored, len(landed), pauses)
