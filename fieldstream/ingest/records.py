"""A consumed Kafka record as the pipeline sees it, independent of the consumer library."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(slots=True)
class DeadLetter:
    """A record that cannot be processed, with why and where."""

    record: RawRecord
    stage: str  # decode | validate | sink
    reason: str  # short machine-readable reason, e.g. bad_magic, out_of_range
    error_class: str
    message: str
    schema_id: int | None = None
    index: int | None = None  # which reading of a ReadingBatch, when the record holds several
