"""Backfill mappings, row conversion and validation, and the rejects file (no services)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fieldstream.config.kafka import KafkaSettings
from fieldstream.config.registry import RegistrySettings
from fieldstream.config.validation import ValidationSettings
from fieldstream.devices.backfill import Backfill, BackfillOptions
from fieldstream.devices.mapping import (
    EPOCH,
    RowConverter,
    RowRejected,
    load_mapping,
    parse_mapping,
    parse_time,
    shift_for,
    zone,
)
from fieldstream.devices.sources import count_rows, read_rows
from fieldstream.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

SOIL = """
device_id: {column: station}
device_type: soil_station
timestamp: {column: time, format: iso}
metrics: {moisture: soil_pct, temperature: temp_c}
location: {lat: lat, lon: lon}
tags: {source: archive}
"""


def converter(text: str = SOIL, source: str = "soil.csv", shift: timedelta = timedelta(0)) -> RowConverter:
    return RowConverter.build(parse_mapping(text), Path(source), ValidationSettings(), NOW, shift)


def row(**values: str) -> dict[str, str]:
    base = {"station": "st-1", "time": "2026-05-31T10:00:00Z", "soil_pct": "31.5", "temp_c": "14.25",
            "lat": "-37.74", "lon": "142.02"}
    return {**base, **values}


def reason(conv: RowConverter, values: dict[str, str]) -> str:
    with pytest.raises(RowRejected) as e:
        conv.convert(values)
    return e.value.reason


def test_the_shipped_nab_mapping_parses() -> None:
    mapping, digest = load_mapping(REPO / "examples" / "nab-mapping.yaml")
    assert mapping.device_id.from_filename and mapping.device_id.prefix == "nab-"
    assert mapping.timestamp.shift_to == "now"
    assert mapping.columns() == {"timestamp", "value"}
    assert len(digest) == 64


def test_a_nab_row_becomes_a_reading_shifted_to_now() -> None:
    mapping, _ = load_mapping(REPO / "examples" / "nab-mapping.yaml")
    source = Path("ec2_cpu_utilization_825cc2.csv")
    latest = parse_time("2014-04-24 00:04:00", mapping.timestamp.format, UTC)
    shift = shift_for(mapping, latest, NOW)
    conv = RowConverter.build(mapping, source, ValidationSettings(), NOW, shift)
    record = conv.convert({"timestamp": "2014-04-24 00:04:00", "value": "91.958"})
    assert record["device_id"] == "nab-ec2_cpu_utilization_825cc2"
    assert record["event_time"] == NOW
    assert record["metrics"] == {"value": 91.958}
    earlier = conv.convert({"timestamp": "2014-04-23 23:59:00", "value": "1"})
    assert record["event_time"] - earlier["event_time"] == timedelta(minutes=5)  # spacing kept
    # Without the shift the pipeline would dead-letter it as too old: the backfill rejects it up front.
    unshifted = RowConverter.build(mapping, source, ValidationSettings(), NOW)
    assert reason(unshifted, {"timestamp": "2014-04-24 00:04:00", "value": "1"}) == "too_old"


def test_a_good_row_becomes_a_complete_v2_record() -> None:
    record = converter().convert(row())
    assert record == {
        "device_id": "st-1",
        "device_type": "soil_station",
        "event_time": datetime(2026, 5, 31, 10, 0, tzinfo=UTC),
        "seq": (datetime(2026, 5, 31, 10, 0, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1),
        "metrics": {"moisture": 31.5, "temperature": 14.25},
        "tags": {"source": "archive"},
        "location": {"lat": -37.74, "lon": 142.02},
        "firmware": None,
        "battery": None,
        "signal_dbm": None,
    }


def test_empty_cells_mean_not_measured() -> None:
    record = converter().convert(row(temp_c="", lat=""))
    assert record["metrics"] == {"moisture": 31.5}
    assert record["location"] is None


@pytest.mark.parametrize(("values", "expected"), [
    ({"time": "yesterday"}, "bad_timestamp"),
    ({"time": ""}, "missing_timestamp"),
    ({"soil_pct": "wet"}, "bad_number"),
    ({"soil_pct": "nan"}, "not_finite"),
    ({"soil_pct": "140"}, "out_of_range"),  # moisture is a percentage
    ({"soil_pct": "", "temp_c": ""}, "no_metrics"),
    ({"station": "  "}, "missing_device_id"),
    ({"time": "2024-01-01T00:00:00Z"}, "too_old"),
    ({"time": "2026-06-01T13:00:00Z"}, "future"),
    ({"lat": "123", "lon": "5"}, "bad_location"),
])
def test_bad_rows_are_rejected_with_a_reason(values: dict[str, str], expected: str) -> None:
    assert reason(converter(), row(**values)) == expected


def test_a_row_without_a_mapped_key_is_rejected() -> None:
    values = row()
    del values["temp_c"]
    assert reason(converter(), values) == "missing_column"


def test_seq_from_a_column() -> None:
    conv = converter(SOIL + "seq: n\n")
    assert conv.convert({**row(), "n": " 42 "})["seq"] == 42
    assert reason(conv, {**row(), "n": "4.2x"}) == "bad_seq"


def test_time_formats_and_zones() -> None:
    assert parse_time("2026-01-02T03:04:05+01:00", "iso", UTC) == datetime(2026, 1, 2, 2, 4, 5, tzinfo=UTC)
    assert parse_time("1767225600123", "epoch_ms", UTC) == datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert parse_time(1767225600, "epoch_s", UTC) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("1767225600000001000", "epoch_ns", UTC) == datetime(2026, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    # Naive times are read in the mapping's zone (Berlin is UTC+1 in January).
    berlin = parse_time("02.01.2026 10:00", "%d.%m.%Y %H:%M", zone("Europe/Berlin"))
    assert berlin == datetime(2026, 1, 2, 9, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("inf", "epoch_s", UTC)


@pytest.mark.parametrize(("text", "complaint"), [
    ("timestamp: {column: t}\nmetrics: {v: v}\n", "device_id"),
    ("device_id: {column: d, value: x}\ntimestamp: {column: t}\nmetrics: {v: v}\n", "exactly one"),
    ("device_id: {column: d}\ntimestamp: {column: t, timezone: Mars/Olympus}\nmetrics: {v: v}\n", "time zone"),
    ("device_id: {column: d}\ntimestamp: {column: t, shift_to: soon}\nmetrics: {v: v}\n", "shift_to"),
    ("device_id: {column: d}\ntimestamp: {column: t}\nmetrics: {}\n", "at least one metric"),
    ("device_id: {column: d}\ntimestamp: {column: t}\nmetrics: {v: v}\ncolour: red\n", "colour"),
    ("- just\n- a list\n", "YAML mapping"),
])
def test_invalid_mappings_say_what_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        parse_mapping(text, "m.yaml")


def test_metric_list_shorthand_and_constant_device() -> None:
    m = parse_mapping("device_id: {value: pump-7}\ntimestamp: {column: t, format: epoch_s}\nmetrics: [ph, orp]\n")
    assert m.metrics == {"ph": "ph", "orp": "orp"}
    record = RowConverter.build(m, Path("x.csv"), ValidationSettings(), NOW).convert(
        {"t": "1780000000", "ph": "7.1", "orp": "250"})
    assert record["device_id"] == "pump-7" and record["device_type"] == "generic"


def test_sources_report_malformed_rows_with_line_numbers(tmp_path: Path) -> None:
    csv_path = tmp_path / "a.csv"
    csv_path.write_text("station,time,soil_pct\nst-1,2026-05-31T10:00:00Z,30\n\nst-1,2026-05-31T10:01:00Z\n"
                        'st-2,"2026-05-31T10:02:00Z",31\n')
    rows = list(read_rows(csv_path, "csv", {"station", "time", "soil_pct"}))
    assert [(r.index, r.line) for r in rows] == [(0, 2), (1, 4), (2, 5)]
    assert rows[1].values is None and rows[1].error[0] == "bad_shape"
    assert rows[2].values == {"station": "st-2", "time": "2026-05-31T10:02:00Z", "soil_pct": "31"}
    assert count_rows(csv_path, "csv") >= 3
    with pytest.raises(ConfigError, match="no column moisture"):
        list(read_rows(csv_path, "csv", {"station", "moisture"}))

    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"station": "st-1"}\n{not json\n[1, 2]\n')
    rows = list(read_rows(jsonl, "jsonl", set()))
    assert [(r.line, r.error[0] if r.error else None) for r in rows] == [(1, None), (2, "bad_json"),
                                                                         (3, "not_object")]

    table = pa.table({"station": ["st-1", "st-2"], "time": [datetime(2026, 5, 31, tzinfo=UTC)] * 2,
                      "soil_pct": [30.0, None], "extra": [1, 2]})
    pq.write_table(table, tmp_path / "a.parquet")
    rows = list(read_rows(tmp_path / "a.parquet", "parquet", {"station", "time", "soil_pct"}))
    assert [r.values["soil_pct"] for r in rows] == [30.0, None] and "extra" not in rows[0].values
    assert count_rows(tmp_path / "a.parquet", "parquet") == 2


def test_dry_run_writes_every_bad_row_with_its_line_and_reason(tmp_path: Path) -> None:
    mapping_path = tmp_path / "m.yaml"
    mapping_path.write_text(SOIL)
    data = tmp_path / "soil.csv"
    lines = ["station,time,soil_pct,temp_c,lat,lon"]
    bad = {}
    for i in range(200):
        t = (NOW - timedelta(hours=2) + timedelta(seconds=30 * i)).isoformat()
        fields = ["st-%d" % (i % 7), t, f"{20 + i % 10}", "15.5", "-37.74", "142.02"]
        if i % 37 == 5:
            fields[2], bad[len(lines) + 1] = "??", "bad_number"
        elif i % 53 == 7:
            fields[3], bad[len(lines) + 1] = "99", "out_of_range"  # soil above 70 °C
        elif i == 150:
            fields, bad[len(lines) + 1] = fields[:3], "bad_shape"
        lines.append(",".join(fields))
    data.write_text("\n".join(lines) + "\n")
    mapping, digest = load_mapping(mapping_path)
    rejects = tmp_path / "rejects.jsonl"
    job = Backfill([data], mapping, digest, BackfillOptions(topic="unused", rejects_path=rejects, dry_run=True,
                                                            progress=False),
                   kafka=KafkaSettings(), registry=RegistrySettings(), validation=ValidationSettings(), now=NOW)
    result = job.run()
    entries = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert {e["line"]: e["reason"] for e in entries} == bad
    assert all(e["row"] == e["line"] - 2 and e["file"] == str(data.resolve()) and e["message"] for e in entries)
    assert result.rows == 200 and result.rejected == len(bad) and result.valid == 200 - len(bad)
    assert result.produced == 0 and len(result.devices) == 7
    assert result.reasons == Counter(bad.values())
