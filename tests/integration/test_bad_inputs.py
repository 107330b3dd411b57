"""A corpus of bad inputs mixed with good readings through one real worker.

Every bad record must land in the dead-letter topic exactly once, with its
original key and value bytes and the context headers; a duplicate
(device_id, seq) is dropped and counted, not dead-lettered; the worker keeps
running; and good + dead-lettered + duplicates accounts for every record produced.
"""

from __future__ import annotations

import json
import random
import socket
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fieldstream.devices import DeviceProducer
from fieldstream.schemas.admin import register_bundled
from fieldstream.schemas.files import ALERT_V1, READING_V2, WINDOW_V1
from fieldstream.sinks.dlq import parse_headers

from .conftest import pg_fetch
from .framing import framed, reading
from .harness import Worker, consume_all, end_offsets, metric_total, wait_for
from .test_sink_faults import lake_counts

UNKNOWN_SCHEMA_ID = 987_654_321  # far beyond any id the registry hands out
ERROR_CLASS = {"decode": "DecodeError", "validate": "ValidationError", "sink": "RecordRejected"}


@dataclass(frozen=True)
class Bad:
    label: str
    key: bytes | None
    value: bytes | None
    stage: str
    reason: str
    schema_id: int | None  # what the schema.id header must say ("" when None)
    headers: tuple[tuple[str, bytes], ...] = ()


def bad_corpus(prefix: str, ids: dict[str, int], now: datetime, max_value_bytes: int) -> list[Bad]:
    v2 = ids[READING_V2]
    dev = f"{prefix}-dev-0"
    key = dev.encode()
    seqs = iter(range(10_000, 11_000))  # never used by a good reading

    def ok(**changes: Any) -> dict[str, Any]:
        return reading(dev, next(seqs), now - timedelta(seconds=30), **changes)

    good_frame = framed(v2, ok())
    full = framed(v2, ok())
    return [
        Bad("random bytes", key, b"\x8f" + random.Random(1234).randbytes(63), "decode", "bad_magic", None,
            headers=(("gateway", b"gw-7"),)),
        Bad("empty value", key, b"", "decode", "empty", None),
        Bad("null value (tombstone)", key, None, "decode", "empty", None),
        Bad("shorter than the 5-byte header", key, b"\x00\x00\x01", "decode", "truncated", None),
        Bad("wrong magic byte", key, b"\x01" + good_frame[1:], "decode", "bad_magic", None),
        Bad("unknown schema id", key, framed(UNKNOWN_SCHEMA_ID, ok()), "decode", "unknown_schema",
            UNKNOWN_SCHEMA_ID),
        Bad("schema id of the alert record", key, framed(ids[ALERT_V1], ok()), "decode", "schema_mismatch",
            ids[ALERT_V1]),
        Bad("schema id of the window record", key, framed(ids[WINDOW_V1], ok()), "decode", "schema_mismatch",
            ids[WINDOW_V1]),
        Bad("truncated Avro body", key, full[: len(full) - 8], "decode", "truncated", v2),
        Bad("oversized value", key, framed(v2, ok(tags={"blob": "x" * max_value_bytes})), "decode", "oversized",
            v2),
        Bad("NaN metric", key, framed(v2, ok(metrics={"moisture": float("nan")})), "validate", "not_finite", v2),
        Bad("+inf metric", key, framed(v2, ok(metrics={"temperature": float("inf")})), "validate", "not_finite",
            v2),
        Bad("-inf battery", key, framed(v2, ok(battery=float("-inf"))), "validate", "not_finite", v2),
        Bad("out-of-range metric", key, framed(v2, ok(metrics={"moisture": 150.0})), "validate", "out_of_range",
            v2),
        Bad("location off the Earth", key, framed(v2, ok(location={"lat": 123.0, "lon": 10.0})), "validate",
            "bad_location", v2),
        Bad("timestamp in 1970", key, framed(v2, ok(event_time=datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))),
            "validate", "too_old", v2),
        Bad("timestamp in year 3000", key, framed(v2, ok(event_time=datetime(3000, 1, 1, tzinfo=UTC))),
            "validate", "future", v2),
        Bad("null key", None, framed(v2, ok()), "validate", "missing_key", v2),
        Bad("key differs from device_id", f"{prefix}-someone-else".encode(), framed(v2, ok()), "validate",
            "key_mismatch", v2),
        # Valid to us, refused by PostgreSQL (text cannot hold NUL): dead-lettered by the sink, kept from Parquet.
        Bad("NUL character in firmware", key, framed(v2, ok(firmware="fw-1.2\x00evil")), "sink", "sink_rejected",
            v2),
    ]


def test_each_bad_input_is_dead_lettered_with_context_and_the_worker_carries_on(scenario, workers):
    settings = scenario.settings()
    ids = {r.file: r.schema_id for r in register_bundled(settings)}
    now = datetime.now(UTC).replace(microsecond=0)
    prefix = scenario.name
    corpus = bad_corpus(prefix, ids, now, settings.validation.max_value_bytes)
    assert len({(b.key, b.value) for b in corpus}) == len(corpus), "bad inputs must be told apart by their bytes"

    producer = DeviceProducer(settings.kafka, settings.registry, settings.topics.readings)
    assert producer.schema_id == ids[READING_V2]
    devices = [f"{prefix}-dev-{d}" for d in range(4)]
    good: dict[tuple[str, int], bytes] = {}

    def send_good(n: int) -> None:
        for _ in range(n):
            i = len(good)
            device = devices[i % len(devices)]
            value = framed(producer.schema_id, reading(device, i, now - timedelta(seconds=300 - i),
                                                       metrics={"moisture": 20.0 + i, "temperature": 11.0}))
            producer.send_raw(device.encode(), value, device_id=device)
            good[(device, i)] = value

    for bad in corpus:  # interleaved, so a bad record shares batches and partitions with good ones
        send_good(3)
        producer.send_raw(bad.key, bad.value, device_id=bad.label, headers=list(bad.headers) or None)
    dup_device, dup_seq = devices[1], 5
    producer.send_raw(dup_device.encode(), good[(dup_device, dup_seq)], device_id=dup_device)  # a resend
    send_good(10)  # after every bad one: proves the worker still processes
    assert producer.flush(30) == 0 and producer.failed == 0
    produced = len(good) + len(corpus) + 1
    assert producer.delivered == produced

    worker = Worker(scenario)
    workers.append(worker)

    def good_rows() -> int:
        return pg_fetch(settings, "SELECT count(*) AS n FROM readings WHERE device_id LIKE $1", f"{prefix}-%")[0]["n"]

    wait_for(lambda: good_rows() == len(good), 60, f"{len(good)} good readings in PostgreSQL", workers=workers)

    def counted() -> bool:
        try:
            return (metric_total(worker.port, "fieldstream_readings_in_total") == produced
                    and metric_total(worker.port, "fieldstream_dead_letters_total") == len(corpus))
        except OSError:
            return False

    wait_for(counted, 30, "every record counted in /metrics", workers=workers)

    # Accounting: every record produced is a good row, a dead letter or a counted duplicate.
    duplicates = metric_total(worker.port, "fieldstream_duplicates_total")
    dead_in_topic = sum(end_offsets(settings, settings.topics.dlq).values())
    rows = pg_fetch(settings, "SELECT device_id, seq FROM readings WHERE device_id LIKE $1", f"{prefix}-%")
    assert duplicates == 1
    assert dead_in_topic == len(corpus)
    assert sorted((r["device_id"], r["seq"]) for r in rows) == sorted(good)  # none twice, no bad one
    assert len(rows) + dead_in_topic + duplicates == produced
    for stage in ("decode", "validate", "sink"):
        assert metric_total(worker.port, "fieldstream_dead_letters_total", stage=stage) == sum(
            1 for b in corpus if b.stage == stage)

    # Each bad record: once in the DLQ, bytes untouched, headers pointing back at the original.
    originals = {(m.key(), m.value()): m for m in consume_all(settings, settings.topics.readings, expect=produced)}
    dead = consume_all(settings, settings.topics.dlq, expect=len(corpus))
    assert len(dead) == len(corpus)
    problems: list[str] = []
    for bad in corpus:
        found = [m for m in dead if (m.key(), m.value()) == (bad.key, bad.value)]
        if len(found) != 1:
            problems.append(f"{bad.label}: {len(found)} dead letters with its exact key and value bytes")
            continue
        msg, original = found[0], originals[(bad.key, bad.value)]
        headers = parse_headers(msg.headers())
        expected = {
            "topic": settings.topics.readings,
            "partition": str(original.partition()),
            "offset": str(original.offset()),
            "timestamp": str(original.timestamp()[1]),
            "stage": bad.stage,
            "reason": bad.reason,
            "error.class": ERROR_CLASS[bad.stage],
            "schema.id": "" if bad.schema_id is None else str(bad.schema_id),
            "worker": f"{settings.worker.app_id}/{socket.gethostname()}/{worker.proc.pid}",
        }
        wrong = {k: (headers.get(k), v) for k, v in expected.items() if headers.get(k) != v}
        if wrong:
            problems.append(f"{bad.label}: headers (got, expected) {wrong}")
        if not headers.get("error.message"):
            problems.append(f"{bad.label}: empty error.message")
        own = [(k, v) for k, v in msg.headers() or [] if not k.startswith("fieldstream.")]
        if own != list(bad.headers):
            problems.append(f"{bad.label}: the record's own headers {own} != {list(bad.headers)}")
    assert not problems, "\n".join(problems)

    assert worker.alive(), worker.log_text()[-3000:]
    assert metric_total(worker.port, "fieldstream_readings_out_total") == len(good)

    # Per-device data quality: valid, invalid by reason, duplicates.
    quality = {r["device_id"]: r for r in pg_fetch(
        settings, "SELECT device_id, valid, invalid, duplicates, invalid_by_reason::text AS by_reason "
                  "FROM device_quality WHERE device_id LIKE $1", f"{prefix}-%")}
    invalid = Counter(b.reason for b in corpus if b.stage != "decode")  # every one is a reading of dev-0
    assert set(quality) == set(devices)
    for device in devices:
        row = quality[device]
        assert row["valid"] == sum(1 for d, _ in good if d == device)
        assert row["duplicates"] == (1 if device == dup_device else 0)
        assert row["invalid"] == (sum(invalid.values()) if device == devices[0] else 0)
        assert json.loads(row["by_reason"]) == (dict(invalid) if device == devices[0] else {})

    # Parquet holds the good readings only: the one PostgreSQL refused is not written there either.
    assert worker.stop() == 0, worker.log_text()[-3000:]
    assert lake_counts(scenario.tmp / "lake") == (len(good), len(good))
