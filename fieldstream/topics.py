"""Creating the topics fieldstream reads and writes, with their partition counts."""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from fieldstream.config import Settings

log = logging.getLogger(__name__)


def topic_plan(settings: Settings) -> dict[str, int]:
    """Every topic and its partition count. Outputs keep the readings' partitioning (keyed by device)."""
    t = settings.topics
    return {name: t.partitions for name in (t.readings, t.windows, t.alerts, t.dlq, t.late)}


def ensure_topics(settings: Settings, plan: dict[str, int] | None = None, timeout_s: float = 30) -> list[str]:
    """Create missing topics; returns the names created. Existing topics are left as they are."""
    plan = plan or topic_plan(settings)
    admin = AdminClient(settings.kafka.confluent_config())
    metadata = admin.list_topics(timeout=timeout_s).topics
    existing = set(metadata)
    for name in existing & set(plan):
        have = len(metadata[name].partitions)
        if have < plan[name]:
            log.warning("topic %s has %d partitions, fewer than the %d configured: it limits how many "
                        "workers share the load (add partitions with kafka-topics --alter)", name, have, plan[name])
    missing = [
        NewTopic(name, num_partitions=partitions, replication_factor=settings.topics.replication_factor)
        for name, partitions in plan.items() if name not in existing
    ]
    created = []
    if missing:
        for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
            try:
                future.result()
                created.append(name)
            except KafkaException as e:
                if e.args[0].code() != 36:  # TOPIC_ALREADY_EXISTS: another worker won the race
                    raise
    if created:
        wait_for_leaders(admin, created, timeout_s)
    for name in created:
        log.info("created topic %s (%d partitions)", name, plan[name])
    return created


def wait_for_leaders(admin: AdminClient, topics: list[str], timeout_s: float) -> None:
    """Block until every partition of `topics` has a leader.

    create_topics returns when the controller has the topics; the broker may need a
    moment more to lead their partitions, and reads or offset look-ups in that moment
    fail with NOT_LEADER_FOR_PARTITION.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s).topics
        waiting = [name for name in topics
                   if name not in metadata or metadata[name].error is not None
                   or any(p.leader < 0 or p.error is not None for p in metadata[name].partitions.values())]
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics without a partition leader after {timeout_s:.0f}s: {', '.join(waiting)}")
        time.sleep(0.2)


def describe_topics(settings: Settings, timeout_s: float = 10) -> dict[str, int]:
    """Topic name → partition count, for every topic the broker has (internal ones excluded)."""
    admin = AdminClient(settings.kafka.confluent_config())
    md = admin.list_topics(timeout=timeout_s)
    return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}


# Errors of a partition between leaders (just created, or its broker restarting): worth a retry.
_BETWEEN_LEADERS = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._TIMED_OUT}


def watermark_offsets(consumer: Consumer, partition: TopicPartition, timeout_s: float = 10,
                      attempts: int = 20) -> tuple[int, int]:
    """Low and high watermark of `partition`, retried while it is between leaders."""
    for attempt in range(attempts):
        try:
            return consumer.get_watermark_offsets(partition, timeout=timeout_s)
        except KafkaException as e:
            if e.args[0].code() not in _BETWEEN_LEADERS or attempt == attempts - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")
