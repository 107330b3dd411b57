"""Registering and checking the bundled schemas (confluent-kafka's registry client does the HTTP)."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fieldstream.config import Settings
from fieldstream.schemas.files import BUNDLED


@dataclass(frozen=True)
class Registered:
    subject: str
    file: str
    schema_id: int
    version: int


def registry_client(settings: Settings) -> SchemaRegistryClient:
    return SchemaRegistryClient(settings.registry.client_config())


def register_bundled(settings: Settings, client: SchemaRegistryClient | None = None) -> list[Registered]:
    """Set each subject's compatibility level, then register every bundled schema in order (idempotent)."""
    client = client or registry_client(settings)
    out = []
    configured: set[str] = set()
    for bundled in BUNDLED:
        topic = getattr(settings.topics, bundled.topic_setting)
        subject = bundled.subject(topic)
        if subject not in configured:
            client.set_compatibility(subject_name=subject, level=settings.registry.compatibility)
            configured.add(subject)
        schema = Schema(bundled.text, "AVRO")
        schema_id = client.register_schema(subject, schema)
        version = client.lookup_schema(subject, schema).version
        out.append(Registered(subject, bundled.file, schema_id, version))
    return out


def check_compatible(settings: Settings, subject: str, schema_text: str,
                     client: SchemaRegistryClient | None = None) -> tuple[bool, str]:
    """(compatible?, explanation) of a candidate schema against the subject, at the subject's level."""
    client = client or registry_client(settings)
    schema = Schema(schema_text, "AVRO")
    try:
        client.get_latest_version(subject)
    except SchemaRegistryError as e:
        if e.http_status_code == 404:
            return True, f"subject {subject} has no versions yet: any valid schema is accepted"
        raise
    level = client.get_compatibility(subject_name=subject)
    if client.test_compatibility(subject, schema, version="latest"):
        return True, f"compatible with {subject} at level {level}"
    return False, f"NOT compatible with {subject} at level {level}: the registry would refuse it"
