"""The ingest agent: batches of raw records from the readings topic into the pipeline and its stages."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import faust
from aiokafka.errors import IllegalStateError
from faust.types import TP, EventT
from mode import Service

from fieldstream import metrics
from fieldstream.checkpoint import lowest
from fieldstream.config import Settings
from fieldstream.ingest.decode import Decoder
from fieldstream.ingest.pipeline import Pipeline
from fieldstream.ingest.records import RawRecord
from fieldstream.ingest.validate import RecentSeqs, Validator
from fieldstream.schemas.files import subject_for
from fieldstream.schemas.reading import Reading
from fieldstream.schemas.registry import WriterSchemaCache
from fieldstream.sinks.dlq import DeadLetterSink
from fieldstream.sinks.parquet import ParquetSink
from fieldstream.sinks.quality_pg import QualityTableSink
from fieldstream.sinks.timescale import TimescaleSink
from fieldstream.streams.acks import REWIND_PATIENCE_S, AckGate, committed_starts
from fieldstream.streams.ownership import Ownership
from fieldstream.streams.flow import FlowTracker
from fieldstream.streams.arrow_memory import use_arrow_pool
from fieldstream.streams.gc_tuning import tune_gc

log = logging.getLogger(__name__)

# On stop, how long to wait for the batch in flight before closing the sinks under it.
STOP_WAIT_S = 20.0
# How long to wait for the committed offsets of newly assigned partitions.
POSITION_TIMEOUT_S = 30.0


class Stage(Protocol):
    """Work on valid, durable readings: windows, detectors.

    A stage also reports the lowest offset per partition whose effects it has
    not yet checkpointed, and forgets partitions taken from this worker.
    """

    name: str
    busy: asyncio.Lock  # held while the stage works; a rebalance waits for it
    started: asyncio.Event  # set when start() has started every output

    async def start(self) -> None: ...

    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None: ...

    def pending_low_offsets(self) -> dict[tuple[str, int], int]: ...

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    async def close(self) -> None: ...


def worker_identity(settings: Settings) -> str:
    """Which worker process did it (the app id alone is the whole consumer group): for dead letters."""
    return f"{settings.worker.app_id}/{socket.gethostname()}/{os.getpid()}"


def build_pipeline(settings: Settings) -> Pipeline:
    schemas = WriterSchemaCache(settings.registry, subject_for(settings.topics.readings))
    return Pipeline(
        decoder=Decoder(schemas, settings.validation.max_value_bytes),
        validator=Validator(settings.validation),
        dedup=RecentSeqs(settings.validation.dedup_window),
        sinks=[TimescaleSink(settings.pg), ParquetSink(settings.parquet)],
        dlq=DeadLetterSink(settings.kafka, settings.topics.dlq, worker=worker_identity(settings)),
        quality=QualityTableSink(settings.pg),
    )


def raw_record(event: EventT) -> RawRecord:
    m = event.message
    return RawRecord(m.topic, m.partition, m.offset, m.timestamp and int(m.timestamp * 1000), m.key, m.value,
                     list(m.headers or []))


def faust_holds_records_back(app: faust.App) -> bool:
    """Faust hands no fetched record to the stream while its producer buffer is over its
    limit, nor during a commit, which first flushes that buffer whole (seen taking 76 s when
    the tables' changelogs went through it). Records that look lost then are only late."""
    buffer = app.producer.buffer
    committing = getattr(app.consumer, "_commit_fut", None) is not None  # Faust's "a commit is under way"
    return committing or buffer.size > buffer.max_messages


def attach_ingest(app: faust.App, settings: Settings, pipeline: Pipeline, stages: list[Stage],
                  flow: FlowTracker) -> None:
    gate = AckGate(app, settings.worker.batch_max)
    readings = app.topic(settings.topics.readings, partitions=settings.topics.partitions)
    # Held while a batch is processed. Faust stops this service without waiting for the
    # agent (stream_wait_empty=False), so closing waits here for the batch in flight;
    # otherwise its stages would publish through closed producers and the worker would
    # exit 70 on a plain SIGTERM.
    in_flight = asyncio.Lock()
    ownership = Ownership([in_flight, *(stage.busy for stage in stages)])

    def pending() -> dict[tuple[str, int], int]:
        return lowest(*(part.pending_low_offsets() for part in [*pipeline.buffering_sinks, *stages]))

    @app.service
    class PipelineService(Service):
        """Starts the sinks and stages with the worker (retrying until they answer); closes them on stop."""

        async def on_start(self) -> None:
            await pipeline.start()
            for stage in stages:
                await stage.start()
            log.info("pipeline: sinks ready (%s); stages: %s", ", ".join(s.name for s in pipeline.sinks),
                     ", ".join(s.name for s in stages) or "none")

        async def on_stop(self) -> None:
            flow.stopping = True
            ownership.unblock()  # a rebalance under way no longer matters: we are leaving
            try:
                await asyncio.wait_for(in_flight.acquire(), STOP_WAIT_S)
            except TimeoutError:
                log.warning("pipeline: a batch is still in flight after %.0fs; closing the sinks anyway "
                            "(it is not committed and will be read again)", STOP_WAIT_S)
            for stage in stages:
                await stage.close()
            await pipeline.close()
            gate.release(pending(), final=True)  # what the last flushes made durable: Faust's final commit

    @app.agent(readings, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        tune_gc(settings.worker.gc_young_threshold, settings.worker.gc_full_every)
        use_arrow_pool(settings.worker.arrow_memory_pool)
        async for events in stream.take_events(settings.worker.batch_max, settings.worker.batch_within_s):
            # Pinned at once: take_events acks a batch even when its processing is cancelled
            # (shutdown) or fails; a pinned message is acked only by the gate's release.
            taken_in = ownership.generation
            gate.pin(events)
            async with in_flight:
                if flow.stopping:
                    continue  # the sinks are closing: never acked, read again by the next owner
                # Only partitions ours since the batch was taken and still ours: the rest (a
                # rebalance may have run while we waited) are the new owner's, never acked here.
                events, _ = ownership.split(events, taken_in)
                events = gate.hold(events)  # without records fetched before a seek back: they come again
                for tp, offset in gate.holes.items():
                    await seek_back(tp, offset)
                if not events:
                    continue
                started = time.monotonic()
                try:
                    out = await pipeline.process([raw_record(e) for e in events])
                    now = datetime.now(UTC)
                    for stage in stages:
                        await stage.started.wait()
                        await stage.on_batch(out.readings, now)
                except asyncio.CancelledError:
                    gate.drop(events)
                    raise
                except Exception:  # noqa: BLE001 - a bug must stop the worker before anything is committed
                    log.critical("ingest: unexpected error; stopping the worker without committing", exc_info=True)
                    os._exit(70)
                gate.release(pending())
                gate.processed()
                flow.batch_done(len(events), started)
                # Let the batch's records and readings go now, not when the next batch
                # replaces them: two batches of decoded readings were alive at once.
                del events, out

    async def seek_back(tp: TP, offset: int) -> None:
        """Read `tp` again from `offset`. Paused meanwhile, so the fetcher drops what it still
        holds of it instead of handing it over after the seek (which would move Faust's read
        offset past the records read again, and Faust would drop those)."""
        consumer = app.consumer
        tp = TP(tp.topic, tp.partition)  # a message's tp may be aiokafka's: Faust's sets assert their own type
        # Not one Faust paused itself (a recovery under way): that one it resumes when ready.
        paused_here = tp not in consumer._paused_partitions  # type: ignore[attr-defined]
        if paused_here:
            consumer.pause_partitions({tp})
        try:
            # On the consumer's own thread, as Faust's recovery seeks: a seek from this one
            # raced aiokafka's fetcher there (KeyError in Fetcher.fetched_records: it deletes
            # the partition's fetched records) and crashed the worker.
            await consumer.seek_wait({tp: offset})
        except IllegalStateError:  # revoked meanwhile: its next owner starts from the committed offset
            log.warning("ingest: %s[%d] was revoked before it could be read again from %d",
                        tp.topic, tp.partition, offset)
            return
        finally:
            if paused_here:
                consumer.resume_partitions({tp})
        gate.rewound(tp, offset)

    async def check_position(tp: TP, expected: int) -> None:
        """A silent partition with records we have not seen: were they fetched and dropped?"""
        gate.checked(tp)
        try:
            position = await asyncio.wait_for(app.consumer.position(tp), POSITION_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - asked again after the next quiet spell
            log.warning("ingest: no position for %s[%d]", tp.topic, tp.partition, exc_info=True)
            return
        if position is not None and position > expected:
            log.error("ingest: the consumer is at offset %d of %s[%d] but nothing past %d reached the stream; "
                      "reading them again", position, tp.topic, tp.partition, expected - 1)
            await seek_back(tp, expected)

    @app.timer(interval=1.0)
    async def roll_sinks() -> None:
        if flow.stopping:
            return
        if not in_flight.locked():  # no batch, no rebalance: the partitions are ours
            for tp, offset in gate.holes.items():  # found by `starts_at`, with no batch since
                await seek_back(tp, offset)
            for tp, offset in gate.overdue().items():
                log.warning("ingest: nothing of %s[%d] read again %.0fs after seeking back to %d; "
                            "seeking again", tp.topic, tp.partition, REWIND_PATIENCE_S, offset)
                await seek_back(tp, offset)
            if faust_holds_records_back(app):
                gate.held_back()
            for tp, expected in gate.quiet().items():
                await check_position(tp, expected)
        await pipeline.tick()
        if not in_flight.locked():
            # Mid-batch, pending() cannot yet cover the batch's offsets: releasing now could
            # ack them before they are processed. The agent releases after its batch.
            gate.release(pending())

    # Faust's eager rebalance revokes every partition, then assigns the new set. Buffers
    # and held offsets of partitions that stay ours must survive it (the consumer goes on
    # from where it was); only partitions that moved away are forgotten, once we know.
    # The batch in flight finishes before the revocation returns, and no batch starts
    # until the new assignment is known: a batch of a partition that has moved must not
    # write its buffers or state after we forget them (that would write files and state
    # of a partition another worker now owns).
    buffering = [*pipeline.buffering_sinks, *stages]

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: object) -> None:
        for part in buffering:
            part.pause()
        metrics.REBALANCES.inc()
        flow.revoked()
        if not flow.stopping:  # stopping holds the batch lock for good
            await ownership.block()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[TP], **_: object) -> None:
        mine = {tp for tp in assigned if tp.topic == settings.topics.readings}
        lost, new = ownership.owned - mine, mine - ownership.owned
        # Partitions still ours whose start an earlier lookup never confirmed (it failed or a
        # rebalance cancelled it): looked up again, or they would never be committed.
        confirm = new | (gate.unconfirmed & mine)
        gate.forget(lost)
        gate.expect_start(confirm)
        pipeline.expect_start({(tp.topic, tp.partition) for tp in confirm})
        gone = {(tp.topic, tp.partition) for tp in lost}
        pipeline.forget_partitions(gone)
        for stage in stages:
            stage.forget_partitions(gone)
        for part in buffering:
            part.resume()
        ownership.assigned(mine)  # batches and stage timers run again from here
        flow.assigned({tp.partition for tp in mine})
        metrics.ASSIGNED_PARTITIONS.set(len(mine))
        # Where the consumer starts each new partition: its first record must be exactly that one
        # (Faust can drop records fetched during the rebalance; see streams/acks.py). Looked up
        # after batches run again: the lookup can wait for the fetcher, which waits for the agent.
        try:
            starts: dict[TP, int] = await asyncio.wait_for(committed_starts(app, confirm), POSITION_TIMEOUT_S)
        except Exception:  # noqa: BLE001 - no start offsets: the first records set the expectation
            log.warning("ingest: no committed offsets for %s; trusting their first records",
                        sorted((tp.topic, tp.partition) for tp in confirm), exc_info=True)
            starts = {}
        for tp in confirm:
            gate.starts_at(tp, starts.get(tp))
            pipeline.starts_at((tp.topic, tp.partition), starts.get(tp))
