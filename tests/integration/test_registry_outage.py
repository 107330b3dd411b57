"""The schema registry goes away for 20 s mid-stream: the worker waits for it, dead-letters nothing, loses nothing.

The worker has only seen v2 readings when the registry stops; v1 readings
then arrive framed with the (registered) v1 id, which the worker has not
cached, so it must ask the registry and keep asking until it answers.

The registry stopped is a process of this test's own (same binary, same
schema storage in the stack's PostgreSQL, so the same ids) on a free port:
stopping the shared one fails every other session's tests for 20 s, and their
`stack up` (the session fixture) restarts it mid-outage, which was seen
happening 3 s into one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from fieldstream.devices import DeviceProducer
from fieldstream.schemas import codec
from fieldstream.schemas.admin import register_bundled
from fieldstream.schemas.files import READING_V1, READING_V2, parsed
from fieldstream.stack.registry import RegistryService

from .conftest import pg_fetch
from .harness import Worker, end_offsets, free_port, metric_total, wait_for

OUTAGE_S = 20.0


@pytest.fixture
def own_registry(stack_settings, tmp_path) -> Iterator[RegistryService]:
    """A registry process only this test uses, on the stack's schema storage; stopped at the end."""
    stack = stack_settings.stack.model_copy(update={
        "data_dir": tmp_path / "stack", "cache_dir": stack_settings.stack.cache_dir.resolve(),
        "registry_port": free_port(),
    })
    service = RegistryService(stack, pg_password=stack_settings.pg.password.get_secret_value(),
                              compatibility=stack_settings.registry.compatibility)
    service.up()
    try:
        yield service
    finally:
        service.down()


def test_registry_outage_dead_letters_nothing_and_loses_nothing(scenario, workers, own_registry):
    settings = scenario.settings()
    ids = {r.file: r.schema_id for r in register_bundled(settings)}  # through the shared registry
    registry = own_registry
    for file in (READING_V1, READING_V2):  # same storage, so the same ids
        assert registry._get(f"/schemas/ids/{ids[file]}")["schema"]  # noqa: SLF001 - its HTTP helper
    now = datetime.now(UTC).replace(microsecond=0)
    prefix = scenario.name
    # Looks up the v2 id while the registry is up; later sends frame bytes by hand, needing no registry.
    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    expected: dict[tuple[str, int], tuple[int, dict[str, float]]] = {}  # (device, seq) → (version, metrics)

    def send(version: int, device: str, n: int) -> None:
        for _ in range(n):
            seq = len(expected)
            metrics = {"moisture": 10.0 + seq / 4, "temperature": 5.0 + seq % 7}
            record: dict[str, Any] = {"device_id": device, "device_type": "soil_station", "seq": seq,
                                      "metrics": metrics, "tags": None}
            at = now - timedelta(seconds=600 - seq)
            if version == 1:
                record["ts"] = at
                value = codec.frame(ids[READING_V1], codec.encode_body(record, parsed(READING_V1)))
            else:
                record.update(event_time=at, location=None, firmware="2.0", battery=0.5, signal_dbm=-70)
                value = codec.frame(ids[READING_V2], codec.encode_body(record, parsed(READING_V2)))
            producer.send_raw(device.encode(), value, device_id=device)
            expected[(device, seq)] = (version, metrics)

    def rows(pattern: str) -> int:
        return pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1", pattern)[0]["n"]

    # 1. The worker starts and sees only v2: it caches the v2 id and nothing else.
    for d in range(4):
        send(2, f"{prefix}-v2-{d}", 10)
    assert producer.flush(30) == 0
    worker = Worker(scenario, extra_env={"FIELDSTREAM_REGISTRY_URL": registry.url})
    workers.append(worker)
    wait_for(lambda: rows(f"{prefix}-%") == 40, 60, "the first 40 v2 readings in PostgreSQL", workers=workers)
    assert metric_total(worker.port, "fieldstream_registry_retries_total") == 0

    # 2. Outage: v1 readings (an id the worker must fetch) and more v2 readings arrive meanwhile.
    try:
        stopped = registry.down()
        stopped_at = time.monotonic()
        assert stopped, f"no registry process in {registry.pid_file}"
        assert not registry.answers()
        for d in range(4):
            send(1, f"{prefix}-v1-{d}", 15)
            send(2, f"{prefix}-v2-{d}", 5)
        assert producer.flush(30) == 0 and producer.failed == 0

        wait_for(lambda: metric_total(worker.port, "fieldstream_registry_retries_total") > 0, OUTAGE_S,
                 "the worker to retry the registry", workers=workers)
        while time.monotonic() - stopped_at < OUTAGE_S:
            assert not registry.answers(), "something restarted the registry during the outage"
            time.sleep(1.0)
        # Still down: the worker holds the v1 readings back rather than dead-letter them.
        assert worker.alive(), worker.log_text()[-3000:]
        assert rows(f"{prefix}-v1-%") == 0
        assert sum(end_offsets(settings, settings.topics.dlq).values()) == 0
    finally:
        registry.up()  # always: a failed assertion above must not leave it down

    # 3. The registry is back: every reading arrives, once, with its values and lineage (within
    # a minute: the registry backoff is capped at FIELDSTREAM_REGISTRY_RETRY_MAX_S, 10 s).
    wait_for(lambda: rows(f"{prefix}-%") == len(expected), 60,
             f"all {len(expected)} readings in PostgreSQL after the outage", workers=workers)
    assert sum(end_offsets(settings, settings.topics.dlq).values()) == 0
    assert metric_total(worker.port, "fieldstream_dead_letters_total") == 0
    assert metric_total(worker.port, "fieldstream_registry_retries_total") > 0
    got = pg_fetch(settings, "SELECT device_id, seq, metrics, schema_version, schema_id FROM readings "
                   "WHERE device_id LIKE $1", f"{prefix}-%")
    assert len(got) == len(expected) == 120
    for row in got:
        version, metrics = expected[(row["device_id"], row["seq"])]
        assert (row["schema_version"], json.loads(row["metrics"])) == (version, metrics)
        assert row["schema_id"] == ids[READING_V1 if version == 1 else READING_V2]
    assert worker.alive()
