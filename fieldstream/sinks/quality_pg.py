"""Per-device data quality in PostgreSQL: each invalid or duplicate reading, once per source position.

Valid readings are counted by the readings sink (`devices.readings`, only rows actually
inserted). Here go the readings that did not make it: keyed by where they were read
(topic, partition, offset, index in the message), so a batch replayed after a crash
counts nothing twice. The `device_quality` view puts the three counts side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from fieldstream.sinks.pg import PostgresWriter, unavailable_on_transient

DUPLICATE = "duplicate"


class QualityEvent(NamedTuple):
    device_id: str
    device_type: str
    reason: str  # a validation reason, or "duplicate"
    event_time: datetime | None
    topic: str
    partition: int
    offset: int
    index: int


COLUMNS = ("device_id", "device_type", "reason", "event_time", "kafka_topic", "kafka_partition", "kafka_offset",
           "idx")


class QualityTableSink(PostgresWriter):
    name = "quality_pg"

    async def write(self, events: Sequence[QualityEvent]) -> None:
        if not events:
            return
        pool = await self.pool()
        with unavailable_on_transient():
            async with pool.acquire() as conn:
                await conn.executemany(
                    f"INSERT INTO reading_rejections ({', '.join(COLUMNS)}) "
                    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                    "ON CONFLICT (kafka_topic, kafka_partition, kafka_offset, idx) DO NOTHING",
                    list(events),
                )
