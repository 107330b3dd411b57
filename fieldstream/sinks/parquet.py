"""The Parquet sink: a Hive-partitioned dataset (date=/hour=), written atomically, replay-safe.

Destination and format are separate (parquet_format builds the table; this
module decides where and when). Files are named from topic, partition and
the first offset they hold, and the rows of one Kafka partition are split by
event hour; a file is written under a hidden temporary name and renamed, so a
reader never sees half a file.

Replay safety: offsets are committed only behind what is durable here. When a
worker starts on a partition at offset S (the committed offset), any file of
that partition starting at or after S came from work that was never
committed: it is deleted before the first new file is written, so replayed
rows land once.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fieldstream.config.parquet import ParquetSettings
from fieldstream.errors import SinkUnavailable
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.parquet_format import readings_table

log = logging.getLogger(__name__)

ROW_BYTES_ESTIMATE = 200  # in-memory cost of one buffered reading, for the bytes roll


@dataclass
class _Buffer:
    start_offset: int
    opened_at: float
    rows: list[Reading] = field(default_factory=list)


def file_name(topic: str, partition: int, start_offset: int) -> str:
    return f"{topic}-{partition:04d}-{start_offset:020d}.parquet"


def _file_pattern(topic: str, partition: int) -> re.Pattern[str]:
    return re.compile(rf"^\.?{re.escape(topic)}-{partition:04d}-(\d{{20}})\.parquet(\.tmp)?$")


class ParquetSink:
    name = "parquet"

    def __init__(self, settings: ParquetSettings) -> None:
        self.settings = settings
        self.fs, self.root = pafs.FileSystem.from_uri(_as_uri(settings.path))
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        # (topic, partition, event date, event hour) → open buffer
        self._buffers: dict[tuple[str, int, date, int], _Buffer] = {}
        # partitions whose uncommitted files were cleaned up since they became ours
        self._started: set[tuple[str, int]] = set()
        # (id of a batch, rows of it buffered) while a write is incomplete: its retry must not append twice
        self._unfinished: tuple[int, int] | None = None
        self.files_written = 0
        self._paused = False

    async def start(self) -> None:
        self.fs.create_dir(self.root, recursive=True)

    # -- writing ----------------------------------------------------------
    async def write(self, batch: Sequence[Reading]) -> None:
        # The hot loop of the sink: locals only, and the event hour taken from the datetime's fields
        # (its date is formatted once per file, in _write_file, not once per reading).
        buffers, started = self._buffers, self._started
        roll_rows = self.settings.roll_rows
        # A batch retried after a failed file write goes on from where it stopped.
        first = self._unfinished[1] if self._unfinished and self._unfinished[0] == id(batch) else 0
        self._unfinished = (id(batch), first)
        for i in range(first, len(batch)):
            r = batch[i]
            topic, partition, offset = r.topic, r.partition, r.offset
            tp = (topic, partition)
            if tp not in started:
                self._discard_uncommitted(topic, partition, offset)
                started.add(tp)
            t = r.event_time
            key = (topic, partition, t.date(), t.hour)
            buf = buffers.get(key)
            if buf is None:
                buf = buffers[key] = _Buffer(start_offset=offset, opened_at=time.monotonic())
            rows = buf.rows
            rows.append(r)
            self._unfinished = (id(batch), i + 1)
            if len(rows) >= roll_rows and not self._paused:
                self._write_file(key, buf)
                del buffers[key]
        self._roll(force=False)
        self._unfinished = None

    async def tick(self) -> None:
        """Write the buffers that have aged out, even when no new data arrives."""
        self._roll(force=False)

    async def flush(self) -> None:
        """Write every buffer now (shutdown, tests)."""
        self._roll(force=True)

    async def close(self) -> None:
        await self.flush()

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        low: dict[tuple[str, int], int] = {}
        for (topic, partition, _, _), buf in self._buffers.items():
            tp = (topic, partition)
            low[tp] = min(low.get(tp, buf.start_offset), buf.start_offset)
        return low

    def pause(self) -> None:
        """A rebalance is under way: write no file until we know which partitions stay ours."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        for key in [k for k in self._buffers if (k[0], k[1]) in partitions]:
            del self._buffers[key]
        self._started -= partitions

    def _roll(self, *, force: bool) -> None:
        if self._paused and not force:
            return
        now = time.monotonic()
        s = self.settings
        for key, buf in list(self._buffers.items()):
            due = (
                force
                or len(buf.rows) >= s.roll_rows
                or len(buf.rows) * ROW_BYTES_ESTIMATE >= s.roll_bytes
                or now - buf.opened_at >= s.roll_age_s
            )
            if due and buf.rows:
                self._write_file(key, buf)
                del self._buffers[key]

    def _write_file(self, key: tuple[str, int, date, int], buf: _Buffer) -> None:
        topic, partition, day, hour = key
        directory = f"{self.root}/date={day.strftime('%Y-%m-%d')}/hour={hour:02d}"
        name = file_name(topic, partition, buf.start_offset)
        final, tmp = f"{directory}/{name}", f"{directory}/.{name}.tmp"
        try:
            self.fs.create_dir(directory, recursive=True)
            table = readings_table(buf.rows)
            pq.write_table(table, tmp, filesystem=self.fs, compression=self.settings.compression,
                           row_group_size=self.settings.row_group_rows)
            if self.local and self.settings.fsync:
                _fsync(tmp)
            self.fs.move(tmp, final)
            if self.local and self.settings.fsync:
                _fsync(directory)
        except OSError as e:
            raise SinkUnavailable(f"Parquet: cannot write {final}: {e}") from e
        self.files_written += 1

    def _discard_uncommitted(self, topic: str, partition: int, start: int) -> None:
        """Undo what was written of this partition from offset `start` on: it was never committed.

        Files starting at or after `start` are deleted. A file that starts before it
        but reaches past it (the commit point can fall inside a written file, since
        window and detector checkpoints also hold offsets back) is rewritten with
        only its rows below `start`.
        """
        pattern = _file_pattern(topic, partition)
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.root, recursive=True, allow_not_found=True))
            for info in infos:
                m = pattern.match(info.base_name)
                if not m:
                    continue
                if int(m.group(1)) >= start or m.group(2):
                    log.info("parquet: removing %s (uncommitted, from before offset %d of %s[%d])",
                             info.path, start, topic, partition)
                    self.fs.delete_file(info.path)
                elif _max_offset(self.fs, info.path) >= start:
                    self._truncate(info.path, start)
        except OSError as e:
            raise SinkUnavailable(f"Parquet: cannot clean up {self.root} for {topic}[{partition}]: {e}") from e

    def _truncate(self, path: str, start: int) -> None:
        table = pq.read_table(path, filesystem=self.fs)
        kept = table.filter(pc.less(table["kafka_offset"], start))
        log.info("parquet: rewriting %s without its %d uncommitted rows (offset %d on)",
                 path, table.num_rows - kept.num_rows, start)
        directory, name = path.rsplit("/", 1)
        tmp = f"{directory}/.{name}.tmp"
        pq.write_table(kept, tmp, filesystem=self.fs, compression=self.settings.compression,
                       row_group_size=self.settings.row_group_rows)
        if self.local and self.settings.fsync:
            _fsync(tmp)
        self.fs.move(tmp, path)


def _max_offset(fs: pafs.FileSystem, path: str) -> int:
    """The highest Kafka offset in a file, from its row-group statistics (no data read)."""
    with fs.open_input_file(path) as f:
        meta = pq.ParquetFile(f).metadata
    column = meta.schema.names.index("kafka_offset")
    return max(meta.row_group(i).column(column).statistics.max for i in range(meta.num_row_groups))


def _as_uri(path: str) -> str:
    return path if "://" in path else os.path.abspath(path)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
