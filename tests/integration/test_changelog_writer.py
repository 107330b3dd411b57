"""The state tables' changelog writer against the real broker: where messages land, and when
a checkpoint may count as durable."""

from __future__ import annotations

import asyncio
import uuid

from confluent_kafka import Consumer, TopicPartition

from fieldstream.partitioning import device_partition
from fieldstream.streams.changelog import ChangelogWriter
from fieldstream.topics import ensure_topics

PARTITIONS = 3


def read_all(settings, topic: str, expected: int) -> list[tuple[int, bytes, bytes | None]]:
    consumer = Consumer({**settings.kafka.confluent_config(), "group.id": f"t-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
    found: list[tuple[int, bytes, bytes | None]] = []
    try:
        for _ in range(60):
            for m in consumer.consume(100, timeout=0.5):
                assert m.error() is None, m.error()
                found.append((m.partition(), m.key(), m.value()))
            if len(found) >= expected:
                break
    finally:
        consumer.close()
    return found


def test_states_land_on_their_devices_partition_and_a_mark_is_reached_once_acknowledged(stack_settings):
    topic = f"t-{uuid.uuid4().hex[:8]}-window-state-changelog"
    ensure_topics(stack_settings, {topic: PARTITIONS})
    writer = ChangelogWriter(stack_settings.kafka)
    devices = [f"dev-{i}" for i in range(30)]
    for d in devices:
        writer.send(topic, device_partition(d, PARTITIONS), d.encode(), f"state of {d}".encode())
    writer.send(topic, device_partition("dev-0", PARTITIONS), b"dev-0", None)  # a tombstone
    mark = writer.mark()
    assert sum(mark.values()) == len(devices) + 1

    assert asyncio.run(writer.flush()) == 0
    assert writer.reached(mark)
    assert writer.take_failed(topic) == set()

    found = read_all(stack_settings, topic, len(devices) + 1)
    assert len(found) == len(devices) + 1
    for partition, key, value in found:
        assert partition == device_partition(key.decode(), PARTITIONS)
        assert value is None or value == b"state of " + key
    assert [v for _, k, v in found if k == b"dev-0"] == [b"state of dev-0", None]


def test_a_write_the_broker_refuses_settles_as_failed_and_names_its_key(stack_settings):
    topic = f"t-{uuid.uuid4().hex[:8]}-detector-state-changelog"
    ensure_topics(stack_settings, {topic: PARTITIONS})
    writer = ChangelogWriter(stack_settings.kafka)
    # Sent before the new producer has the topic's metadata, so it fails on delivery (as a
    # write the broker never took does), not at produce().
    writer.send(topic, PARTITIONS + 5, b"lost", b"no such partition")
    writer.send(topic, 0, b"kept", b"ok")
    mark = writer.mark()
    asyncio.run(writer.flush())
    assert writer.reached(mark), "a refused write still settles: the checkpoint must not wait forever"
    assert writer.take_failed(topic) == {b"lost"}
    assert writer.take_failed(topic) == set(), "each loss is reported once"
