"""Backfill against real Kafka and the registry: interrupted, resumed, every good row exactly once."""

from __future__ import annotations

import csv
import json
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from fieldstream.commands.backfill import backfill
from fieldstream.config import load_settings
from fieldstream.devices.backfill import Backfill, BackfillOptions
from fieldstream.devices.mapping import EPOCH, load_mapping
from fieldstream.devices.resume import ResumeState
from fieldstream.schemas import codec
from fieldstream.schemas.files import READING_V1, READING_V2, parsed

from .devices_support import fresh_topic, read_all

REPO = Path(__file__).resolve().parents[2]
NAB_DIR = REPO / "examples" / "data" / "nab"
ROWS = 100_000
DEVICES = 40

MAPPING = """
device_id: {column: device}
device_type: soil_station
timestamp: {column: time, format: iso}
metrics: {temperature: temperature, humidity: humidity}
tags: {source: integration-test}
"""

# Every 997th row is broken, cycling through these ways (the last kind breaks the CSV shape).
BAD_KINDS = ("bad_timestamp", "bad_number", "out_of_range", "missing_device_id", "not_finite", "bad_shape")


def _write_csv(path: Path, now: datetime) -> tuple[dict[tuple[str, int], tuple[float, float]], dict[int, str]]:
    """The file, the good rows by (device_id, seq) with their values, and the bad rows by line number."""
    good: dict[tuple[str, int], tuple[float, float]] = {}
    bad: dict[int, str] = {}
    start = now - timedelta(seconds=ROWS + 3600)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["device", "time", "temperature", "humidity"])
        for i in range(ROWS):
            line = i + 2
            device = f"bf-{i % DEVICES:03d}"
            t = start + timedelta(seconds=i)
            temperature, humidity = round(15 + 5 * math.sin(i / 500), 3), round(60 + (i % 20), 1)
            fields = [device, t.isoformat(), str(temperature), str(humidity)]
            if i % 997 == 500:
                kind = BAD_KINDS[(i // 997) % len(BAD_KINDS)]
                bad[line] = kind
                if kind == "bad_timestamp":
                    fields[1] = "31/02/2025 25:00"
                elif kind == "bad_number":
                    fields[2] = "warm"
                elif kind == "out_of_range":
                    fields[3] = "150"
                elif kind == "missing_device_id":
                    fields[0] = ""
                elif kind == "not_finite":
                    fields[2] = "inf"
                else:
                    fields = fields[:3]
            else:
                good[(device, (t - EPOCH) // timedelta(microseconds=1))] = (temperature, humidity)
            w.writerow(fields)
    return good, bad


def test_interrupted_backfill_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    settings = load_settings()
    now = datetime.now(UTC)
    data = tmp_path / "history.csv"
    good, bad = _write_csv(data, now)
    mapping_path = tmp_path / "mapping.yaml"
    mapping_path.write_text(MAPPING)
    mapping, digest = load_mapping(mapping_path)
    rejects, resume = tmp_path / "rejects.jsonl", tmp_path / "resume.json"

    with fresh_topic(settings, "test-backfill", schemas=(READING_V1, READING_V2)) as topic:
        def job(**options: object) -> Backfill:
            opts = BackfillOptions(topic=topic, rejects_path=rejects, resume_path=resume, progress=False,
                                   checkpoint_s=0.2, **options)  # type: ignore[arg-type]
            return Backfill([data], mapping, digest, opts, kafka=settings.kafka, registry=settings.registry,
                            validation=settings.validation, now=now)

        # 1. Ctrl-C (as an exception) in the middle of the file: the run flushes and saves where it got.
        calls = 0

        def interrupt_after_40k() -> bool:
            nonlocal calls
            calls += 1
            if calls > 40_000:
                raise KeyboardInterrupt
            return False

        with pytest.raises(KeyboardInterrupt):
            job().run(interrupt_after_40k)
        first = ResumeState.load(resume)
        assert first is not None and not first.files[0].complete
        assert first.files[0].done == 40_000  # every row read was finished: delivered or rejected

        # 2. A partial run that stops by itself after 30k more rows.
        second = job(max_rows=30_000).run()
        assert second.stopped and not second.complete
        assert second.skipped == 40_000 and second.rows == 30_000
        assert ResumeState.load(resume).files[0].done == 70_000

        # 3. The rest.
        third = job().run()
        assert third.complete and third.failed == 0
        assert third.skipped == 70_000 and third.rows == ROWS - 70_000
        assert third.produced == third.delivered

        # 4. Nothing is left: a fourth run sends nothing.
        fourth = job().run()
        assert fourth.complete and fourth.produced == 0 and fourth.skipped == ROWS

        messages = read_all(settings, topic)

    # Every good row exactly once, with its values, in file order per device.
    reader = parsed(READING_V2)
    seen: Counter[tuple[str, int]] = Counter()
    last_time: dict[str, datetime] = {}
    partition_of: dict[str, int] = {}
    for m in messages:
        _, body = codec.split_frame(m.value)
        r = codec.decode_body(body, reader, reader)
        key = (r["device_id"], r["seq"])
        seen[key] += 1
        assert m.key == r["device_id"].encode()
        assert (r["metrics"]["temperature"], r["metrics"]["humidity"]) == good[key]
        assert r["device_type"] == "soil_station" and r["tags"] == {"source": "integration-test"}
        assert partition_of.setdefault(r["device_id"], m.partition) == m.partition
        assert r["event_time"] > last_time.get(r["device_id"], EPOCH)
        last_time[r["device_id"]] = r["event_time"]
    assert len(messages) == len(good)
    assert set(seen) == set(good) and max(seen.values()) == 1

    # Every bad row in the rejects file, exactly once, with its line number and reason.
    entries = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert sorted(e["line"] for e in entries) == sorted(bad)
    assert {e["line"]: e["reason"] for e in entries} == bad
    assert len(good) + len(bad) == ROWS


def _nab_expected(path: Path) -> list[tuple[str, float]]:
    with path.open() as f:
        return [(row["timestamp"], float(row["value"])) for row in csv.DictReader(f)]


def test_nab_series_backfill_dry_run_then_real(tmp_path: Path) -> None:
    """Every NAB series shipped with the repo (a copy of the shared set), one device per series."""
    settings = load_settings()
    series = sorted(NAB_DIR.glob("*.csv"))
    assert len(series) == 3
    expected = {f"nab-{path.stem}": _nab_expected(path) for path in series}
    total = sum(len(rows) for rows in expected.values())
    runner = CliRunner()
    mapping = str(REPO / "examples" / "nab-mapping.yaml")
    rejects = tmp_path / "nab.rejects.jsonl"
    with fresh_topic(settings, "test-backfill-nab", schemas=(READING_V1, READING_V2)) as topic:
        base = [*map(str, series), "--mapping", mapping, "--topic", topic, "--rejects", str(rejects),
                "--no-progress"]
        dry = runner.invoke(backfill, [*base, "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert f"valid {total:,}, rejected 0" in dry.output
        assert "timestamps shifted by" in dry.output
        assert read_all(settings, topic) == []  # a dry run produces nothing

        started = datetime.now(UTC)
        real = runner.invoke(backfill, [*base, "--resume-file", str(tmp_path / "nab.resume.json")])
        assert real.exit_code == 0, real.output
        assert f"delivered {total:,}, failed 0" in real.output
        messages = read_all(settings, topic)

    reader = parsed(READING_V2)
    records = [codec.decode_body(codec.split_frame(m.value)[1], reader, reader) for m in messages]
    assert len(records) == total
    by_device: dict[str, list[dict]] = {}
    for r in records:
        by_device.setdefault(r["device_id"], []).append(r)
    assert set(by_device) == set(expected)
    # One shift for all series: the latest reading of any series lands on now, and every
    # series keeps its spacing and its timing relative to the others.
    shift = max(r["event_time"] for r in records) - max(datetime.fromisoformat(t).replace(tzinfo=UTC)
                                                        for rows in expected.values() for t, _ in rows)
    assert abs(max(r["event_time"] for r in records) - started) < timedelta(minutes=1)
    for device, rows in expected.items():
        got = by_device[device]  # in the order produced (one device, one partition): the file's order,
        # which is not always time order (machine_temperature repeats an hour of timestamps)
        assert [r["metrics"]["value"] for r in got] == [v for _, v in rows], device
        assert [r["event_time"] for r in got] == [datetime.fromisoformat(t).replace(tzinfo=UTC) + shift
                                                  for t, _ in rows], device
    assert rejects.read_text() == ""
