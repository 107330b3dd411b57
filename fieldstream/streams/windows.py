"""Windows wiring: a changelog-backed table of per-device window state and its timer."""

from __future__ import annotations

from datetime import UTC, datetime

import faust

from fieldstream.config import Settings
from fieldstream.ingest.pipeline import Pipeline
from fieldstream.schemas.files import WINDOW_V1
from fieldstream.sinks.topic import AvroPublisher, TopicPublisher
from fieldstream.sinks.windows_pg import WindowTableSink
from fieldstream.streams.changelog import ChangelogWriter
from fieldstream.streams.flow import FlowTracker
from fieldstream.streams.tables import device_state_table
from fieldstream.windows.engine import WindowEngine
from fieldstream.windows.stage import WindowStage


def attach_windows(app: faust.App, settings: Settings, pipeline: Pipeline, flow: FlowTracker,
                   changelog: ChangelogWriter) -> WindowStage:
    engine = WindowEngine.from_settings(settings.window)
    partitions = settings.topics.partitions
    table = device_state_table(app, "window-state", partitions, changelog,
                               "Open event-time windows per device (panes, counted seqs, watermark), pickled")
    stage = WindowStage(
        engine,
        table,
        partitions,
        AvroPublisher("windows_topic", settings.kafka, settings.registry, settings.topics.windows, WINDOW_V1),
        WindowTableSink(settings.pg, [spec.name for spec in engine.specs]),
        TopicPublisher("late_topic", settings.kafka, settings.topics.late),
        retry=pipeline.retry,
        checkpoint_s=settings.window.checkpoint_s,
    )

    @app.timer(interval=settings.window.close_every_s)
    async def window_timer() -> None:
        if flow.started and not flow.stopping and stage.started.is_set():
            await stage.tick(flow.owned_partitions(), datetime.now(UTC), flow.flowing_since())

    return stage
