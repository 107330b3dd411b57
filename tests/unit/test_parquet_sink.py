from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.compute as pc
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


async def three_partitions(tmp_path, rows: dict[int, int], make, bound: str) -> tuple[ParquetSink, dict[int, int]]:
    """A sink whose `bound` setting has room for the Arrow tables of partitions 1 and 2, not 0, and a
    batch of `rows` (partition → readings, by `make`) written to it; the tables' sizes."""
    size = {p: readings_table(make(n, partition=p)).nbytes for p, n in rows.items()}
    s = sink(tmp_path, **{bound: size[1] + size[2]})
    await s.start()
    await s.write([r for p, n in rows.items() for r in make(n, partition=p)])
    return s, size


async def test_past_the_buffer_bound_the_largest_buffers_are_written_early(tmp_path):
    rows = {0: 10, 1: 5, 2: 2}  # partition → readings, all in one event hour
    s, size = await three_partitions(tmp_path, rows, readings, "buffer_bytes")
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


class FailingOnce:
    """The sink's filesystem, whose next `open_output_stream` fails (a full disk)."""

    def __init__(self, fs) -> None:
        self.fs = fs
        self.failures = 1

    def open_output_stream(self, path):
        if self.failures:
            self.failures -= 1
            raise OSError("disk full")
        return self.fs.open_output_stream(path)

    def __getattr__(self, name):
        return getattr(self.fs, name)


async def test_a_write_retried_after_a_failed_file_goes_on_without_appending_twice(tmp_path):
    s = sink(tmp_path, roll_rows=4)
    await s.start()
    batch = readings(6)
    s.fs = FailingOnce(s.fs)
    with pytest.raises(SinkUnavailable):
        await s.write(batch)  # the file of the first 4 rows fails mid-batch
    assert s.pending_low_offsets() == {("t", 0): 0}
    await s.write(batch)  # the stream retries the same batch
    await s.flush()
    assert sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist()) == list(range(6))


async def test_rows_arriving_after_a_failed_file_go_to_the_next_file(tmp_path):
    s = sink(tmp_path)
    await s.start()
    await s.write(readings(3))
    s.fs = FailingOnce(s.fs)
    with pytest.raises(SinkUnavailable):
        await s.flush()
    await s.write(readings(3, start_offset=3))  # same partition and hour as the failed file
    assert s.pending_low_offsets() == {("t", 0): 3}  # the failed file was written on this try
    await s.flush()
    files = sorted(p.name for p in (tmp_path / "lake").rglob("*.parquet"))
    assert files == ["t-0000-00000000000000000000.parquet", "t-0000-00000000000000000003.parquet"]
    assert sorted(dataset_rows(tmp_path).column("kafka_offset").to_pylist()) == list(range(6))
    assert s.pending_low_offsets() == {}


def in_one_hour(n: int, start_offset: int = 0, partition: int = 0) -> list[Reading]:
    """`n` readings of one event hour (`readings` crosses an hour every 3,600)."""
    return [Reading(device_id=f"d{i % 3}", device_type="collar", event_time=T0 + timedelta(microseconds=i),
                    seq=start_offset + i, metrics={"activity": float(i)}, topic="t", partition=partition,
                    offset=start_offset + i) for i in range(n)]


def row_groups(path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


async def test_past_the_arrow_bound_the_largest_files_rows_are_compressed_not_written(tmp_path):
    rows = {0: 3000, 1: 1500, 2: 1000}  # partition → readings, all in one event hour
    s, size = await three_partitions(tmp_path, rows, in_one_hour, "arrow_bytes")
    assert not list((tmp_path / "lake").rglob("*.parquet"))  # nothing written: compressed in memory
    assert s.pending_low_offsets() == {("t", 0): 0, ("t", 1): 0, ("t", 2): 0}
    held = buffered_bytes()
    assert size[1] + size[2] < held < sum(size.values())  # partition 0 takes less than as Arrow
    await s.write(in_one_hour(500, start_offset=3000))  # more rows for the compressed file
    await s.flush()
    table = dataset_rows(tmp_path)
    assert table.num_rows == sum(rows.values()) + 500
    first = table.filter(pc.equal(table["kafka_partition"], 0))
    assert first.column("kafka_offset").to_pylist() == list(range(3500))  # in order, once each
    assert first.column("seq").to_pylist() == list(range(3500))
    assert row_groups(next((tmp_path / "lake").rglob("t-0000-*.parquet"))) == [3000, 500]
    assert buffered_bytes() == 0


async def test_a_file_is_cut_into_row_groups_and_split_at_roll_rows(tmp_path):
    s = sink(tmp_path, row_group_rows=1000, roll_rows=2500)
    await s.start()
    for start in range(0, 3000, 600):  # batches smaller than a row group
        await s.write(in_one_hour(600, start_offset=start))
    files = sorted((tmp_path / "lake").rglob("*.parquet"))
    assert [f.name for f in files] == ["t-0000-00000000000000000000.parquet"]  # 2,500 rows, then rolled
    assert row_groups(files[0]) == [1000, 1000, 500]  # whole row groups as rows wait, the rest at the roll
    await s.flush()
    files = sorted((tmp_path / "lake").rglob("*.parquet"))
    assert [f.name for f in files][1] == "t-0000-00000000000000002500.parquet"
    assert row_groups(files[1]) == [500]
    assert dataset_rows(tmp_path).column("kafka_offset").to_pylist() == list(range(3000))


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
