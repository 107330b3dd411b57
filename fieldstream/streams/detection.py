"""Detection wiring: a changelog-backed table of per-device detector state and its timer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import faust

from fieldstream.config import Settings
from fieldstream.detectors.stage import DetectionStage
from fieldstream.devices.paddocks import collar_paddock
from fieldstream.ingest.pipeline import Pipeline
from fieldstream.schemas.files import ALERT_V1
from fieldstream.sinks.alerts_pg import AlertTableSink
from fieldstream.sinks.topic import AvroPublisher
from fieldstream.streams.changelog import ChangelogWriter
from fieldstream.streams.flow import FlowTracker
from fieldstream.streams.tables import device_state_table

# The offline timer runs only once the stream has flowed freely this long.
STEADY_FOR = timedelta(seconds=30)


def attach_detection(app: faust.App, settings: Settings, pipeline: Pipeline, flow: FlowTracker,
                     changelog: ChangelogWriter) -> DetectionStage:
    partitions = settings.topics.partitions
    table = device_state_table(app, "detector-state", partitions, changelog,
                               "Per-device detector state (baselines, open alerts, last seen), pickled")
    sim_prefix = settings.sim.id_prefix

    def geofence_for(device_id: str, device_type: str):  # noqa: ANN202 - a polygon or None
        # Configured polygons win (DeviceEngine looks them up); the simulated fleet's
        # collars carry their paddock so the demo's geofence breaches are detected.
        if device_type == "collar" and settings.detection.simulated_paddocks and device_id.startswith(sim_prefix):
            return collar_paddock(device_id).polygon
        return None

    stage = DetectionStage(
        settings.detection,
        table,
        partitions,
        AvroPublisher("alerts_topic", settings.kafka, settings.registry, settings.topics.alerts, ALERT_V1),
        AlertTableSink(settings.pg),
        retry=pipeline.retry,
        checkpoint_s=settings.window.checkpoint_s,
        geofence_for=geofence_for,
    )

    @app.timer(interval=1.0)
    async def detection_timer() -> None:
        if flow.started and not flow.stopping and stage.started.is_set():
            now = datetime.now(UTC)
            await stage.tick(flow.owned_partitions(), now, now - flow.flowing_since() >= STEADY_FOR)

    return stage
