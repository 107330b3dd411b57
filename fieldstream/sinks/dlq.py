"""The dead-letter sink: original key and value bytes untouched, context in headers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Sequence

from confluent_kafka import KafkaError, Message, Producer

from fieldstream.config.kafka import KafkaSettings
from fieldstream.errors import SinkUnavailable
from fieldstream.ingest.records import DeadLetter

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


class DeadLetterSink:
    name = "dlq"

    def __init__(self, settings: KafkaSettings, topic: str, worker: str | None = None) -> None:
        self.topic = topic
        self.worker = worker or socket.gethostname()
        self._settings = settings
        self._producer: Producer | None = None
        self._errors: list[str] = []
        self.sent = 0

    async def start(self) -> None:
        self._producer = Producer({
            **self._settings.confluent_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "message.max.bytes": 4 * 1024 * 1024,
        })

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    async def write(self, batch: Sequence[DeadLetter]) -> None:
        if self._producer is None:
            await self.start()
        assert self._producer is not None
        for dl in batch:
            self._producer.produce(self.topic, key=dl.record.key, value=dl.record.value,
                                   headers=dead_letter_headers(dl, self.worker), on_delivery=self._on_delivery)
            self.sent += 1
        self._producer.poll(0)

    async def flush(self) -> None:
        """Return once the broker acknowledged every dead letter sent so far."""
        if self._producer is None:
            return
        remaining = await asyncio.to_thread(self._producer.flush, 30)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise SinkUnavailable(f"dead-letter topic {self.topic}: {remaining} undelivered; {errors[:3]}")

    async def close(self) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, 30)
            self._producer = None
