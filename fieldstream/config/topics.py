"""Topic names and partitioning: settings, never literals in code."""

from __future__ import annotations

from pydantic import Field

from fieldstream.config.base import Section, section


class TopicSettings(Section):
    model_config = section("TOPIC")

    readings: str = "telemetry.readings"
    windows: str = "telemetry.windows"
    alerts: str = "telemetry.alerts"
    dlq: str = "telemetry.dlq"
    late: str = "telemetry.late"
    partitions: int = Field(12, ge=1, description="Partitions of the readings topic (the unit of scaling)")
    replication_factor: int = Field(1, ge=1)
