"""Event-time windows: specs, lateness, expected intervals, memory bounds."""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, field_validator, model_validator
from pydantic_settings import NoDecode

from fieldstream.config.base import Section, section
from fieldstream.errors import ConfigError
from fieldstream.windows.specs import DEFAULT_SPECS, parse_specs


class WindowSettings(Section):
    model_config = section("WINDOW")

    specs: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SPECS),
        description='tumbling:<size_s> or hopping:<size_s>:<step_s>; comma-separated or a JSON list',
    )
    grace_s: float = Field(10.0, ge=0, description="How long after a window's end late readings still count")
    default_interval_s: float = Field(60.0, gt=0, description="Expected seconds between a device's readings")
    intervals_s: dict[str, float] = Field(
        default_factory=dict, description="Per device type: expected seconds between readings; JSON",
    )
    learn_interval: bool = Field(True, description="Learn a device's interval from its median spacing")
    interval_samples: int = Field(16, ge=1, description="Recent spacings kept per device to learn its interval")
    exact_values: int = Field(256, ge=1, description="Readings a pane keeps exactly; beyond, a sketch per metric")
    sketch_relative_accuracy: float = Field(0.01, gt=0, lt=1, description="DDSketch relative error of median, p95")
    sketch_max_bins: int = Field(1024, ge=16, description="Most DDSketch bins per sign")
    seq_runs: int = Field(16, ge=1, description="Runs of counted seqs kept per device to recognise replays")
    max_panes_per_window: int = Field(60, ge=1, description="Refuse specs needing more panes per window")
    close_every_s: float = Field(1.0, gt=0, description="How often the worker closes due windows")
    checkpoint_s: float = Field(
        30.0, gt=0,
        description="How often changed window and detector states go to the changelog, each checkpoint "
                    "spread over half that (offsets wait for it: a crash replays up to 1.5x this)",
    )
    state_ttl_s: float = Field(7 * 86400.0, gt=0, description="Drop the state of a device silent this long")

    @field_validator("specs", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return json.loads(text) if text.startswith("[") else [p for p in text.split(",") if p.strip()]
        return value

    @field_validator("specs")
    @classmethod
    def _parse(cls, value: list[str]) -> list[str]:
        try:
            parse_specs(value)
        except ConfigError as e:
            raise ValueError(str(e)) from e
        return value

    @field_validator("intervals_s")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for device_type, seconds in value.items():
            if not seconds > 0:
                raise ValueError(f"interval of {device_type!r} is {seconds}; it must be positive")
        return value

    @model_validator(mode="after")
    def _check_panes(self) -> WindowSettings:
        try:
            parse_specs(self.specs, self.max_panes_per_window)
        except ConfigError as e:
            raise ValueError(str(e)) from e
        return self
