"""A reading produced as registry-framed Avro reaches the Faust agent, decodes, and lands in every sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pyarrow.dataset as ds

from fieldstream.devices import DeviceProducer
from fieldstream.schemas.files import READING_V1, READING_V2
from fieldstream.sinks.dlq import parse_headers

from .conftest import pg_fetch
from .harness import Worker, consume_all, wait_for


def test_v1_and_v2_readings_decode_to_the_same_values_in_every_sink(scenario, workers):
    settings = scenario.settings()
    now = datetime.now(UTC).replace(microsecond=0)
    v1 = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings, schema_file=READING_V1)
    v2 = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings, schema_file=READING_V2)
    sent = {}
    for i in range(200):
        device = f"{scenario.name}-dev-{i % 7}"
        at = now - timedelta(seconds=200 - i, microseconds=123456)
        metrics = {"moisture": 20.0 + i / 8, "temperature": 10.0 + (i % 5)}
        if i % 2:
            v1.send({"device_id": device, "device_type": "soil_station", "ts": at, "seq": i, "metrics": metrics,
                     "tags": {"site": "north"}})
        else:
            v2.send({"device_id": device, "device_type": "soil_station", "event_time": at, "seq": i,
                     "metrics": metrics, "tags": None, "location": {"lat": 51.5, "lon": -0.12}, "firmware": "2.1",
                     "battery": 0.87, "signal_dbm": -71})
        sent[(device, i)] = (at, metrics, 1 if i % 2 else 2)
    v1.send_raw(b"garbage-key", b"\x07not avro at all")
    assert v1.flush() == 0 and v2.flush() == 0
    assert v1.failed == v2.failed == 0

    workers.append(Worker(scenario))
    prefix = f"{scenario.name}-%"

    def landed() -> bool:
        return pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1", prefix)[0]["n"] == 200

    wait_for(landed, 90, "200 readings in PostgreSQL", workers=workers)
    rows = pg_fetch(settings, "SELECT * FROM readings WHERE device_id LIKE $1", prefix)
    assert len(rows) == 200
    for row in rows:
        at, metrics, version = sent[(row["device_id"], row["seq"])]
        assert row["event_time"] == at


        assert json.loads(row["metrics"]) == metrics
        assert row["schema_version"] == version
        if version == 1:  # v1 readings get the v2 defaults
            assert row["lat"] is None and row["firmware"] is None and row["battery"] is None
        else:
            assert (row["lat"], row["lon"], row["firmware"], row["signal_dbm"]) == (51.5, -0.12, "2.1", -71)
            assert abs(row["battery"] - 0.87) < 1e-6
    devices = pg_fetch(settings, "SELECT device_id, readings FROM devices WHERE device_id LIKE $1", prefix)
    assert sum(d["readings"] for d in devices) == 200 and len(devices) == 7

    def lake_rows() -> int:
        lake = scenario.tmp / "lake"
        return ds.dataset(str(lake), format="parquet", partitioning="hive").count_rows() if lake.exists() else 0

    wait_for(lambda: lake_rows() == 200, 60, "200 readings in Parquet", workers=workers)
    table = ds.dataset(str(scenario.tmp / "lake"), format="parquet", partitioning="hive").to_table()
    for rec in table.to_pylist():
        at, metrics, _ = sent[(rec["device_id"], rec["seq"])]
        assert rec["event_time"] == at and dict(rec["metrics"]) == metrics

    dead = consume_all(settings, settings.topics.dlq, expect=1)
    assert len(dead) == 1
    assert dead[0].key() == b"garbage-key" and dead[0].value() == b"\x07not avro at all"
    headers = parse_headers(dead[0].headers())
    assert headers["stage"] == "decode" and headers["reason"] == "bad_magic"
    assert headers["topic"] == settings.topics.readings and headers["offset"].isdigit()
    assert workers[0].alive()


def test_reading_batches_land_reading_by_reading_and_a_bad_one_is_dead_lettered_alone(scenario, workers):
    settings = scenario.settings()
    now = datetime.now(UTC).replace(microsecond=0)
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    sent = {}
    for d in range(5):
        device = f"{scenario.name}-gw-{d}"
        batch = []
        for seq in range(40):
            at = now - timedelta(seconds=400 - seq * 10)
            metrics = {"dissolved_oxygen": 7.0 + seq / 100, "ph": 7.1}
            if d == 3 and seq == 17:
                metrics = {"dissolved_oxygen": float("nan"), "ph": 7.1}  # poison inside a batch
            else:
                sent[(device, seq)] = (at, metrics)
            batch.append({"device_id": device, "device_type": "tank_probe", "event_time": at, "seq": seq,
                          "metrics": metrics, "tags": None, "location": None, "firmware": None, "battery": None,
                          "signal_dbm": None})
        producer.send_batch(device, batch)
    assert producer.flush() == 0 and producer.failed == 0

    workers.append(Worker(scenario))
    prefix = f"{scenario.name}-gw-%"

    def landed() -> bool:
        return pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1", prefix)[0]["n"] == 199

    wait_for(landed, 90, "199 batched readings in PostgreSQL", workers=workers)
    rows = pg_fetch(settings, "SELECT device_id, seq, event_time, metrics FROM readings WHERE device_id LIKE $1", prefix)
    assert {(r["device_id"], r["seq"]): (r["event_time"], json.loads(r["metrics"])) for r in rows} == sent

    dead = consume_all(settings, settings.topics.dlq, expect=1)
    assert len(dead) == 1
    headers = parse_headers(dead[0].headers())
    assert headers["stage"] == "validate" and headers["reason"] == "not_finite" and headers["batch.index"] == "17"
    assert dead[0].key() == f"{scenario.name}-gw-3".encode()
