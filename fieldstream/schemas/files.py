"""The bundled .avsc files and the subjects they are registered under."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import fastavro

READING_V1 = "reading.v1.avsc"
READING_V2 = "reading.v2.avsc"
READING_BATCH_V1 = "reading_batch.v1.avsc"
ALERT_V1 = "alert.v1.avsc"
WINDOW_V1 = "window.v1.avsc"
#: The reader schema: every reading is resolved to the newest version.
READING_LATEST = READING_V2


@dataclass(frozen=True)
class BundledSchema:
    file: str
    topic_setting: str  # which TopicSettings field names the topic it is published to
    # Confluent's TopicRecordNameStrategy: a second record type on a topic gets
    # its own subject (<topic>-<record full name>) and its own compatibility history.
    record_subject: bool = False

    def subject(self, topic: str) -> str:
        return subject_for(topic, record_name(self.file) if self.record_subject else None)

    @property
    def text(self) -> str:
        return schema_text(self.file)


#: Registered in this order by `fieldstream schemas register` (v1 before v2 so
#: the subject's history is the devices' history).
BUNDLED: tuple[BundledSchema, ...] = (
    BundledSchema(READING_V1, "readings"),
    BundledSchema(READING_V2, "readings"),
    BundledSchema(READING_BATCH_V1, "readings", record_subject=True),
    BundledSchema(WINDOW_V1, "windows"),
    BundledSchema(ALERT_V1, "alerts"),
)


def subject_for(topic: str, record: str | None = None) -> str:
    """Confluent's TopicNameStrategy (`<topic>-value`), or TopicRecordNameStrategy with a record name."""
    return f"{topic}-{record}" if record else f"{topic}-value"


def record_name(file: str) -> str:
    """The full name (namespace.name) of a bundled schema's record."""
    d = schema_dict(file)
    return f"{d['namespace']}.{d['name']}" if d.get("namespace") else d["name"]


@lru_cache(maxsize=None)
def schema_text(file: str) -> str:
    return resources.files(__package__).joinpath(file).read_text()


@lru_cache(maxsize=None)
def schema_dict(file: str) -> dict[str, Any]:
    return json.loads(schema_text(file))


@lru_cache(maxsize=None)
def parsed(file: str) -> Any:
    """The fastavro-parsed schema of a bundled file."""
    return fastavro.parse_schema(schema_dict(file))
