"""Anomaly detection: detector hyperparameters, rules per device type, alert cool-down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from fieldstream.config.base import Section, section

Severity = Literal["info", "warning", "critical"]


class Bounds(BaseModel):
    """A threshold rule on one metric: alert below `min` or above `max`."""

    min: float | None = None
    max: float | None = None
    severity: Severity = "warning"

    @model_validator(mode="after")
    def _one_bound(self) -> Bounds:
        if self.min is None and self.max is None:
            raise ValueError("a threshold needs min, max or both")
        if self.min is not None and self.max is not None and self.min >= self.max:
            raise ValueError("min must be below max")
        return self


# Conservative defaults: values no healthy device of that type produces.
DEFAULT_THRESHOLDS: dict[str, dict[str, Bounds]] = {
    "air_quality": {"tvoc": Bounds(max=5500.0, severity="critical"), "pm25": Bounds(max=250.0)},
    "tank_probe": {"dissolved_oxygen": Bounds(min=3.0, severity="critical")},
    "collar": {"body_temperature": Bounds(min=35.0, max=41.5)},
}

# Largest plausible |change| per second; faster changes are glitches or real events worth a look.
DEFAULT_RATES: dict[str, dict[str, float]] = {
    "tank_probe": {"water_temperature": 0.05},
    "soil_station": {"moisture": 0.5},
}


class DetectionSettings(Section):
    model_config = section("DETECT")

    seed: int = Field(42, description="Seed of every randomised detector (HalfSpaceTrees)")
    warmup: int = Field(30, ge=2, description="Readings a metric's baseline learns before it may alert")
    cooldown_readings: int = Field(
        5, ge=1, description="Consecutive normal readings that resolve an open alert"
    )
    cooldown_s: float = Field(
        0.0, ge=0, description="Alternatively, seconds without an anomalous reading that resolve it (0 = off)"
    )

    # Robust z-score against a Holt (level + slope) forecast (zscore.py).
    z_threshold: float = Field(5.0, gt=0, description="|z| above which a reading is anomalous")
    z_threshold_by_type: dict[str, float] = Field(
        default_factory=dict, description="Per device type overrides of z_threshold (heavy-tailed signals)"
    )
    z_fading: float = Field(0.3, gt=0, lt=1, description="Weight of a new reading in the level")
    z_trend_fading: float = Field(0.05, ge=0, lt=1, description="Weight of a new level change in the slope")
    z_var_fading: float = Field(0.01, gt=0, lt=1, description="Weight of a new squared error in σ²")
    z_shift_after: int = Field(
        4, ge=2, description="Readings in a row beyond half the threshold, same side, that make a level shift"
    )
    z_rebaseline_after: int = Field(
        40, ge=2, description="Readings of a one-sided excursion after which it is the new level"
    )
    z_min_std_rel: float = Field(1e-4, ge=0, description="Floor of σ relative to |level| (quantised signals)")
    z_min_std_abs: float = Field(1e-6, gt=0, description="Absolute floor of σ")

    # Rules (rules.py).
    thresholds: dict[str, dict[str, Bounds]] = Field(
        default_factory=lambda: dict(DEFAULT_THRESHOLDS),
        description="Per device type: metric → {min, max, severity}; JSON in the environment",
    )
    rates: dict[str, dict[str, float]] = Field(
        default_factory=lambda: dict(DEFAULT_RATES),
        description="Per device type: metric → largest |change| per second",
    )
    stuck_readings: int = Field(10, ge=2, description="Identical readings in a row that mean a stuck sensor")
    stuck_epsilon: float = Field(0.0, ge=0, description="Changes up to this size count as identical")
    geofences: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict,
        description="Device id (or device type) → polygon as [[lat, lon], ...]; the device id wins",
    )
    simulated_paddocks: bool = Field(
        True, description="Collars of the simulated fleet (ids with the simulator's prefix) use its paddocks"
    )
    offline_k: float = Field(
        5.0, gt=1, description="Silent for k × its interval means offline (k - 1 lost readings in a row do not)"
    )
    offline_check_s: float = Field(5.0, gt=0, description="How often the worker looks for silent devices")
    offline_min_readings: int = Field(5, ge=2, description="Readings before a device's interval is trusted")
    expected_interval_s: dict[str, float] = Field(
        default_factory=dict,
        description="Per device type: expected seconds between readings (learned per device if absent)",
    )

    # Multivariate HalfSpaceTrees per device type on block means (halfspace.py).
    hst_enabled: bool = Field(True, description="Run HalfSpaceTrees (multivariate, per device type)")
    hst_sample_every: int = Field(
        30, ge=1, description="Readings of one device averaged into one HST sample (bounds per-reading cost)"
    )
    hst_n_trees: int = Field(10, ge=1, description="Trees per HalfSpaceTrees model")
    hst_height: int = Field(8, ge=2, description="Depth of each tree")
    hst_window: int = Field(250, ge=10, description="Samples per HST reference window")
    hst_quantile: float = Field(0.999, gt=0.5, lt=1, description="Score quantile above which a sample is anomalous")
    hst_warmup_samples: int = Field(500, ge=0, description="Samples a device type's model sees before it may alert")
    hst_persistence: int = Field(2, ge=1, description="Anomalous samples of a device in a row before it alerts")
    hst_device_warmup_blocks: int = Field(
        5, ge=1, description="Blocks that teach a device's own normal before its samples are scored"
    )

    # Drift on block means of each metric (drift.py). Off by default: on metrics with a daily
    # cycle the test reports the cycle itself (see docs/DETECTION.md); enable it where there is none.
    drift_enabled: bool = Field(False, description="Run the drift test on block means")
    drift_device_types: list[str] = Field(
        default_factory=list, description="Device types the drift test runs on when enabled (empty = all)"
    )
    drift_method: Literal["page_hinkley", "adwin"] = Field("page_hinkley", description="River drift detector")
    drift_block: int = Field(10, ge=1, description="Readings averaged into one drift-detector input")
    drift_threshold: float = Field(
        25.0, gt=0, description="Page-Hinkley λ, in units of the metric's baseline σ of block means"
    )
    drift_delta: float = Field(0.5, ge=0, description="Page-Hinkley tolerated drift per block, in σ units")
    drift_adwin_delta: float = Field(0.002, gt=0, lt=1, description="ADWIN confidence")

    # Evaluation (`fieldstream evaluate`).
    nab_path: Path = Field(Path("examples/data/nab"), description="Labelled NAB series shipped with the repo")
    eval_tolerance_s: float = Field(
        600.0, ge=0, description="An alert up to this long after a labelled window still detects it"
    )
