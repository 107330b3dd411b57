"""The ingest agent: batches of raw records from the readings topic into the pipeline and its stages."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Protocol

import faust
from faust.types import TP, EventT
from mode import Service

from fieldstream import metrics
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
from fieldstream.sinks.timescale import TimescaleSink
from fieldstream.streams.acks import AckGate
from fieldstream.streams.flow import FlowTracker

log = logging.getLogger(__name__)


class Stage(Protocol):
    """Work on valid, durable readings: windows, detectors."""

    name: str

    async def start(self) -> None: ...

    async def on_batch(self, readings: Sequence[Reading], now: datetime) -> None: ...

    async def close(self) -> None: ...


def build_pipeline(settings: Settings) -> Pipeline:
    schemas = WriterSchemaCache(settings.registry, subject_for(settings.topics.readings))
    return Pipeline(
        decoder=Decoder(schemas, settings.validation.max_value_bytes),
        validator=Validator(settings.validation),
        dedup=RecentSeqs(settings.validation.dedup_window),
        sinks=[TimescaleSink(settings.pg), ParquetSink(settings.parquet)],
        dlq=DeadLetterSink(settings.kafka, settings.topics.dlq, worker=settings.worker.app_id),
    )


def raw_record(event: EventT) -> RawRecord:
    m = event.message
    return RawRecord(m.topic, m.partition, m.offset, m.timestamp and int(m.timestamp * 1000), m.key, m.value,
                     list(m.headers or []))


def attach_ingest(app: faust.App, settings: Settings, pipeline: Pipeline, stages: list[Stage],
                  flow: FlowTracker) -> None:
    gate = AckGate(app)
    readings = app.topic(settings.topics.readings, partitions=settings.topics.partitions)

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
            for stage in stages:
                await stage.close()
            await pipeline.close()

    @app.agent(readings, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker.batch_max, settings.worker.batch_within_s):
            started = time.monotonic()
            out = await pipeline.process([raw_record(e) for e in events])
            now = datetime.now(UTC)
            for stage in stages:
                await stage.on_batch(out.readings, now)
            # Parquet buffers across batches: keep these offsets uncommitted until it is durable.
            gate.hold(events)
            gate.release(_pending(pipeline))
            flow.batch_done(len(events), started)

    @app.timer(interval=1.0)
    async def roll_sinks() -> None:
        await pipeline.tick()
        gate.release(_pending(pipeline))

    @app.on_partitions_revoked.connect
    async def on_revoked(app: faust.App, revoked: set[TP], **_: object) -> None:
        mine = {tp for tp in revoked if tp.topic == settings.topics.readings}
        gate.forget(mine)
        for sink in pipeline.buffering_sinks:
            sink.forget_partitions({(tp.topic, tp.partition) for tp in mine})
        metrics.REBALANCES.inc()

    @app.on_partitions_assigned.connect
    async def on_assigned(app: faust.App, assigned: set[TP], **_: object) -> None:
        owned = {tp.partition for tp in assigned if tp.topic == settings.topics.readings}
        flow.assigned(owned)
        metrics.ASSIGNED_PARTITIONS.set(len(owned))


def _pending(pipeline: Pipeline) -> dict[tuple[str, int], int]:
    low: dict[tuple[str, int], int] = {}
    for sink in pipeline.buffering_sinks:
        for tp, offset in sink.pending_low_offsets().items():
            low[tp] = min(low.get(tp, offset), offset)
    return low
