"""An incompatible schema is refused by `fieldstream schemas check`, by the registry, and by the producer."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fieldstream.commands.schemas import check
from fieldstream.config import settings as settings_module
from fieldstream.devices import DeviceProducer, SchemaRejected
from fieldstream.schemas.admin import registry_client
from fieldstream.schemas.files import READING_V2, schema_dict, subject_for


def incompatible_reading() -> dict:
    """v2 plus a required field without a default: old data cannot be read with it (not BACKWARD)."""
    schema = schema_dict(READING_V2)
    return {**schema, "fields": [*schema["fields"], {"name": "site_code", "type": "string"}]}


def test_incompatible_schema_is_refused_everywhere(scenario, tmp_path, monkeypatch):
    settings = scenario.settings()
    candidate = tmp_path / "reading.v3.avsc"
    candidate.write_text(json.dumps(incompatible_reading()))
    compatible = tmp_path / "reading.v2-again.avsc"
    compatible.write_text(json.dumps(schema_dict(READING_V2)))

    for name, value in scenario.env.items():
        monkeypatch.setenv(name, value)
    settings_module.load_settings.cache_clear()
    try:
        refused = CliRunner().invoke(check, [str(candidate)])
        accepted = CliRunner().invoke(check, [str(compatible)])
    finally:
        settings_module.load_settings.cache_clear()
    assert refused.exit_code == 1, refused.output
    assert "NOT compatible" in refused.output and "BACKWARD" in refused.output
    assert accepted.exit_code == 0, accepted.output

    client = registry_client(settings)
    with pytest.raises(SchemaRegistryError) as err:
        client.register_schema(subject_for(settings.topics.readings), Schema(candidate.read_text(), "AVRO"))
    assert err.value.http_status_code == 409

    with pytest.raises(SchemaRejected) as rejected:
        DeviceProducer(settings.kafka, settings.registry, settings.topics.readings,
                       schema_text_=candidate.read_text(), auto_register=True)
    assert "incompatible" in str(rejected.value) and subject_for(settings.topics.readings) in str(rejected.value)
