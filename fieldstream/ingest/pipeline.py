"""One batch of raw records through decode, validation and every sink.

No Faust here: the stream wiring hands over RawRecords and awaits `process`,
which returns only when the batch is durable in every synchronous sink and
the dead letters are acknowledged. Transient failures are retried with
backoff for as long as they last (the stream waits: that is the back-pressure);
permanent ones become dead letters.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fieldstream import metrics
from fieldstream.errors import DecodeError, RecordRejected, SinkUnavailable, ValidationError
from fieldstream.ingest.decode import Decoder, framed_schema_id
from fieldstream.ingest.records import DeadLetter, RawRecord
from fieldstream.ingest.validate import RecentSeqs, Validator
from fieldstream.schemas.reading import Reading
from fieldstream.sinks.base import BufferingSink, Sink
from fieldstream.sinks.dlq import DeadLetterSink
from fieldstream.sinks.quality_pg import DUPLICATE, QualityEvent, QualityTableSink
from fieldstream.turns import in_turns

log = logging.getLogger(__name__)

# Records decoded between turns of the event loop: a record may hold 20 readings (a ReadingBatch).
RECORDS_PER_TURN = 100

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class BatchOutcome:
    readings: list[Reading] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    duplicates: int = 0
    decoded: int = 0  # readings found in the records (a ReadingBatch holds several)
    quality: list[QualityEvent] = field(default_factory=list)  # per-device invalid and duplicate readings


@dataclass
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0

    def delays(self):  # noqa: ANN201 - an infinite generator of seconds
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * 2, self.max_s)


class Pipeline:
    def __init__(
        self,
        decoder: Decoder,
        validator: Validator,
        dedup: RecentSeqs,
        sinks: Sequence[Sink],
        dlq: DeadLetterSink,
        clock: Clock = utc_now,
        backoff: Backoff | None = None,
        quality: QualityTableSink | None = None,
    ) -> None:
        self.decoder = decoder
        self.validator = validator
        self.dedup = dedup
        self.sinks = list(sinks)
        self.dlq = dlq
        self.quality = quality
        self.clock = clock
        self.backoff = backoff or Backoff()
        self.started = False
        self._connected: dict[str, bool] = {}

    @property
    def buffering_sinks(self) -> list[BufferingSink]:
        return [s for s in self.sinks if isinstance(s, BufferingSink)]

    @property
    def connected(self) -> bool:
        """True unless the last attempt to reach some sink failed."""
        return all(self._connected.values())

    @property
    def _all_sinks(self) -> list:
        return [*self.sinks, self.dlq, *([self.quality] if self.quality else [])]

    async def start(self) -> None:
        for sink in self._all_sinks:
            await self.retry(sink.name, sink.start)
        self.started = True

    async def close(self) -> None:
        for sink in self._all_sinks:
            try:
                await sink.close()
            except Exception:  # noqa: BLE001 - closing must reach every sink
                log.exception("closing sink %s failed", sink.name)

    async def triage(self, records: Sequence[RawRecord]) -> BatchOutcome:
        """Decode and validate; nothing is written yet."""
        out = BatchOutcome()
        now = self.clock()
        async for rec in in_turns(records, RECORDS_PER_TURN):
            try:
                readings = await self.decoder.decode(rec)
            except DecodeError as e:
                metrics.DECODE_FAILURES.labels(e.reason).inc()
                out.dead.append(DeadLetter(rec, "decode", e.reason, type(e).__name__, str(e),
                                           framed_schema_id(rec.value)))
                continue
            for reading in readings:
                try:
                    self.validator.check(reading, rec.key, now)
                except ValidationError as e:
                    metrics.VALIDATION_FAILURES.labels(e.reason).inc()
                    out.dead.append(DeadLetter(rec, "validate", e.reason, type(e).__name__, str(e),
                                               reading.schema_id, reading.index if len(readings) > 1 else None))
                    out.quality.append(quality_event(reading, e.reason))
                    continue
                if self.dedup.is_duplicate(reading.device_id, reading.seq, (rec.topic, rec.partition)):
                    out.duplicates += 1
                    out.quality.append(quality_event(reading, DUPLICATE))
                    continue
                out.readings.append(reading)
            out.decoded += len(readings)
        metrics.READINGS_IN.inc(len(records))
        metrics.DUPLICATES.inc(out.duplicates)
        return out

    async def process(self, records: Sequence[RawRecord]) -> BatchOutcome:
        out = await self.triage(records)
        await self.deliver(out)
        return out

    async def deliver(self, out: BatchOutcome) -> None:
        """Write valid readings to every sink, then the dead letters; retry while anything is down."""
        for sink in self.sinks:
            await self._write(sink, out)
        if out.quality and self.quality is not None:
            await self.retry(self.quality.name, self.quality.write, out.quality)
        if out.dead:
            await self.retry(self.dlq.name, self.dlq.write, out.dead)
            await self.retry(self.dlq.name, self.dlq.flush)
            for dl in out.dead:
                metrics.DEAD_LETTERS.labels(dl.stage).inc()
        metrics.READINGS_OUT.inc(len(out.readings))
        if out.readings:
            now = time.time()
            for r in out.readings[:: max(1, len(out.readings) // 64)]:  # a sample keeps this cheap
                metrics.END_TO_END_SECONDS.observe(max(0.0, now - r.event_time.timestamp()))

    async def _write(self, sink: Sink, out: BatchOutcome) -> None:
        batch = out.readings
        while True:
            started = time.perf_counter()
            try:
                await self.retry(sink.name, sink.write, batch)
                break
            except RecordRejected as e:
                refused = {id(r) for r, _ in e.rejected}
                for reading, why in e.rejected:
                    assert isinstance(reading, Reading)
                    out.dead.append(DeadLetter(_raw_of(reading), "sink", e.reason, "RecordRejected",
                                               f"{sink.name}: {why}", reading.schema_id, reading.index))
                    out.quality.append(quality_event(reading, e.reason))
                out.readings = [r for r in out.readings if id(r) not in refused]
                break
        metrics.SINK_BATCH_SIZE.labels(sink.name).observe(len(batch))
        metrics.SINK_FLUSH_SECONDS.labels(sink.name).observe(time.perf_counter() - started)

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions taken from this worker: their readings are the next owner's (and ours again if
        they come back, replayed from the committed offset), so nothing of them counts as seen."""
        self.dedup.forget_partitions(partitions)
        for sink in self.buffering_sinks:
            sink.forget_partitions(partitions)

    def expect_start(self, partitions: set[tuple[str, int]]) -> None:
        for sink in self.buffering_sinks:
            sink.expect_start(partitions)

    def starts_at(self, partition: tuple[str, int], offset: int | None) -> None:
        for sink in self.buffering_sinks:
            sink.starts_at(partition, offset)

    async def tick(self) -> None:
        for sink in self.buffering_sinks:
            await self.retry(sink.name, sink.tick)

    async def retry(self, name: str, fn, *args):  # noqa: ANN001, ANN202
        for delay in self.backoff.delays():
            try:
                result = await fn(*args)
                self._set_connected(name, True)
                return result
            except SinkUnavailable as e:
                self._set_connected(name, False)
                metrics.SINK_ERRORS.labels(name, "unavailable").inc()
                metrics.SINK_RETRIES.labels(name).inc()
                log.warning("sink %s unavailable, consumption paused, retrying in %.1fs: %s", name, delay, e)
                await asyncio.sleep(delay)


    def _set_connected(self, name: str, up: bool) -> None:
        self._connected[name] = up
        metrics.SINK_CONNECTED.labels(name).set(1 if up else 0)


def quality_event(reading: Reading, reason: str) -> QualityEvent:
    return QualityEvent(reading.device_id, reading.device_type, reason, reading.event_time, reading.topic,
                        reading.partition, reading.offset, reading.index)


def _raw_of(reading: Reading) -> RawRecord:
    raw = reading.raw
    if isinstance(raw, RawRecord):
        return raw
    return RawRecord(reading.topic, reading.partition, reading.offset, None, reading.device_id.encode(), None, [])
