from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from fieldstream.config.parquet import ParquetSettings
from fieldstream.errors import SinkUnavailable
from fieldstream.schemas.reading import Location, Reading
from fieldstream.sinks.parquet import ParquetSink
from fieldstream.sinks.parquet_format import readings_table

T0 = datetime(2026, 3, 4, 10, 59, 50, tzinfo=UTC)


def readings(n: int, start_offset: int = 0, partition: int = 0) -> list[Reading]:
    out = []
    for i in range(n):
        out.append(Reading(device_id=f"d{i % 3}", device_type="collar", event_time=T0 + timedelta(seconds=i),
                           seq=start_offset + i, metrics={"activity": float(i)},
                           location=Location(1.0, 2.0) if i % 2 else None, topic="t", partition=partition,
                           offset=start_offset + i))
    return out


def sink(tmp_path, **over) -> ParquetSink:
    return ParquetSink(ParquetSettings(path=str(tmp_path / "lake"), **over))


def buffered_bytes() -> float | None:
    return REGISTRY.get_sample_value("fieldstream_parquet_buffered_bytes")


def dataset_rows(tmp_path) -> pa.Table:
    return ds.dataset(str(tmp_path / "lake"), format="parquet", partitioning="hive").to_table()


async def test_rows_land_hive_partitioned_by_event_hour(tmp_path):
    s = sink(tmp_path)
    await s.start()
    await s.write(readings(20))  # crosses 11:00
    await s.flush()
    table = dataset_rows(tmp_path)
    assert table.num_rows == 20
    hours = sorted(set(table.column("hour").to_pylist()))
    assert hours == [10, 11]
    files = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    assert files == ["t-0000-00000000000000000000.parquet", "t-0000-00000000000000000010.parquet"]
    assert not list((tmp_path / "lake").rglob(".*.tmp"))
    meta = pq.ParquetFile(next((tmp_path / "lake").rglob("*.parquet"))).metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


async def test_pending_offsets_hold_until_the_file_is_written(tmp_path):
    s = sink(tmp_path, roll_rows=1000)
    await s.start()
    await s.write(readings(5, start_offset=100))
    assert s.pending_low_offsets() == {("t", 0): 100}
    await s.flush()
    assert s.pending_low_offsets() == {}


async def test_rolls_by_rows(tmp_path):
    s = sink(tmp_path, roll_rows=4)
    await s.start()
    await s.write(readings(8))
    assert len(list((tmp_path / "lake").rglob("*.parquet"))) == 2  # 0..7 are in hour 10, rolled at 4 rows


async def test_past_the_buffer_bound_the_largest_buffers_are_written_early(tmp_path):
    rows = {0: 10, 1: 5, 2: 2}  # partition → readings, all in one event hour
    size = {p: readings_table(readings(n, partition=p)).nbytes for p, n in rows.items()}
    s = sink(tmp_path, buffer_bytes=size[1] + size[2])  # room for all but the largest
    await s.start()
    await s.write([r for p, n in rows.items() for r in readings(n, partition=p)])
    files = [p.name for p in (tmp_path / "lake").rglob("*.parquet")]
    assert files == ["t-0000-00000000000000000000.parquet"]
    assert s.pending_low_offsets() == {("t", 1): 0, ("t", 2): 0}
    assert buffered_bytes() == size[1] + size[2]
    await s.flush()
    assert dataset_rows(tmp_path).num_rows == sum(rows.values())
    assert buffered_bytes() == 0


async def test_under_the_buffer_bound_nothing_is_written_early(tmp_path):
    s = sink(tmp_path, buffer_bytes=readings_table(readings(10)).nbytes)
    await s.start()
    await s.write(readings(10))
    assert not list((tmp_path / "lake").rglob("*.parquet"))
    assert s.pending_low_offsets() == {("t", 0): 0}


async def test_a_write_retried_after_a_failed_file_goes_on_without_appending_twice(tmp_path, monkeypatch):
    s = sink(tmp_path, roll_rows=4)
    await s.start()
    batch = readings(6)
    real_write_table = pq.write_table
    failures = iter([OSError("disk full")])

    def flaky_write_table(*args, **kwargs):
        failure = next(failures, None)
        if failure:
            raise failure
        return real_write_table(*args, **kwargs)

    monkeypatch.setattr(pq, "write_table", flaky_write_table)
    with pytest.raises(SinkUnavailable):
        await s.write(batch)  # the file of the first 4 rows fails mid-batch
    await s.write(batch)  # the stream retries the same batch
    await s.flush()
    assert sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist()) == list(range(6))


async def test_consecutive_batches_are_all_appended(tmp_path):
    s = sink(tmp_path)
    await s.start()
    await s.write(readings(3))
    await s.write(readings(3, start_offset=3))
    await s.flush()
    assert dataset_rows(tmp_path).num_rows == 6


async def test_replay_after_a_crash_rewrites_instead_of_duplicating(tmp_path):
    first = sink(tmp_path, roll_rows=3)
    await first.start()
    await first.write(readings(9))  # three files written, offsets never committed (crash)
    replay = sink(tmp_path, roll_rows=4)  # the new worker rolls at other points
    await replay.start()
    await replay.write(readings(9))
    await replay.flush()
    table = dataset_rows(tmp_path)
    assert table.num_rows == 9
    assert sorted(table.column("kafka_offset").to_pylist()) == list(range(9))


async def test_replay_from_a_committed_offset_keeps_earlier_files(tmp_path):
    first = sink(tmp_path, roll_rows=5)
    await first.start()
    await first.write(readings(5))  # offsets 0..4 durable and committed
    replay = sink(tmp_path)
    await replay.start()
    await replay.write(readings(5, start_offset=5))
    await replay.flush()
    assert sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist()) == list(range(10))


async def test_old_and_new_schema_files_read_as_one_dataset(tmp_path):
    lake = tmp_path / "lake" / "date=2026-03-04" / "hour=09"
    lake.mkdir(parents=True)
    # A file from before `firmware` existed.
    old = pa.table({"device_id": ["old"], "seq": pa.array([1], pa.int64())})
    pq.write_table(old, lake / "t-0001-00000000000000000000.parquet")
    s = sink(tmp_path)
    await s.start()
    await s.write(readings(3))
    await s.flush()
    files = [str(p) for p in (tmp_path / "lake").rglob("*.parquet")]
    schema = pa.unify_schemas([pq.read_schema(f) for f in files])
    table = ds.dataset(str(tmp_path / "lake"), schema=schema, format="parquet", partitioning="hive").to_table()
    assert table.num_rows == 4
    old_row = table.filter(ds.field("device_id") == "old")
    assert old_row.column("firmware").to_pylist() == [None]


async def test_write_error_raises_sink_unavailable_keeps_rows_and_recovers(tmp_path):
    s = sink(tmp_path)
    await s.start()
    await s.write(readings(3))
    # A regular file where the partition directory must go: fails even for root (like a full disk would).
    blocker = tmp_path / "lake" / "date=2026-03-04"
    blocker.write_text("not a directory")
    with pytest.raises(SinkUnavailable):
        await s.flush()
    assert s.pending_low_offsets() == {("t", 0): 0}
    blocker.unlink()  # the operator fixes it
    await s.flush()
    assert dataset_rows(tmp_path).num_rows == 3
    assert s.pending_low_offsets() == {}


async def test_replay_from_inside_a_written_file_keeps_only_its_committed_rows(tmp_path):
    first = sink(tmp_path, roll_rows=8)
    await first.start()
    await first.write(readings(8))  # offsets 0..7 in one file; the commit point stopped at 5
    replay = sink(tmp_path)
    await replay.start()
    await replay.write(readings(5, start_offset=5))  # the next owner starts at the committed offset
    await replay.flush()
    offsets = sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist())
    assert offsets == list(range(10))


async def test_records_read_again_after_a_seek_back_fill_the_hole_without_doubling(tmp_path):
    s = sink(tmp_path)
    await s.start()
    batch = readings(12)
    await s.write(batch[:3])
    await s.write(batch[8:])  # offsets 3..7 never reached the stream
    await s.write(batch[3:])  # the seek back reads 3..11: 3..7 are new, 8..11 were buffered
    await s.flush()
    assert sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist()) == list(range(12))


async def test_a_new_owner_cleans_up_from_the_committed_offset_not_its_first_record(tmp_path):
    before = sink(tmp_path)
    await before.start()
    await before.write(readings(30))  # the previous owner wrote 0..29; only 0..19 were committed
    await before.flush()
    after = sink(tmp_path)
    await after.start()
    after.expect_start({("t", 0)})
    batch = readings(30)
    await after.write(batch[24:])  # Faust skipped 20..23: the first record read is 24
    await after.flush()  # its files wait for the start offset
    after.starts_at(("t", 0), 20)
    await after.write(batch[20:])  # the seek back brings 20..23 (24..29 are already buffered)
    await after.flush()
    assert sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist()) == list(range(30))
