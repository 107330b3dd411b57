"""Windows wiring: a changelog-backed table of per-device window state and the closing timer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import faust

from fieldstream.config import Settings
from fieldstream.ingest.pipeline import Pipeline
from fieldstream.partitioning import partition_for
from fieldstream.schemas.files import WINDOW_V1
from fieldstream.sinks.topic import AvroPublisher, TopicPublisher
from fieldstream.sinks.windows_pg import WindowTableSink
from fieldstream.streams.flow import FlowTracker
from fieldstream.windows.engine import WindowEngine
from fieldstream.windows.stage import WindowStage

log = logging.getLogger(__name__)


def attach_windows(app: faust.App, settings: Settings, pipeline: Pipeline, flow: FlowTracker) -> WindowStage:
    engine = WindowEngine.from_settings(settings.window)
    partitions = settings.topics.partitions
    # Keyed by device_id, co-partitioned with the readings topic (same murmur2
    # partitioner), so a device's state recovers on the worker that owns its readings.
    table = app.Table(
        "window-state",
        default=None,
        partitions=partitions,
        schema=faust.Schema(key_serializer="raw", value_serializer="pickle"),
        use_partitioner=True,
        help="Open event-time windows per device (panes, counted seqs, watermark)",
    )
    stage = WindowStage(
        engine,
        _StrKeyed(table),
        AvroPublisher("windows_topic", settings.kafka, settings.registry, settings.topics.windows, WINDOW_V1),
        WindowTableSink(settings.pg, [spec.name for spec in engine.specs]),
        TopicPublisher("late_topic", settings.kafka, settings.topics.late),
        retry=pipeline.retry,
    )

    @app.timer(interval=settings.window.close_every_s)
    async def close_silent_windows() -> None:
        if not flow.started:
            return
        owned = flow.owned_partitions()
        mine = [key for key in list(table.keys()) if partition_for(_as_bytes(key), partitions) in owned]
        await stage.close_due([_as_str(k) for k in mine], datetime.now(UTC), flow.flowing_since())

    return stage


def _as_bytes(key: str | bytes) -> bytes:
    return key if isinstance(key, bytes) else key.encode()


def _as_str(key: str | bytes) -> str:
    return key.decode() if isinstance(key, bytes) else key


class _StrKeyed:
    """The table seen with str keys; stored as bytes, which is what the raw serializer recovers."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table

    def get(self, key: str, default: object = None) -> object:
        value = self.table.get(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: object) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def __getitem__(self, key: str) -> object:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __iter__(self):  # noqa: ANN204
        return (_as_str(k) for k in self.table.keys())

    def __len__(self) -> int:
        return len(self.table)
