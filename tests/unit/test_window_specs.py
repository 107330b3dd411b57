"""Window specs: names, epoch-aligned assignment, errors naming the bad value, settings."""

from __future__ import annotations

from datetime import UTC, datetime

import pydantic
import pytest

from fieldstream.config.windows import WindowSettings
from fieldstream.errors import ConfigError
from fieldstream.windows import DEFAULT_SPECS, WindowEngine, parse_specs
from fieldstream.windows.specs import pane_seconds, parse_spec


def at(hour: int, minute: int, second: int = 0) -> datetime:
    return datetime(2024, 3, 1, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(("text", "name"), [
    ("tumbling:60", "tumbling_1m"),
    ("hopping:300:60", "hopping_5m_1m"),
    ("hopping:90:30", "hopping_90s_30s"),
    (" Tumbling : 7200 ", "tumbling_2h"),
    ("hopping:86400:3600", "hopping_1d_1h"),
])
def test_names(text: str, name: str) -> None:
    assert parse_spec(text).name == name


def test_defaults_are_one_minute_tumbling_and_five_minutes_every_minute() -> None:
    assert [s.name for s in parse_specs(DEFAULT_SPECS)] == ["tumbling_1m", "hopping_5m_1m"]
    assert pane_seconds(parse_specs(DEFAULT_SPECS)) == 60
    assert pane_seconds(parse_specs(["tumbling:60", "hopping:120:45"])) == 15


def test_assignment_is_epoch_aligned_and_half_open() -> None:
    tumbling, hopping = parse_specs(DEFAULT_SPECS)
    assert tumbling.windows(at(12, 3, 30)) == [(at(12, 3), at(12, 4))]
    assert tumbling.windows(at(12, 4)) == [(at(12, 4), at(12, 5))]  # the end belongs to the next window
    starts = [at(11, 59), at(12, 0), at(12, 1), at(12, 2), at(12, 3)]
    assert hopping.windows(at(12, 3, 30)) == [(start, start + (at(12, 5) - at(12, 0))) for start in starts]


@pytest.mark.parametrize(("text", "fragment"), [
    ("sliding:60", "'sliding'"),
    ("tumbling:abc", "'abc'"),
    ("tumbling:1.5", "'1.5'"),
    ("tumbling:0", "'0'"),
    ("hopping:60:-5", "'-5'"),
    ("hopping:60", "'hopping:60'"),
    ("tumbling:60:60", "'tumbling:60:60'"),
    ("hopping:60:120", "step 120s exceeds size 60s"),
])
def test_errors_name_the_bad_value(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_specs([text])
    assert fragment in str(caught.value) and repr(text) in str(caught.value)


def test_whole_list_errors() -> None:
    with pytest.raises(ConfigError, match="tumbling_1m is given more than once"):
        parse_specs(["tumbling:60", "tumbling:60"])
    with pytest.raises(ConfigError, match="no window specs"):
        parse_specs([])
    with pytest.raises(ConfigError, match="hopping_1h_7s: 3600 panes of 1s"):
        parse_specs(["tumbling:60", "hopping:3600:7"], max_panes_per_window=60)


def test_settings_read_a_list_or_comma_separated_specs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert WindowSettings().specs == list(DEFAULT_SPECS)
    monkeypatch.setenv("FIELDSTREAM_WINDOW_SPECS", "tumbling:30, hopping:600:120")
    monkeypatch.setenv("FIELDSTREAM_WINDOW_INTERVALS_S", '{"collar": 15}')
    settings = WindowSettings()
    engine = WindowEngine.from_settings(settings)
    assert [s.name for s in engine.specs] == ["tumbling_30s", "hopping_10m_2m"]
    assert engine.pane_us == 30_000_000 and engine.intervals_s == {"collar": 15.0}
    monkeypatch.setenv("FIELDSTREAM_WINDOW_SPECS", '["tumbling:60"]')
    assert WindowSettings().specs == ["tumbling:60"]


def test_a_bad_spec_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDSTREAM_WINDOW_SPECS", "tumbling:60,hoping:300:60")
    with pytest.raises(pydantic.ValidationError) as caught:
        WindowSettings()
    assert "'hoping:300:60'" in str(caught.value) and "specs" in str(caught.value)
