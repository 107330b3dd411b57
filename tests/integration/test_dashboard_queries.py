"""Every Grafana panel query has data behind it, from a real worker and real PostgreSQL.

There is no Prometheus server here: a PromQL panel is proven by the samples it reads
being on a real worker's /metrics, with data (counters moved). To make the failure
panels mean something the worker is made to fail on purpose: a file sits where the
Parquet sink wants to create its date directory, so the sink errors and retries until
the test removes it. SQL panels run against PostgreSQL with Grafana's macros expanded.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from prometheus_client import Counter, Gauge, Histogram

from fieldstream import metrics
from fieldstream.config.settings import Settings
from fieldstream.devices import DeviceProducer
from fieldstream.ops import dashboard
from fieldstream.schemas.admin import register_bundled
from fieldstream.topics import ensure_topics

from .conftest import pg_fetch
from .harness import Scenario, Worker, wait_for

QUERIES = dashboard.queries(dashboard.load())
READINGS = 60
# One tank probe reading under the default critical dissolved-oxygen threshold: the alert panels
# need an alert behind them.
LOW_OXYGEN_AT = 7


@dataclass(frozen=True)
class Live:
    settings: Settings
    exposition: str
    produced_at: datetime
    ready_while_parquet_fails: tuple[int, dict]
    ready_after: tuple[int, dict]
    health: tuple[int, dict]


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:  # noqa: S310 - local
        return resp.read().decode()


def get_json(port: int, path: str) -> tuple[int, dict]:
    """Status and JSON body of a worker endpoint (a 503 is an answer, not an error)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:  # noqa: S310 - local
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def reading(device_id: str, device_type: str, t: datetime, seq: int, metrics: dict[str, float]) -> dict:
    return {"device_id": device_id, "device_type": device_type, "event_time": t, "seq": seq, "metrics": metrics,
            "tags": None, "location": None, "firmware": None, "battery": None, "signal_dbm": None}


def has(port: int, name: str, **labels: str) -> bool:
    ref = dashboard.MetricRef(name, tuple(sorted(labels.items())))
    return dashboard.check_metric(ref, dashboard.scraped_samples(scrape(port))) is None


@pytest.fixture(scope="module")
def live(stack_settings, tmp_path_factory) -> Iterator[Live]:
    sc = Scenario(tmp_path_factory.mktemp("dashboard"))
    settings = sc.settings()
    ensure_topics(settings)
    register_bundled(settings)
    now = datetime.now(UTC).replace(microsecond=0)
    times = [now - timedelta(seconds=READINGS - i) for i in range(READINGS)]
    lake = sc.tmp / "lake"
    lake.mkdir()
    blockers = {lake / f"date={t:%Y-%m-%d}" for t in times}
    for b in blockers:
        b.write_text("a file where the Parquet sink wants a directory: the sink fails until it is gone")

    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    fleet = [reading(f"{sc.name}-dev-{i % 6}", ("soil_station", "tank_probe")[i % 2], t, i,
                     {"moisture": 20.0 + i % 5, "ph": 7.0, "dissolved_oxygen": 1.0 if i == LOW_OXYGEN_AT else 8.0})
             for i, t in enumerate(times)]
    for r in fleet:
        producer.send(r)
    # Every other metric needs something to count. Devices outside the fleet's id prefix keep
    # the SQL panels' counts to the fleet.
    producer.send(fleet[0])  # a duplicate (device_id, seq)
    producer.send(reading(f"odd-{sc.name}", "soil_station", now, 0, {"moisture": float("nan")}))  # invalid
    producer.send(reading(f"late-{sc.name}", "soil_station", now, 0, {"moisture": 20.0}))
    producer.send(reading(f"late-{sc.name}", "soil_station", now - timedelta(minutes=2), 1, {"moisture": 20.0}))
    producer.send_raw(b"not-a-device", b"\x07not avro")  # one dead letter, stage "decode"
    assert producer.flush() == 0 and producer.failed == 0

    # Short windows, so that they close while the test waits.
    worker = Worker(sc, extra_env={"FIELDSTREAM_WINDOW_SPECS": "tumbling:10", "FIELDSTREAM_WINDOW_GRACE_S": "2"})
    try:
        wait_for(lambda: pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1",
                                  f"{sc.name}-%")[0]["n"] == READINGS, 45, "readings in PostgreSQL",
                 workers=[worker])
        wait_for(lambda: has(worker.port, "fieldstream_sink_retries_total", sink="parquet"), 20,
                 "the blocked Parquet sink to retry", workers=[worker])
        ready_while_failing = get_json(worker.port, "/ready")
        for b in blockers:
            b.unlink()
        wait_for(lambda: any(lake.rglob("*.parquet")), 30, "the Parquet sink to recover", workers=[worker])
        wait_for(lambda: has(worker.port, "fieldstream_consumer_lag"), 15, "the lag gauge", workers=[worker])
        wait_for(lambda: has(worker.port, "fieldstream_alerts_total"), 30, "the low-oxygen alert", workers=[worker])
        wait_for(lambda: has(worker.port, "fieldstream_window_closes_total"), 30, "a window to close",
                 workers=[worker])
        wait_for(lambda: get_json(worker.port, "/ready")[0] == 200, 15, "/ready once Parquet recovered",
                 workers=[worker])
        yield Live(settings, scrape(worker.port), now, ready_while_failing, get_json(worker.port, "/ready"),
                   get_json(worker.port, "/health"))
    finally:
        worker.kill()


@pytest.mark.parametrize("query", [pytest.param(q, id=f"{q.panel}/{q.ref_id}") for q in QUERIES
                                   if q.kind == "promql"])
def test_promql_panel_reads_metrics_the_worker_exports_with_data(live, query):
    (finding,) = dashboard.check_promql([query], live.exposition)
    assert finding.ok, f"{query.panel} ({query.text}): {finding.detail}"


def test_sql_panels_return_rows(live):
    async def run() -> list[dashboard.Finding]:
        conn = await asyncpg.connect(**live.settings.pg.connect_kwargs(), timeout=10)
        try:
            # The last hour, as the dashboard opens, around the readings this test sent.
            return await dashboard.check_sql(QUERIES, conn, live.produced_at - timedelta(hours=1),
                                             live.produced_at + timedelta(minutes=1))
        finally:
            await conn.close()

    findings = asyncio.run(run())
    assert len(findings) == sum(q.kind == "sql" for q in QUERIES) >= 2
    assert all(f.ok for f in findings), [(f.query.panel, f.detail) for f in findings if not f.ok]


def only_this_tests_rows(sql: str) -> str:
    """The panel's own SQL, run over this test's devices only: CTEs shadow the two tables."""
    return ("WITH readings AS (SELECT * FROM public.readings WHERE device_id LIKE $1), "
            "devices AS (SELECT * FROM public.devices WHERE device_id LIKE $1) " + sql)


def test_sql_panels_count_exactly_what_the_worker_stored(live):
    start, end = live.produced_at - timedelta(hours=1), live.produced_at + timedelta(minutes=1)
    prefix = f"{live.settings.worker.app_id}-%"  # the scenario's name is also its device-id prefix
    results = {q.panel: pg_fetch(live.settings, only_this_tests_rows(dashboard.expand_sql(q.text, start, end)), prefix)
               for q in QUERIES if q.kind == "sql"}
    per_interval = next(rows for panel, rows in results.items() if panel.startswith("Readings stored"))
    assert sum(r["readings"] for r in per_interval) == READINGS
    assert {r["metric"] for r in per_interval} == {"soil_station", "tank_probe"}
    active = next(rows for panel, rows in results.items() if panel.startswith("Most active"))
    assert sorted((r["device_id"], r["readings_in_range"], r["readings_total"]) for r in active) == [
        (f"{live.settings.worker.app_id}-dev-{d}", READINGS // 6, READINGS // 6) for d in range(6)]
    quiet = next(rows for panel, rows in results.items() if panel.startswith("Devices going quiet"))
    # Each device's last reading was `READINGS - i` seconds before produced_at (i: its last index).
    last_seen = {f"{live.settings.worker.app_id}-dev-{d}": live.produced_at - timedelta(seconds=READINGS - i)
                 for i in range(READINGS) for d in [i % 6]}
    assert [r["device_id"] for r in quiet] == sorted(last_seen, key=last_seen.get)  # longest silent first
    for r in quiet:
        assert r["last_seen"] == last_seen[r["device_id"]]
        assert r["silent_for"] >= live.produced_at - r["last_seen"]


# Moved only by a registry outage: tests/integration/test_registry_outage.py checks it.
ONLY_IN_OTHER_TESTS = {"fieldstream_registry_retries"}


def declared_metrics() -> list:
    return [m for m in vars(metrics).values() if isinstance(m, (Counter, Gauge, Histogram))]


def test_every_declared_metric_has_a_value_after_a_run(live):
    samples = dashboard.scraped_samples(live.exposition)  # prometheus-client's own parser
    checked = 0
    for metric in declared_metrics():
        name = metric.describe()[0].name
        if name in ONLY_IN_OTHER_TESTS:
            continue
        sample = name + {"counter": "_total", "histogram": "_count"}.get(metric._type, "")
        problem = dashboard.check_metric(dashboard.MetricRef(sample, ()), samples)
        assert problem is None, problem
        checked += 1
    assert checked >= 20


def test_health_and_readiness(live):
    assert live.health == (200, {"status": "alive"})
    status, body = live.ready_while_parquet_fails
    assert status == 503 and body["sinks_connected"] is False and body["ready"] is False
    assert live.ready_after == (200, {"ready": True, "partitions_assigned": True, "sinks_connected": True})
