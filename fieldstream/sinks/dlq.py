"""The dead-letter sink: original key and value bytes untouched, context in headers."""

from __future__ import annotations

import socket
from collections.abc import Sequence

from fieldstream.config.kafka import KafkaSettings
from fieldstream.ingest.records import DeadLetter
from fieldstream.sinks.topic import TopicPublisher

HEADER_PREFIX = "fieldstream."


def dead_letter_headers(dl: DeadLetter, worker: str) -> list[tuple[str, bytes]]:
    rec = dl.record
    context = {
        "topic": rec.topic,
        "partition": str(rec.partition),
        "offset": str(rec.offset),
        "timestamp": "" if rec.timestamp_ms is None else str(rec.timestamp_ms),
        "stage": dl.stage,
        "reason": dl.reason,
        "error.class": dl.error_class,
        "error.message": dl.message[:2000],
        "schema.id": "" if dl.schema_id is None else str(dl.schema_id),
        "worker": worker,
    }
    if dl.index is not None:
        context["batch.index"] = str(dl.index)
    # The record's own headers travel too, after ours.
    return [(HEADER_PREFIX + k, v.encode()) for k, v in context.items()] + list(rec.headers)


def parse_headers(headers: Sequence[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Our context headers of a dead letter, without the prefix."""
    return {
        k[len(HEADER_PREFIX):]: (v or b"").decode(errors="replace")
        for k, v in (headers or [])
        if k.startswith(HEADER_PREFIX)
    }


class DeadLetterSink(TopicPublisher):
    """Dead letters, acknowledged by the broker when `flush` returns."""

    def __init__(self, settings: KafkaSettings, topic: str, worker: str | None = None) -> None:
        # Dead letters keep their original bytes, whatever their size was.
        super().__init__("dlq", settings, topic, extra_config={"linger.ms": 5, "message.max.bytes": 4 * 1024 * 1024})
        self.worker = worker or socket.gethostname()

    async def write(self, batch: Sequence[DeadLetter]) -> None:
        if self._producer is None:
            await self.start()
        for dl in batch:
            self.send_raw(dl.record.key, dl.record.value, dead_letter_headers(dl, self.worker))
