"""Real-Kafka helpers for the device-side integration tests: uuid topics, schemas, reading a topic back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from fieldstream.config import Settings
from fieldstream.schemas.files import schema_text, subject_for
from fieldstream.topics import wait_for_leaders


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@contextmanager
def fresh_topic(settings: Settings, prefix: str, partitions: int = 3,
                schemas: tuple[str, ...] = ()) -> Iterator[str]:
    """A new topic named `prefix`-uuid, with `schemas` registered (in order) under its value subject."""
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    admin = AdminClient(settings.kafka.confluent_config())
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        future.result(30)
    wait_for_leaders(admin, [name], 30)
    registry = SchemaRegistryClient(settings.registry.client_config())
    for file in schemas:
        registry.register_schema(subject_for(name), Schema(schema_text(file), "AVRO"))
    try:
        yield name
    finally:
        for future in admin.delete_topics([name]).values():
            future.result(30)
        try:  # also when a producer registered schemas itself (--auto-register)
            registry.delete_subject(subject_for(name))
        except SchemaRegistryError as e:
            if e.http_status_code != 404:
                raise


def read_all(settings: Settings, topic: str, timeout_s: float = 60.0) -> list[Message]:
    """Every message in the topic now, in partition order (up to each partition's end offset)."""
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": f"test-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        remaining = sum(ends.values())
        while remaining > 0:
            assert time.monotonic() < deadline, f"{remaining} messages of {topic} not read in {timeout_s}s"
            for msg in consumer.consume(10_000, 1.0):
                if msg.error():
                    raise RuntimeError(str(msg.error()))
                out.append(Message(msg.partition(), msg.offset(), msg.key(), msg.value()))
                remaining -= 1
        return out
    finally:
        consumer.close()
