"""Rules a decoded reading must satisfy."""

from __future__ import annotations

from pydantic import Field

from fieldstream.config.base import Section, section

DEFAULT_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "soil_station": {"moisture": (0, 100), "temperature": (-50, 70), "humidity": (0, 100)},
    "collar": {"activity": (0, 100), "body_temperature": (30, 45), "lat": (-90, 90), "lon": (-180, 180)},
    "tank_probe": {"dissolved_oxygen": (0, 25), "ph": (0, 14), "water_temperature": (-5, 45)},
    "air_quality": {"tvoc": (0, 60000), "eco2": (300, 60000), "pm25": (0, 1000), "humidity": (0, 100)},
}


class ValidationSettings(Section):
    model_config = section("VALIDATION")

    clock_skew_s: float = Field(300.0, ge=0, description="How far in the future an event time may be")
    max_age_s: float = Field(365 * 86400.0, gt=0, description="How old an event time may be")
    max_value_bytes: int = Field(65536, gt=5, description="Larger records are dead-lettered unread")
    max_metrics: int = Field(64, ge=1, description="Most metrics one reading may carry")
    dedup_window: int = Field(256, ge=1, description="Highest seq numbers remembered per device to drop duplicates")
    ranges: dict[str, dict[str, tuple[float, float]]] = Field(
        default_factory=lambda: DEFAULT_RANGES,
        description="Per device type: metric → [min, max]; JSON in the environment",
    )
