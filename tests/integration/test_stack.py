"""The local stack: real Kafka (KRaft), registry and PostgreSQL, idempotent and self-healing."""

from __future__ import annotations

import os
import signal
import uuid

from confluent_kafka import Producer

from fieldstream.stack import manager
from fieldstream.stack.kafka import KafkaService
from fieldstream.topics import ensure_topics

from .harness import consume_all, wait_for


def _by_name(rows):
    return {r.name: r for r in rows}


def test_status_shows_every_service_and_kafka_version(stack_settings):
    rows = _by_name(manager.status(stack_settings))
    assert set(rows) == {"kafka", "registry", "postgres"}
    assert all(r.running and r.pid for r in rows.values()), rows
    major, minor, _ = (int(x) for x in rows["kafka"].version.split("."))
    assert (major, minor) >= (3, 7)
    assert rows["postgres"].version.startswith(("15", "16", "17"))


def test_up_twice_changes_nothing(stack_settings):
    before = {r.name: r.pid for r in manager.status(stack_settings)}
    manager.up(stack_settings)
    after = {r.name: r.pid for r in manager.status(stack_settings)}
    assert before == after


def test_killed_kafka_comes_back_with_its_data(stack_settings):
    topic = f"it-{uuid.uuid4().hex[:8]}.survivor"
    ensure_topics(stack_settings, {topic: 1})
    producer = Producer({**stack_settings.kafka.confluent_config(), "acks": "all"})
    producer.produce(topic, key=b"k", value=b"still here")
    assert producer.flush(30) == 0

    kafka = KafkaService(stack_settings.stack)
    pid = kafka.status().pid
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not kafka.status().running, 30, "kafka to die")

    manager.up(stack_settings)
    assert kafka.status().running and kafka.status().pid != pid
    values = [m.value() for m in consume_all(stack_settings, topic, expect=1, timeout_s=60)]
    assert values == [b"still here"]
