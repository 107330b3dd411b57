"""Creating the topics fieldstream reads and writes, with their partition counts."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException
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
    for name in created:
        log.info("created topic %s (%d partitions)", name, plan[name])
    return created


def describe_topics(settings: Settings, timeout_s: float = 10) -> dict[str, int]:
    """Topic name → partition count, for every topic the broker has (internal ones excluded)."""
    admin = AdminClient(settings.kafka.confluent_config())
    md = admin.list_topics(timeout=timeout_s)
    return {name: len(t.partitions) for name, t in md.topics.items() if not name.startswith("__")}
