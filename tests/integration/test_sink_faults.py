"""Sinks under faults: SIGKILL between write and commit, PostgreSQL gone for 30 seconds."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pyarrow.dataset as ds

from fieldstream.devices import DeviceProducer
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
