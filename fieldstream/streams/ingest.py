"""The ingest agent: batches of raw records from the readings topic into the pipeline."""

from __future__ import annotations

import logging

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
from fieldstream.schemas.registry import WriterSchemaCache
from fieldstream.sinks.dlq import DeadLetterSink
from fieldstream.sinks.parquet import ParquetSink
from fieldstream.sinks.timescale import TimescaleSink
from fieldstream.streams.acks import AckGate

log = logging.getLogger(__name__)


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


def attach_ingest(app: faust.App, settings: Settings) -> Pipeline:
    pipeline = build_pipeline(settings)
    gate = AckGate(app)
    readings = app.topic(settings.topics.readings, partitions=settings.topics.partitions)
    app.topic(settings.topics.dlq, partitions=settings.topics.partitions)  # declared so it exists

    @app.service
    class PipelineService(Service):
        """Starts the sinks with the worker (retrying until they answer) and closes them on stop."""

        async def on_start(self) -> None:
            await pipeline.start()
            log.info("pipeline: sinks ready (%s)", ", ".join(s.name for s in pipeline.sinks))

        async def on_stop(self) -> None:
            await pipeline.close()

    @app.agent(readings, name="ingest")
    async def ingest(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.worker.batch_max, settings.worker.batch_within_s):
            await pipeline.process([raw_record(e) for e in events])
            # Parquet buffers across batches: keep these offsets uncommitted until it is durable.
            gate.hold(events)
            gate.release(_pending(pipeline))

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
        metrics.ASSIGNED_PARTITIONS.set(sum(1 for tp in assigned if tp.topic == settings.topics.readings))

    return pipeline


def _pending(pipeline: Pipeline) -> dict[tuple[str, int], int]:
    low: dict[tuple[str, int], int] = {}
    for sink in pipeline.buffering_sinks:
        for tp, offset in sink.pending_low_offsets().items():
            low[tp] = min(low.get(tp, offset), offset)
    return low
