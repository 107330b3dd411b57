"""docs/SETTINGS.md is `fieldstream config reference`: every setting, its default and its meaning."""

from __future__ import annotations

from pathlib import Path

from fieldstream.config.settings import SECTIONS, all_env_names, env_name
from fieldstream.ops.config_view import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "SETTINGS.md"


def test_the_settings_doc_is_the_reference_the_code_prints() -> None:
    assert DOC.read_text() == reference(), "docs/SETTINGS.md is stale: fieldstream config reference > docs/SETTINGS.md"


def test_every_setting_is_listed_once_with_what_it_does() -> None:
    rows = [line for line in reference().splitlines() if line.startswith("| `FIELDSTREAM_")]
    variables = [row.split("`")[1] for row in rows]
    assert sorted(variables) == sorted(all_env_names())
    undescribed = [env_name(cls, name) for cls in SECTIONS.values()
                   for name, info in cls.model_fields.items() if not (info.description or "").strip()]
    assert undescribed == []


def test_defaults_are_shown_as_they_are_written_and_secrets_masked() -> None:
    rows = {row.split("`")[1]: row for row in reference().splitlines() if row.startswith("| `FIELDSTREAM_")}
    assert "| `200000` |" in rows["FIELDSTREAM_PARQUET_ROLL_ROWS"]
    assert "| `90 days, 0:00:00` |" in rows["FIELDSTREAM_PG_RETAIN_FOR"]  # what the setting accepts back
    assert "fieldstream" not in rows["FIELDSTREAM_PG_PASSWORD"].split("|")[2]
    assert "| (none) |" in rows["FIELDSTREAM_KAFKA_SASL_USERNAME"]
