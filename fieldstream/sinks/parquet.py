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
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from fieldstream import metrics
from fieldstream.config.parquet import ParquetSettings
from fieldstream.errors import SinkUnavailable
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.parquet_format import ParquetContent, readings_table
from fieldstream.windows import seqs

# Runs of appended offsets remembered per partition: a gap in them is a hole a seek back will fill.
APPENDED_RUNS = 64

log = logging.getLogger(__name__)


@dataclass
class _OpenFile:
    """A file being filled: where its rows start, since when, and the rows themselves."""

    start_offset: int
    opened_at: float
    content: ParquetContent


class _Finished(NamedTuple):
    """A file's bytes, complete, waiting to be written (again, if writing failed)."""

    key: tuple[str, int, date, int]
    start_offset: int
    data: pa.Buffer


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
        # (topic, partition, event date, event hour) → the file being filled
        self._buffers: dict[tuple[str, int, date, int], _OpenFile] = {}
        self._finished: list[_Finished] = []  # in the order they were finished
        # partitions whose uncommitted files were cleaned up since they became ours
        self._started: set[tuple[str, int]] = set()
        self._awaiting: set[tuple[str, int]] = set()  # newly ours, committed offset not known yet
        self._start_at: dict[tuple[str, int], int] = {}  # newly ours: their committed offset
        # (topic, partition) → runs of the offsets appended since it became ours (see windows/seqs.py):
        # a retried batch, or records read again after a seek back, are not appended twice, while
        # the records of a hole filled by that seek are
        self._appended: dict[tuple[str, int], array] = {}
        self.files_written = 0
        self._paused = False

    async def start(self) -> None:
        self.fs.create_dir(self.root, recursive=True)

    # -- writing ----------------------------------------------------------
    async def write(self, batch: Sequence[Reading]) -> None:
        buffers, appended = self._buffers, self._appended
        # The hot loop: group the batch by file (partition and event hour), taking the hour from
        # the datetime's fields (its date is formatted once per file, in _write_file).
        groups: dict[tuple[str, int, date, int], list[Reading]] = {}
        new_offsets: dict[tuple[str, int], list[int]] = {}
        for r in batch:
            tp = (r.topic, r.partition)
            offset = r.offset
            runs = appended.get(tp)
            if runs is None:
                runs = appended[tp] = array("q")
            if runs and offset <= runs[-1] and seqs.contains(runs, offset):
                continue  # already buffered or written: a retried batch, or read again after a seek
            fresh = new_offsets.get(tp)
            if fresh is None:
                fresh = new_offsets[tp] = []
            if not fresh or fresh[-1] != offset:
                fresh.append(offset)
            t = r.event_time
            key = (r.topic, r.partition, t.date(), t.hour)
            rows = groups.get(key)
            if rows is None:
                rows = groups[key] = []
            rows.append(r)
        now = time.monotonic()
        for key, rows in groups.items():
            file = buffers.get(key)
            if file is None:
                file = buffers[key] = _OpenFile(rows[0].offset, now, ParquetContent(self.settings.compression))
            file.content.add(readings_table(rows))
        for tp, offsets in new_offsets.items():
            seqs.add_all(appended[tp], sorted(offsets), APPENDED_RUNS)
        self._roll(force=False)

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
        files = [(k, b.start_offset) for k, b in self._buffers.items()]
        for (topic, partition, _, _), start in files + [(f.key, f.start_offset) for f in self._finished]:
            tp = (topic, partition)
            low[tp] = min(low.get(tp, start), start)
        return low

    def pause(self) -> None:
        """A rebalance is under way: write no file until we know which partitions stay ours."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        for key in [k for k in self._buffers if (k[0], k[1]) in partitions]:
            del self._buffers[key]
        self._finished = [f for f in self._finished if (f.key[0], f.key[1]) not in partitions]
        self._started -= partitions
        self._awaiting -= partitions
        for tp in partitions:
            self._appended.pop(tp, None)
            self._start_at.pop(tp, None)

    def expect_start(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions newly ours: write none of their files until `starts_at` gives their committed
        offset (the first record read can lie past it, when Faust skipped some: a seek back brings
        those, and the files they belong in must not survive the clean-up)."""
        self._awaiting |= partitions

    def starts_at(self, partition: tuple[str, int], offset: int | None) -> None:
        self._awaiting.discard(partition)
        if offset is not None:
            self._start_at[partition] = offset

    def _clean(self, tp: tuple[str, int]) -> bool:
        """Before the first file of a partition newly ours: remove what was never committed.
        False while its start offset is still unknown (its files wait)."""
        if tp in self._started:
            return True
        if tp in self._awaiting:
            return False
        lowest = min((b.start_offset for k, b in self._buffers.items() if (k[0], k[1]) == tp), default=None)
        starts = [o for o in (lowest, self._start_at.get(tp)) if o is not None]
        if starts:
            self._discard_uncommitted(tp[0], tp[1], min(starts))
        self._started.add(tp)
        return True

    def _roll(self, *, force: bool) -> None:
        if self._paused and not force:
            return
        now = time.monotonic()
        s = self.settings
        for key, file in list(self._buffers.items()):
            if not self._clean((key[0], key[1])):
                continue
            content = file.content
            while content.rows > s.roll_rows:  # full files first; the rest stays for the next one
                content.encode(s.roll_rows - content.encoded_rows, s.row_group_rows)  # none if already past
                rest = content.take(content.pending_rows)
                self._finish(key, file)
                content = ParquetContent(s.compression)
                content.add(rest)
                file = self._buffers[key] = _OpenFile(rest.column("kafka_offset")[0].as_py(), file.opened_at, content)
            due = (
                force
                or content.rows >= s.roll_rows
                or content.nbytes >= s.roll_bytes
                or now - file.opened_at >= s.roll_age_s
            )
            if due and content.rows:
                self._finish(key, file)
                del self._buffers[key]
            elif content.pending_rows >= s.row_group_rows:  # whole row groups; the rest waits for more
                content.encode(content.pending_rows - content.pending_rows % s.row_group_rows, s.row_group_rows)
        # However many partitions and hours are open (a backlog fills all of them at once): past the
        # bound on Arrow rows, the largest are compressed; past the bound on all, the largest written.
        contents = [f.content for f in self._buffers.values()]
        arrow = sum(c.pending_bytes for c in contents)
        for content in sorted(contents, key=lambda c: c.pending_bytes, reverse=True):
            if arrow <= s.arrow_bytes:
                break
            arrow -= content.pending_bytes
            content.encode(row_group_rows=s.row_group_rows)
        held = sum(c.nbytes for c in contents)
        for key in sorted(self._buffers, key=lambda k: self._buffers[k].content.nbytes, reverse=True):
            if held <= s.buffer_bytes:
                break
            if self._clean((key[0], key[1])):
                held -= self._buffers[key].content.nbytes
                self._finish(key, self._buffers.pop(key))
        self._write_finished()

    def _finish(self, key: tuple[str, int, date, int], file: _OpenFile) -> None:
        self._finished.append(_Finished(key, file.start_offset, file.content.finish(self.settings.row_group_rows)))

    def _write_finished(self) -> None:
        """Write the finished files, oldest first; one that fails stays, with those after it, for the
        next try."""
        try:
            while self._finished:
                self._write_file(*self._finished[0])
                del self._finished[0]
        finally:
            metrics.PARQUET_BUFFERED_BYTES.set(sum(f.content.nbytes for f in self._buffers.values())
                                               + sum(f.data.size for f in self._finished))

    def _write_file(self, key: tuple[str, int, date, int], start_offset: int, data: pa.Buffer) -> None:
        topic, partition, day, hour = key
        directory = f"{self.root}/date={day.strftime('%Y-%m-%d')}/hour={hour:02d}"
        name = file_name(topic, partition, start_offset)
        final, tmp = f"{directory}/{name}", f"{directory}/.{name}.tmp"
        try:
            self.fs.create_dir(directory, recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                out.write(data)
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
