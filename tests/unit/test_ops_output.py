"""`fieldstream status` rendering and `fieldstream config show`, without services."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from fieldstream.commands.config_cmd import config
from fieldstream.config.settings import _load, all_env_names
from fieldstream.ops import store_state
from fieldstream.ops.config_view import rows
from fieldstream.ops.redact import MASK, mask_url
from fieldstream.ops.status import (
    GroupMember, GroupState, LakeState, PartitionLag, Problem, Status, Subject, TableRows, collect, describe_error,
)
from fieldstream.ops.status_report import ranges, render

PLANTED = "planted-5eb63bbbe0"


def sample_status() -> Status:
    member = GroupMember("faust-1-abc", "faust-0.15.3", "10.0.0.7", [0, 1, 2, 5], 1)
    return Status(
        configured_topics=["telemetry.readings", "telemetry.dlq"],
        group=GroupState("fieldstream", "telemetry.readings", "STABLE", [member], [
            PartitionLag(0, 90, 0, 100, 10, member.name), PartitionLag(3, None, 5, 25, 20, None),
        ]),
        topics={"telemetry.readings": 12, "other.topic": 3},
        subjects=[Subject("telemetry.readings-value", [1, 2]), Subject("other-value", [1])],
        tables=[TableRows("readings", 1200, "exact"), TableRows("windows_tumbling_1m", 77, "reltuples"),
                TableRows("alerts", None, "missing")],
        lake=LakeState("/lake", 3, 4096, "/lake/x.parquet", datetime(2026, 1, 1, tzinfo=UTC)),
    )


def test_partition_ranges():
    assert ranges([5, 0, 1, 2, 7, 8]) == "0-2,5,7-8"
    assert ranges([]) == "-"


def test_render_shows_lag_owners_and_each_section():
    text = render(sample_status())
    assert "total lag 30" in text and "(unassigned)" in text and "faust-0.15.3@10.0.0.7" in text
    assert "0-2,5 (+1 of other topics)" in text
    assert "telemetry.dlq" in text and "missing" in text and "1 other topic(s)" in text
    assert "telemetry.readings-value" in text and "other-value" not in text and "1 other subject(s)" in text
    assert "~77" in text and "pg_class.reltuples" in text and "db migrate" in text
    assert "/lake/x.parquet" in text and "every service answered" in text
    assert "other-value" in render(sample_status(), show_all=True)
    s = sample_status()
    s.other_subjects = 5  # subjects whose versions collect() did not fetch
    assert "6 other subject(s)" in render(s)


def test_a_failed_section_names_its_service_and_the_rest_still_shows():
    s = sample_status()
    s.group = s.topics = None
    s.problems["group"] = s.problems["topics"] = Problem("Kafka", "k:9092", "unreachable or refused: down")
    text = render(s)
    assert text.count("not available: Kafka at k:9092") == 2
    assert "unreachable: Kafka" in text and "telemetry.readings-value" in text
    doc = json.loads(json.dumps(s.to_dict(), default=str))
    assert doc["unreachable"] == ["Kafka"] and doc["problems"]["group"]["text"].startswith("Kafka at k:9092")


def test_errors_are_one_line_without_traceback():
    try:
        raise ConnectionRefusedError(111, "Connect call failed")
    except OSError as e:
        assert describe_error(e) == "ConnectionRefusedError: [Errno 111] Connect call failed"


def test_lake_newest_file_and_unfinished_files(tmp_path, monkeypatch):
    day = tmp_path / "lake" / "date=2026-01-01" / "hour=00"
    day.mkdir(parents=True)
    (day / "t-0000-00000000000000000000.parquet").write_bytes(b"x" * 10)
    (day / ".t-0000-00000000000000000010.parquet.tmp").write_bytes(b"x")
    newest = day / "t-0001-00000000000000000000.parquet"
    newest.write_bytes(b"y" * 5)
    monkeypatch.setenv("FIELDSTREAM_PARQUET_PATH", str(tmp_path / "lake"))
    lake = store_state.lake_state(_load())
    assert (lake.files, lake.bytes, lake.newest) == (2, 15, str(newest))


def test_a_lake_path_that_is_a_file_is_a_problem_not_a_crash(tmp_path, monkeypatch):
    (tmp_path / "lake").write_text("not a directory")
    monkeypatch.setenv("FIELDSTREAM_PARQUET_PATH", str(tmp_path / "lake"))
    with pytest.raises(NotADirectoryError):
        store_state.lake_state(_load())


def test_collect_turns_every_unreachable_service_into_a_problem(monkeypatch, tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setenv("FIELDSTREAM_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{closed}")
    monkeypatch.setenv("FIELDSTREAM_REGISTRY_URL", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("FIELDSTREAM_PG_PORT", str(closed))
    (tmp_path / "lake").write_text("not a directory")
    monkeypatch.setenv("FIELDSTREAM_PARQUET_PATH", str(tmp_path / "lake"))
    status = collect(_load(), timeout_s=1)
    assert status.unreachable == ["Kafka", "Parquet lake", "PostgreSQL", "schema registry"]
    assert set(status.problems) == {"group", "topics", "subjects", "tables", "lake"}
    assert all(str(closed) in str(p) for k, p in status.problems.items() if k != "lake")


def test_mask_url():
    assert mask_url("https://u:p4ss@h:1/x") == f"https://u:{MASK}@h:1/x"
    assert mask_url("s3://b/p?secret_key=s&region=r") == f"s3://b/p?secret_key={MASK}&region=r"
    assert mask_url("memory://") == "memory://" and mask_url("/plain/path") == "/plain/path"


def test_config_show_lists_every_setting_with_secrets_masked(monkeypatch):
    for name in ("FIELDSTREAM_PG_PASSWORD", "FIELDSTREAM_KAFKA_SASL_PASSWORD",
                 "FIELDSTREAM_REGISTRY_BASIC_AUTH_PASSWORD", "FIELDSTREAM_KAFKA_SSL_KEY_PASSWORD"):
        monkeypatch.setenv(name, PLANTED)
    monkeypatch.setenv("FIELDSTREAM_PARQUET_PATH", f"s3://lake/readings?secret_key={PLANTED}")
    monkeypatch.setenv("FIELDSTREAM_TOPIC_PARTITIONS", "6")
    from fieldstream.config import settings as settings_module

    settings_module.load_settings.cache_clear()
    try:
        plain = CliRunner().invoke(config, ["show"])
        as_json = CliRunner().invoke(config, ["show", "--json"])
        changed = CliRunner().invoke(config, ["show", "--changed"])
    finally:
        settings_module.load_settings.cache_clear()
    for result in (plain, as_json, changed):
        assert result.exit_code == 0, result.output
        assert PLANTED not in result.output
    shown = {line.split("=", 1)[0] for line in plain.output.splitlines()}
    assert shown == all_env_names()
    assert f"FIELDSTREAM_PG_PASSWORD={MASK}    # set" in plain.output
    assert "FIELDSTREAM_TOPIC_PARTITIONS=6    # set" in plain.output
    assert "FIELDSTREAM_WORKER_STORE=memory://\n" in plain.output
    assert "FIELDSTREAM_REGISTRY_SSL_KEY_PASSWORD=\n" in plain.output  # unset secrets show as empty
    assert {r["variable"] for r in json.loads(as_json.output) if r["secret"]} >= {"FIELDSTREAM_PG_PASSWORD"}
    assert "FIELDSTREAM_KAFKA_BOOTSTRAP_SERVERS" not in changed.output


def test_default_rows_are_marked_default():
    by_name = {r.variable: r for r in rows(_load())}
    assert by_name["FIELDSTREAM_KAFKA_BOOTSTRAP_SERVERS"].source == "default"
    assert by_name["FIELDSTREAM_PG_PASSWORD"].value == MASK and by_name["FIELDSTREAM_PG_PASSWORD"].secret
