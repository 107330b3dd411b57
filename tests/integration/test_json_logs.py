"""FIELDSTREAM_WORKER_JSON_LOGS=true: every line a worker writes is one JSON object, ours and Faust's alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from fieldstream.devices import DeviceProducer

from .conftest import pg_fetch
from .harness import Worker, wait_for

READINGS = 20


def test_worker_logs_one_json_object_per_line(scenario, workers):
    settings = scenario.settings()
    worker = Worker(scenario, "json", extra_env={"FIELDSTREAM_WORKER_JSON_LOGS": "true"})
    workers.append(worker)

    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    start = datetime.now(UTC) - timedelta(minutes=5)
    for seq in range(READINGS):
        producer.send({"device_id": f"{scenario.name}-json", "device_type": "soil_station",
                       "event_time": start + timedelta(seconds=seq), "seq": seq,
                       "metrics": {"moisture": 30.0}, "tags": None, "location": None, "firmware": None,
                       "battery": None, "signal_dbm": None})
    assert producer.flush(30) == 0

    def stored() -> int:
        return pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id = $1",
                        f"{scenario.name}-json")[0]["n"]

    wait_for(lambda: stored() == READINGS, 60, f"{READINGS} readings in PostgreSQL", workers=[worker])
    assert worker.stop() == 0, worker.log_text()[-3000:]

    lines = [line for line in worker.log_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
    assert entries, "the worker logged nothing"
    for entry in entries:
        assert {"ts", "level", "logger", "msg"} <= entry.keys(), entry
        datetime.fromisoformat(entry["ts"])
    loggers = {e["logger"] for e in entries}
    assert any(name.startswith("fieldstream") for name in loggers), loggers  # our own lines
    assert any(name.startswith(("faust", "mode", "aiokafka")) for name in loggers), loggers  # Faust's
