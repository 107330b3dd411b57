"""Topic names and partitioning: settings, never literals in code."""

from __future__ import annotations

from pydantic import Field

from fieldstream.config.base import Section, section


class TopicSettings(Section):
    model_config = section("TOPIC")

    readings: str = Field("telemetry.readings", description="Devices' readings, keyed by device_id (input)")
    windows: str = Field("telemetry.windows", description="Window aggregates (output)")
    alerts: str = Field("telemetry.alerts", description="Alert events for subscribers (output)")
    dlq: str = Field("telemetry.dlq", description="Records that could not be processed, with their context")
    late: str = Field("telemetry.late", description="Readings too late for their window")
    partitions: int = Field(12, ge=1, description="Partitions of the readings topic (the unit of scaling)")
    replication_factor: int = Field(1, ge=1, description="Replicas of each topic fieldstream creates")
