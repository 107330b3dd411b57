"""`fieldstream status` against the real stack: a running worker's group, lag, tables and lake."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fieldstream.devices import DeviceProducer
from fieldstream.ops.status import collect
from fieldstream.ops.status_report import render
from fieldstream.schemas.files import subject_for
from fieldstream.topics import describe_topics

from .cli_support import run_fieldstream
from .conftest import pg_fetch
from .harness import Scenario, Worker, free_port, wait_for


def produce(settings, prefix: str, count: int) -> None:
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    now = datetime.now(UTC).replace(microsecond=0)
    for i in range(count):
        producer.send({"device_id": f"{prefix}-dev-{i % 8}", "device_type": "soil_station",
                       "event_time": now - timedelta(seconds=count - i), "seq": i,
                       "metrics": {"moisture": 20.0 + i % 9, "temperature": 15.0}, "tags": None,
                       "location": None, "firmware": None, "battery": None, "signal_dbm": None})
    assert producer.flush() == 0 and producer.failed == 0


def test_status_shows_the_worker_its_partitions_lag_and_stores(scenario, workers):
    settings = scenario.settings()
    produce(settings, scenario.name, 80)
    workers.append(Worker(scenario))

    def caught_up() -> bool:
        g = collect(settings, timeout_s=5).group
        # Partitions no device hashed to have nothing to commit.
        return bool(g and g.members and g.total_lag == 0
                    and all(p.committed == p.high for p in g.partitions if p.high > p.low))

    wait_for(caught_up, 75, "the worker to commit every offset (lag 0)", interval_s=1, workers=workers)
    status = collect(settings, timeout_s=5)
    assert status.problems == {}
    g = status.group
    assert g is not None and g.group == scenario.name and g.state == "STABLE"
    assert [p.partition for p in g.partitions] == list(range(scenario.partitions))
    assert sum(p.high for p in g.partitions) == 80  # every record produced, counted from the broker
    (member,) = g.members
    assert member.partitions == list(range(scenario.partitions))
    assert {p.owner for p in g.partitions} == {member.name}
    assert status.topics is not None and status.topics[settings.topics.readings] == scenario.partitions
    subjects = {s.name: s.versions for s in status.subjects or []}
    assert subjects[subject_for(settings.topics.readings)] == [1, 2]
    tables = {t.table: t for t in status.tables or []}
    ours = pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1", f"{scenario.name}-%")
    assert ours[0]["n"] == 80
    assert tables["readings"].method == "exact" and tables["readings"].rows >= 80
    assert {"readings", "devices", "alerts"} <= set(tables)
    assert status.lake is not None and status.lake.files >= 1
    assert status.lake.newest.startswith(str(scenario.tmp / "lake"))

    cli = run_fieldstream("status", "--json", env=scenario.env)
    assert cli.returncode == 0, cli.output
    doc = json.loads(cli.stdout)
    assert doc["group"]["total_lag"] == 0 and doc["unreachable"] == []
    assert [m["partitions"] for m in doc["group"]["members"]] == [list(range(scenario.partitions))]
    table = run_fieldstream("status", env=scenario.env)
    assert table.returncode == 0 and f"consumer group {scenario.name}" in table.stdout
    assert "every service answered" in table.stdout


def test_status_names_each_unreachable_service_without_a_traceback(tmp_path):
    closed = str(free_port())  # nothing listens there
    env = {
        "FIELDSTREAM_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{closed}",
        "FIELDSTREAM_REGISTRY_URL": f"http://127.0.0.1:{closed}",
        "FIELDSTREAM_PG_PORT": closed,
        "FIELDSTREAM_PARQUET_PATH": str(tmp_path / "no-lake-yet"),
    }
    result = run_fieldstream("status", "--timeout", "2", env=env, timeout_s=30)  # gives up, does not hang
    assert result.returncode == 1
    assert "Traceback" not in result.output
    for service in ("Kafka at 127.0.0.1:", "schema registry at http://127.0.0.1:", "PostgreSQL at 127.0.0.1:"):
        assert f"not available: {service}" in result.stdout, result.stdout
    assert "unreachable: Kafka, PostgreSQL, schema registry" in result.stdout
    assert "no files yet" in result.stdout  # a lake nobody wrote to yet is not a failure
    as_json = json.loads(run_fieldstream("status", "--json", "--timeout", "2", env=env).stdout)
    assert set(as_json["problems"]) == {"group", "topics", "subjects", "tables"}
    assert as_json["unreachable"] == ["Kafka", "PostgreSQL", "schema registry"]


def test_status_changes_nothing_for_a_topic_and_group_that_do_not_exist(stack_settings, tmp_path):
    # The broker auto-creates topics that clients ask for by name: status must not be such a client.
    sc = Scenario(tmp_path)
    settings = sc.settings()
    status = collect(settings, timeout_s=5)
    assert status.problems == {}
    assert status.group is not None and status.group.partitions == [] and status.group.members == []
    assert settings.topics.readings not in describe_topics(settings)
    assert "does not exist" in render(status)
