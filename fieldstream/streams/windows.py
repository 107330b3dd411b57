"""Windows wiring: a changelog-backed table of per-device window state and its timer."""

from __future__ import annotations

from datetime import UTC, datetime

import faust

from fieldstream.config import Settings
from fieldstream.ingest.pipeline import Pipeline
from fieldstream.schemas.files import WINDOW_V1
from fieldstream.sinks.topic import AvroPublisher, TopicPublisher
from fieldstream.sinks.windows_pg import WindowTableSink
from fieldstream.streams.flow import FlowTracker
from fieldstream.windows.engine import WindowEngine
from fieldstream.windows.stage import WindowStage


class BytesTable:
    """The Faust table seen as str → pickled bytes (keys and values travel raw)."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = self.table.get(key.encode())
        return default if value is None else value

    def __getitem__(self, key: str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def __iter__(self):  # noqa: ANN204
        return iter(list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)


def attach_windows(app: faust.App, settings: Settings, pipeline: Pipeline, flow: FlowTracker) -> WindowStage:
    engine = WindowEngine.from_settings(settings.window)
    partitions = settings.topics.partitions
    # Keyed by device_id and co-partitioned with the readings topic (the same
    # murmur2 partitioner), so a device's state recovers where its readings go.
    table = app.Table(
        "window-state",
        default=None,
        partitions=partitions,
        key_type=bytes,
        value_type=bytes,
        use_partitioner=True,
        help="Open event-time windows per device (panes, counted seqs, watermark), pickled",
    )
    stage = WindowStage(
        engine,
        BytesTable(table),
        partitions,
        AvroPublisher("windows_topic", settings.kafka, settings.registry, settings.topics.windows, WINDOW_V1),
        WindowTableSink(settings.pg, [spec.name for spec in engine.specs]),
        TopicPublisher("late_topic", settings.kafka, settings.topics.late),
        retry=pipeline.retry,
        checkpoint_s=settings.window.checkpoint_s,
    )

    @app.timer(interval=settings.window.close_every_s)
    async def window_timer() -> None:
        if flow.started and not flow.stopping:
            await stage.tick(flow.owned_partitions(), datetime.now(UTC), flow.flowing_since())

    return stage
