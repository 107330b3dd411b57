import pytest
from pydantic import ValidationError

from fieldstream.config.detection import DetectionSettings
from fieldstream.detectors.engine import DeviceEngine


def test_defaults_are_valid_and_every_variable_has_the_prefix():
    s = DetectionSettings()
    assert s.z_threshold > 0 and s.cooldown_readings >= 1 and not s.drift_enabled
    assert DetectionSettings.model_config["env_prefix"] == "FIELDSTREAM_DETECT_"


def test_rules_per_device_type_come_from_json_in_the_environment(monkeypatch):
    monkeypatch.setenv("FIELDSTREAM_DETECT_THRESHOLDS", '{"tank_probe": {"ph": {"min": 6.5, "max": 8.5}}}')
    monkeypatch.setenv("FIELDSTREAM_DETECT_Z_THRESHOLD_BY_TYPE", '{"tank_probe": 7}')
    monkeypatch.setenv("FIELDSTREAM_DETECT_GEOFENCES", '{"collar": [[0, 0], [0, 1], [1, 1]]}')
    s = DetectionSettings()
    assert s.thresholds["tank_probe"]["ph"].max == 8.5
    engine = DeviceEngine.from_settings(s, "t1", "tank_probe")
    names = {d.name: d for d in engine.detectors}
    assert names["zscore"].threshold == 7 and names["threshold"].bounds == {"ph": (6.5, 8.5, "warning")}
    assert "geofence" in {d.name for d in DeviceEngine.from_settings(s, "c1", "collar").detectors}


@pytest.mark.parametrize("bounds", ['{"x": {"m": {}}}', '{"x": {"m": {"min": 5, "max": 1}}}'])
def test_a_threshold_needs_a_sensible_bound(monkeypatch, bounds):
    monkeypatch.setenv("FIELDSTREAM_DETECT_THRESHOLDS", bounds)
    with pytest.raises(ValidationError):
        DetectionSettings()


def test_drift_runs_only_where_enabled():
    s = DetectionSettings(drift_enabled=True, drift_device_types=["tank_probe"])
    assert "drift" in {d.name for d in DeviceEngine.from_settings(s, "t1", "tank_probe").detectors}
    assert "drift" not in {d.name for d in DeviceEngine.from_settings(s, "s1", "soil_station").detectors}
