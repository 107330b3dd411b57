"""Defaults of the device-side tools: the fleet simulator and the historical backfill."""

from __future__ import annotations

import pydantic
from pydantic import Field

from fieldstream.config.base import Section, section
from fieldstream.errors import ConfigError


class SimulatorSettings(Section):
    model_config = section("SIM")

    devices: int = Field(100, ge=1, description="Devices `fieldstream simulate` runs by default")
    id_prefix: str = Field("sim", pattern=r"^[A-Za-z0-9_.-]+$", description="Simulated device ids start with it")
    burst_duration_s: float = Field(
        3600.0, gt=0, description="Event time an as-fast-as-possible run covers without --duration/--count"
    )
    status_interval_s: float = Field(1.0, gt=0, description="Seconds between status lines")
    flush_timeout_s: float = Field(30.0, gt=0, description="Longest wait for outstanding deliveries on exit")
    backfill_checkpoint_s: float = Field(1.0, gt=0, description="Seconds between saves of the backfill resume point")


def simulator_settings(settings: object) -> SimulatorSettings:
    """The `sim` section of the loaded settings, or read on its own while it is not in SECTIONS."""
    found = getattr(settings, "sim", None)
    if isinstance(found, SimulatorSettings):
        return found
    try:
        return SimulatorSettings()
    except pydantic.ValidationError as e:
        problems = "; ".join(
            f"FIELDSTREAM_SIM_{str(err['loc'][0]).upper() if err['loc'] else ''}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid setting {problems}") from e
