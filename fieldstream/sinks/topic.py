"""Publishing fieldstream's own records (window aggregates, alerts, late data) to Kafka.

Avro records go through confluent-kafka's AvroSerializer with a bundled schema
registered under the topic's subject; `flush` returns once the broker has
acknowledged everything sent so far.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from fieldstream.config.kafka import KafkaSettings
from fieldstream.config.registry import RegistrySettings
from fieldstream.errors import SinkUnavailable
from fieldstream.schemas.files import schema_text


class TopicPublisher:
    """Keyed messages to one topic, durable (acks=all) once `flush` returns."""

    def __init__(self, name: str, kafka: KafkaSettings, topic: str) -> None:
        self.name = name
        self.topic = topic
        self._kafka = kafka
        self._producer: Producer | None = None
        self._errors: list[str] = []
        self.sent = 0

    async def start(self) -> None:
        self._producer = Producer({
            **self._kafka.confluent_config(), "enable.idempotence": True, "acks": "all", "linger.ms": 10,
            "compression.type": "zstd", "partitioner": "murmur2_random",
        })

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._errors.append(str(err))

    def send_raw(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | None = None) -> None:
        assert self._producer is not None, "start() first"
        while True:
            try:
                self._producer.produce(self.topic, key=key, value=value, headers=headers,
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.05)
        self.sent += 1
        self._producer.poll(0)

    async def flush(self) -> None:
        if self._producer is None:
            return
        remaining = await asyncio.to_thread(self._producer.flush, 30)
        if remaining or self._errors:
            errors, self._errors = self._errors, []
            raise SinkUnavailable(f"topic {self.topic}: {remaining} undelivered; {errors[:3]}")

    async def close(self) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, 30)
            self._producer = None


class AvroPublisher(TopicPublisher):
    """Records serialized with a bundled schema (looked up, not registered: `schemas register` does that)."""

    def __init__(self, name: str, kafka: KafkaSettings, registry: RegistrySettings, topic: str,
                 schema_file: str, key_field: str = "device_id") -> None:
        super().__init__(name, kafka, topic)
        self._registry = registry
        self._schema_file = schema_file
        self._key_field = key_field
        self._serializer: AvroSerializer | None = None
        self._ctx = SerializationContext(topic, MessageField.VALUE)

    async def start(self) -> None:
        await super().start()
        client = SchemaRegistryClient(self._registry.client_config())
        self._serializer = AvroSerializer(client, schema_text(self._schema_file),
                                          conf={"auto.register.schemas": True, "normalize.schemas": False})

    def send(self, records: Iterable[dict[str, Any]]) -> int:
        assert self._serializer is not None, "start() first"
        n = 0
        for record in records:
            value = self._serializer(record, self._ctx)
            self.send_raw(str(record[self._key_field]).encode(), value)
            n += 1
        return n

    async def publish(self, records: Sequence[dict[str, Any]]) -> None:
        """Send and wait for acknowledgement; SinkUnavailable if the broker did not take them."""
        try:
            await asyncio.to_thread(self.send, records)
        except Exception as e:  # noqa: BLE001 - registry or broker trouble is transient here
            if isinstance(e, SinkUnavailable):
                raise
            raise SinkUnavailable(f"{self.name}: {type(e).__name__}: {e}") from e
        await self.flush()
