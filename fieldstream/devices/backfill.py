"""Historical backfill: files of old readings → validated readings on the readings topic.

Rows are read in file order and produced through the DeviceProducer (key =
device id, idempotent, acks=all), so each device's readings reach its
partition in file order. Bad rows go to the rejects file with their line and
reason. The resume point advances only from delivery reports (see
`fieldstream.devices.resume`): after Ctrl-C, --max-rows or an error, the
run flushes, saves it, and the next run with the same --resume-file starts
at the first row not yet finished. A crash (SIGKILL) can re-send at most
the rows delivered since the last checkpoint; they carry the same
(device_id, seq), which the pipeline's dedup and the Timescale key absorb.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from confluent_kafka.serialization import SerializationError
from tqdm import tqdm

from fieldstream.config.kafka import KafkaSettings
from fieldstream.config.registry import RegistrySettings
from fieldstream.config.validation import ValidationSettings
from fieldstream.devices.mapping import Mapping, RowConverter, RowRejected, shift_for
from fieldstream.devices.producer import DeliveryReport, DeviceProducer
from fieldstream.devices.resume import FileProgress, InFlight, RejectsFile, ResumeState, Watermark
from fieldstream.devices.sources import SourceRow, count_rows, detect_format, read_rows

ProducerFactory = Callable[[Callable[[DeliveryReport], None]], DeviceProducer]


@dataclass(frozen=True)
class BackfillOptions:
    topic: str
    rejects_path: Path
    resume_path: Path | None = None
    dry_run: bool = False
    rate: float = 0.0  # rows/s, 0 = unlimited
    max_rows: int | None = None  # stop after this many rows (resume later)
    progress: bool = True
    checkpoint_s: float = 1.0
    flush_timeout_s: float = 30.0
    auto_register: bool = False  # register the reading schema under the topic's subject if missing


@dataclass
class BackfillResult:
    rows: int = 0  # rows read by this run (not counting skipped ones)
    skipped: int = 0  # rows an earlier run finished
    valid: int = 0
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    devices: set[str] = field(default_factory=set)
    first_time: datetime | None = None
    last_time: datetime | None = None
    shift: timedelta = timedelta(0)
    first_error: str | None = None
    stopped: bool = False  # by Ctrl-C, --max-rows or a failed delivery
    complete: bool = False  # every row of every file finished


class Backfill:
    def __init__(self, paths: list[Path], mapping: Mapping, mapping_sha256: str, options: BackfillOptions, *,
                 kafka: KafkaSettings, registry: RegistrySettings, validation: ValidationSettings, now: datetime,
                 producer_factory: ProducerFactory | None = None) -> None:
        self.paths = [p.resolve() for p in paths]
        self.files = [str(p) for p in self.paths]
        self.formats = [detect_format(p, mapping.format) for p in self.paths]
        self.mapping, self.mapping_sha256, self.options = mapping, mapping_sha256, options
        self.validation, self.now = validation, now
        self.producer_factory = producer_factory or (
            lambda on_delivery: DeviceProducer(kafka, registry, options.topic, on_delivery=on_delivery,
                                               auto_register=options.auto_register))
        self.result = BackfillResult()
        self._inflight = InFlight()
        self._wm = Watermark()
        self._bases: list[int | None] = [None] * len(self.paths)  # global number of each file's first row
        self._totals: list[int | None] = [None] * len(self.paths)

    # --- set-up ----------------------------------------------------------------------------

    def _state(self) -> tuple[ResumeState, bool]:
        o = self.options
        if o.resume_path is not None and not o.dry_run:
            state = ResumeState.load(o.resume_path)
            if state is not None:
                state.check_matches(o.resume_path, self.mapping_sha256, o.topic, self.files)
                return state, True
        return ResumeState(self.mapping_sha256, o.topic, [FileProgress(f) for f in self.files]), False

    def _shift(self, state: ResumeState) -> timedelta:
        if self.mapping.timestamp.shift_to is None:
            return timedelta(0)
        if state.shift_s is not None:
            return timedelta(seconds=state.shift_s)
        # One extra pass over the timestamps: the shift depends on the latest one of all files.
        latest = None
        for path, fmt in zip(self.paths, self.formats):
            converter = self._converter(path, timedelta(0))
            for row in self._rows(path, fmt):
                if row.values is None:
                    continue
                try:
                    ts = converter.timestamp(row.values)
                except RowRejected:
                    continue
                latest = ts if latest is None or ts > latest else latest
        shift = shift_for(self.mapping, latest, self.now)
        state.shift_s = shift.total_seconds()
        return shift

    def _converter(self, path: Path, shift: timedelta) -> RowConverter:
        return RowConverter.build(self.mapping, path, self.validation, self.now, shift)

    def _rows(self, path: Path, fmt: str) -> Iterator[SourceRow]:
        return read_rows(path, fmt, self.mapping.columns(), self.mapping.csv_delimiter)

    # --- the run ---------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool] = lambda: False) -> BackfillResult:
        o = self.options
        state, resuming = self._state()
        shift = self.result.shift = self._shift(state)
        total = sum(count_rows(p, f) for p, f in zip(self.paths, self.formats)) if o.progress else None
        rejects = RejectsFile(o.rejects_path, append=resuming)
        producer = None if o.dry_run else self.producer_factory(self._on_delivery)
        bar = tqdm(total=total, unit="row", disable=not o.progress, file=sys.stderr, dynamic_ncols=True)
        started = time.monotonic()
        last_save = started
        try:
            base = 0
            first_open = True
            for i, (path, fmt) in enumerate(zip(self.paths, self.formats)):
                progress = state.files[i]
                self._bases[i] = base
                if progress.complete:
                    self._totals[i] = progress.done
                    self.result.skipped += progress.done
                    bar.update(progress.done)
                    base += progress.done
                    continue
                if first_open:  # every row before this file's resume point is finished
                    self._wm = Watermark(base + progress.done)
                    first_open = False
                converter = self._converter(path, shift)
                rows = 0
                pending_bar = 0
                for row in self._rows(path, fmt):
                    rows = row.index + 1
                    pending_bar += 1
                    if pending_bar >= 1000:
                        bar.update(pending_bar)
                        pending_bar = 0
                    if row.index < progress.done:
                        self.result.skipped += 1
                        continue
                    if self._should_stop(should_stop):
                        break
                    self.result.rows += 1
                    self._one(base + row.index, row, path, converter, producer, rejects)
                    if producer is not None:
                        self._pace(producer, started)
                        if time.monotonic() - last_save >= o.checkpoint_s:
                            self._save(state, rejects)
                            last_save = time.monotonic()
                else:
                    self._totals[i] = rows
                    base += rows
                    bar.update(pending_bar)
                    continue
                break
        finally:
            if producer is not None:
                producer.flush(o.flush_timeout_s)
            self._save(state, rejects)
            rejects.close()
            bar.close()
        self.result.complete = all(f.complete for f in state.files)
        return self.result

    def _should_stop(self, should_stop: Callable[[], bool]) -> bool:
        o = self.options
        if should_stop() or self.result.failed or (o.max_rows is not None and self.result.rows >= o.max_rows):
            self.result.stopped = True
        return self.result.stopped

    def _one(self, row_no: int, row: SourceRow, path: Path, converter: RowConverter,
             producer: DeviceProducer | None, rejects: RejectsFile) -> None:
        """Validate one row, then reject it or hand it to the producer."""
        file = str(path)
        if row.values is None:
            reason, message = row.error or ("malformed", "unreadable row")
            self._reject(row_no, row, file, reason, message, rejects)
            return
        try:
            record = converter.convert(row.values)
        except RowRejected as e:
            self._reject(row_no, row, file, e.reason, str(e), rejects)
            return
        self.result.valid += 1
        r = self.result
        r.devices.add(record["device_id"])
        t = record["event_time"]
        r.first_time = t if r.first_time is None or t < r.first_time else r.first_time
        r.last_time = t if r.last_time is None or t > r.last_time else r.last_time
        if producer is None:
            self._wm.finish(row_no)
            return
        # In flight before the send: the producer may serve this row's delivery report inside send().
        self._inflight.sent(record["device_id"], row_no)
        try:
            producer.send(record)
        except (SerializationError, ValueError, TypeError) as e:
            self._inflight.unsent(record["device_id"])
            self.result.valid -= 1
            self._reject(row_no, row, file, "unserializable", str(e), rejects)
            return
        self.result.produced += 1

    def _reject(self, row_no: int, row: SourceRow, file: str, reason: str, message: str,
                rejects: RejectsFile) -> None:
        rejects.write(file, row.index, row.line, reason, message, row.values)
        self.result.rejected += 1
        self.result.reasons[reason] += 1
        self._wm.finish(row_no)

    def _on_delivery(self, report: DeliveryReport) -> None:
        row_no = self._inflight.reported(report.device_id)
        if report.ok:
            self.result.delivered += 1
            self._wm.finish(row_no)
        else:
            self.result.failed += 1
            self.result.first_error = self.result.first_error or report.error

    def _pace(self, producer: DeviceProducer, started: float) -> None:
        if self.options.rate <= 0:
            return
        target = started + self.result.produced / self.options.rate
        while (remaining := target - time.monotonic()) > 0:
            producer.poll(remaining)

    def _save(self, state: ResumeState, rejects: RejectsFile) -> None:
        """Write the resume point: rejects first (fsynced), then the rows finished so far."""
        if self.options.resume_path is None or self.options.dry_run:
            return
        rejects.sync()
        done = self._wm.done
        for i, progress in enumerate(state.files):
            base, total = self._bases[i], self._totals[i]
            if base is None or progress.complete:
                continue
            rows = done - base if total is None else min(done - base, total)
            progress.done = max(rows, progress.done)
            progress.complete = total is not None and progress.done >= total
        state.save(self.options.resume_path)
