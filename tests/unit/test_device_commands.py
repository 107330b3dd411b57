"""Pure parts of `simulate` and `alerts tail`: run planning, v1 conversion, alert filters and lines."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import click
import pytest

from fieldstream.commands.alerts import AlertFilter, alert_json, format_alert
from fieldstream.commands.simulate import Duration
from fieldstream.devices.fleet import FleetConfig, natural_rate
from fieldstream.devices.simulator import plan_run, v1_record

NOW = datetime(2026, 6, 1, 12, 0, 0, 654321, tzinfo=UTC)
BASE = FleetConfig(devices=50, seed=3)


def test_live_modes_start_now() -> None:
    plan = plan_run(BASE, now=NOW, rate=0, realtime=True, burst_s=3600)
    assert plan.paced and plan.config.start == NOW.replace(microsecond=0) and plan.config.interval_scale == 1.0


def test_rate_mode_scales_intervals_to_the_asked_rate() -> None:
    plan = plan_run(BASE, now=NOW, rate=500, realtime=False, burst_s=3600)
    assert plan.paced and plan.config.start == NOW.replace(microsecond=0)
    assert natural_rate(plan.config) == pytest.approx(500)


def test_burst_mode_ends_at_now() -> None:
    plan = plan_run(BASE, now=NOW, rate=0, realtime=False, burst_s=1800)
    assert not plan.paced and plan.config.duration_s == 1800
    assert plan.config.start == NOW.replace(microsecond=0) - timedelta(seconds=1800)
    counted = plan_run(replace(BASE, count=10_000), now=NOW, rate=0, realtime=False, burst_s=1800)
    span = timedelta(seconds=10_000 / natural_rate(BASE))
    assert counted.config.start == (NOW - span).replace(microsecond=0) and counted.config.duration_s is None


def test_conflicting_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="choose one"):
        plan_run(BASE, now=NOW, rate=10, realtime=True, burst_s=60)


def test_v1_record_renames_ts_and_drops_v2_fields() -> None:
    record = {"device_id": "d", "device_type": "collar", "event_time": NOW, "seq": 1,
              "metrics": {"activity": 3.0, "lat": -37.7, "lon": 142.0}, "tags": None, "location": None,
              "firmware": None, "battery": None, "signal_dbm": None}
    assert v1_record(record) == {"device_id": "d", "device_type": "collar", "ts": NOW, "seq": 1,
                                 "metrics": {"activity": 3.0, "lat": -37.7, "lon": 142.0}, "tags": None}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400)])
def test_durations(text: str, seconds: float) -> None:
    assert Duration().convert(text, None, None) == seconds


def test_bad_duration() -> None:
    with pytest.raises(click.BadParameter):
        Duration().convert("soon", None, None)
    with pytest.raises(click.BadParameter):
        Duration().convert("0", None, None)
    assert Duration(allow_zero=True).convert("0m", None, None) == 0


ALERT = {"alert_id": "a1", "state": "open", "device_id": "sim-collar-00003", "device_type": "collar",
         "event_time": NOW, "detector": "zscore", "metric": "body_temperature", "value": 40.12, "score": 7.3,
         "threshold": 5.0, "severity": "warning", "message": "body temperature far above its norm"}


def test_alert_filters() -> None:
    assert AlertFilter().matches(ALERT)
    assert AlertFilter(min_severity="warning").matches(ALERT)
    assert not AlertFilter(min_severity="critical").matches(ALERT)
    assert AlertFilter(devices=("sim-collar-*",)).matches(ALERT)
    assert not AlertFilter(devices=("sim-soil-*",)).matches(ALERT)
    assert not AlertFilter(detectors=("stuck",)).matches(ALERT)
    assert AlertFilter(device_types=("collar", "soil_station")).matches(ALERT)
    assert not AlertFilter(states=("resolved",)).matches(ALERT)


def test_alert_lines() -> None:
    line = format_alert(ALERT)
    assert line.startswith("2026-06-01T12:00:00.654+00:00  OPEN")
    for part in ("warning", "zscore", "sim-collar-00003 (collar)", "body_temperature=40.12", "score=7.3",
                 "threshold=5", "far above"):
        assert part in line
    assert json.loads(alert_json(ALERT)) == {**ALERT, "event_time": NOW.isoformat()}
