"""Scaling out and in under load: partitions stay assigned, the sinks end with exactly the produced readings.

One worker, then a second and a third join while readings flow; one leaves with
SIGTERM, another is killed with SIGKILL. After every change the group settles
with every partition of the readings topic held by exactly one live worker (each
worker's /metrics and the broker's description of the group agree), and at the
end PostgreSQL and the Parquet lake hold every produced reading once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.error
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka.admin import AdminClient

from fieldstream.devices import DeviceProducer
from fieldstream.schemas.admin import register_bundled
from fieldstream.topics import ensure_topics

from .harness import FAST_FAILOVER_ENV, Scenario, Worker, metric_total, wait_for
from .test_sink_faults import lake_counts
from .windows_support import pg

PARTITIONS = 6
DEVICES = 30
READINGS = 2400
PRODUCE_S = 60.0
WORKER_ENV = FAST_FAILOVER_ENV


@pytest.fixture
def scenario6(stack_settings, tmp_path) -> Scenario:
    sc = Scenario(tmp_path, partitions=PARTITIONS)
    settings = sc.settings()
    ensure_topics(settings)
    register_bundled(settings)
    return sc


def produce_paced(settings, prefix: str, errors: list[BaseException]) -> None:
    """READINGS readings of DEVICES devices, spread evenly over PRODUCE_S seconds."""
    try:
        producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
        start = datetime.now(UTC) - timedelta(seconds=READINGS // DEVICES * 5 + 60)
        began = time.monotonic()
        for i in range(READINGS):
            d, seq = i % DEVICES, i // DEVICES
            producer.send({"device_id": f"{prefix}-{d}", "device_type": "soil_station",
                           "event_time": start + timedelta(seconds=seq * 5, milliseconds=d), "seq": seq,
                           "metrics": {"moisture": 20 + (seq % 50), "temperature": 10.0 + d / 10},
                           "tags": None, "location": None, "firmware": None, "battery": None, "signal_dbm": None})
            ahead = began + (i + 1) * PRODUCE_S / READINGS - time.monotonic()
            if ahead > 0:
                producer.poll(0)
                time.sleep(ahead)
        assert producer.flush(60) == 0 and producer.failed == 0
    except BaseException as e:  # noqa: BLE001 - reported by the test thread
        errors.append(e)


def pg_counts(settings, prefix: str) -> tuple[int, int]:
    """Rows of the scenario's devices in PostgreSQL, and distinct (device_id, seq) among them."""
    row = pg(settings, "SELECT count(*) AS n, count(DISTINCT (device_id, seq)) AS d FROM readings "
                       "WHERE device_id LIKE $1", prefix + "-%")[0]
    return row["n"], row["d"]


def missing_readings(settings, prefix: str) -> list[tuple[str, int]]:
    """Produced (device_id, seq) pairs PostgreSQL does not hold."""
    have = {(r["device_id"], r["seq"]) for r in pg(settings, "SELECT device_id, seq FROM readings "
                                                              "WHERE device_id LIKE $1", prefix + "-%")}
    return sorted({(f"{prefix}-{i % DEVICES}", i // DEVICES) for i in range(READINGS)} - have)


def dump_stacks(live: list[Worker]) -> None:
    """A stall is a bug to explain: mode's worker logs every thread's and task's stack on SIGUSR1."""
    for w in live:
        if w.alive():
            os.kill(w.proc.pid, signal.SIGUSR1)
    time.sleep(2)


def held(worker: Worker) -> int | None:
    """fieldstream_assigned_partitions of a live worker; None while its web server does not answer."""
    try:
        return int(metric_total(worker.port, "fieldstream_assigned_partitions"))
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def group_assignment(settings, group: str, topic: str) -> list[list[int]]:
    """The broker's view: for each member of the consumer group, its partitions of `topic`."""
    admin = AdminClient(settings.kafka.confluent_config())
    description = admin.describe_consumer_groups([group])[group].result(10)
    return [sorted(tp.partition for tp in m.assignment.topic_partitions if tp.topic == topic)
            for m in description.members]


def settled(settings, live: list[Worker]) -> bool:
    """Every partition held by exactly one live worker, by their own metrics and by the broker."""
    counts = [held(w) for w in live]
    if any(c is None or c == 0 for c in counts) or sum(counts) != PARTITIONS:
        return False
    members = group_assignment(settings, settings.worker.app_id, settings.topics.readings)
    owned = [p for parts in members for p in parts]
    return len(members) == len(live) and sorted(owned) == list(range(PARTITIONS))


def test_workers_join_leave_and_die_under_load(scenario6, workers):
    scenario = scenario6
    settings = scenario.settings()
    prefix = f"{scenario.name}-scale"
    began = time.monotonic()
    timeline: list[str] = []

    def note(what: str) -> None:
        timeline.append(f"{time.monotonic() - began:6.1f}s {what}")

    def wait_settled(live: list[Worker], timeout_s: float, what: str) -> None:
        wait_for(lambda: settled(settings, live), timeout_s, f"{what}: timeline {timeline}", workers=live)
        note(f"settled: {[held(w) for w in live]} partitions")

    w1 = Worker(scenario, "w1", extra_env=WORKER_ENV)
    workers.append(w1)
    wait_settled([w1], 60, "the first worker holding every partition")

    errors: list[BaseException] = []
    producing = threading.Thread(target=produce_paced, args=(settings, prefix, errors))
    producing.start()
    note("producing")
    wait_for(lambda: pg_counts(settings, prefix)[0] > 0, 30, "the first readings", workers=[w1])

    w2 = Worker(scenario, "w2", extra_env=WORKER_ENV)
    workers.append(w2)
    note("w2 started")
    wait_settled([w1, w2], 45, "two workers sharing the partitions")

    w3 = Worker(scenario, "w3", extra_env=WORKER_ENV)
    workers.append(w3)
    note("w3 started")
    wait_settled([w1, w2, w3], 45, "three workers sharing the partitions")

    assert w1.stop() == 0, w1.log_text()[-3000:]  # SIGTERM: leaves the group at once
    note("w1 stopped (SIGTERM)")
    wait_settled([w2, w3], 45, "two workers after a SIGTERM")

    w2.kill()  # SIGKILL: its partitions move once its session times out
    note("w2 killed (SIGKILL)")
    wait_settled([w3], 60, "the last worker after a SIGKILL")

    producing.join(PRODUCE_S + 60)
    assert not errors, errors
    note("produced")
    try:
        wait_for(lambda: pg_counts(settings, prefix)[0] >= READINGS, 60, f"{READINGS} rows in PostgreSQL",
                 workers=[w3])
    except AssertionError:
        dump_stacks([w3])
        raise AssertionError(f"{pg_counts(settings, prefix)} of {READINGS} readings in PostgreSQL, missing e.g. "
                             f"{missing_readings(settings, prefix)[:10]}; timeline {timeline}; "
                             f"stacks in {w3.log}") from None
    time.sleep(3)  # anything extra would show up now
    assert pg_counts(settings, prefix) == (READINGS, READINGS), timeline
    assert settled(settings, [w3])
    assert w3.stop() == 0, w3.log_text()[-3000:]  # a clean stop writes the last Parquet files
    note("w3 stopped (SIGTERM)")
    rows, distinct = lake_counts(scenario.tmp / "lake")
    assert (rows, distinct) == (READINGS, READINGS), timeline  # Parquet: nothing lost, nothing twice
