"""Kafka's side of `fieldstream status`: the worker group's lag, members and the topics."""

from __future__ import annotations

import logging
import uuid

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, MemberDescription

from fieldstream.config import Settings
from fieldstream.ops.status import GroupMember, GroupState, PartitionLag
from fieldstream.topics import describe_topics, watermark_offsets

# librdkafka logs every failed connection attempt to stderr; status reports the
# failure itself in one line, so its logs go to a logger nobody prints (see -v in
# the command for debugging).
_rdkafka_log = logging.getLogger("fieldstream.ops.rdkafka")
_rdkafka_log.addHandler(logging.NullHandler())
_rdkafka_log.propagate = False

OFFSET_UNSET = -1001  # librdkafka's OFFSET_INVALID: nothing committed


def _conf(settings: Settings) -> dict[str, object]:
    return {**settings.kafka.confluent_config(), "logger": _rdkafka_log}


def topics(settings: Settings, timeout_s: float) -> dict[str, int]:
    """Topic → partition count. describe_topics builds its own client, which would log to
    stderr while the broker is down: a quiet probe first makes a dead broker fail here."""
    AdminClient(_conf(settings)).list_topics(timeout=timeout_s)
    return describe_topics(settings, timeout_s=timeout_s)


def group_state(settings: Settings, timeout_s: float) -> GroupState:
    """Lag per partition of the readings topic for the worker group, and who holds what."""
    group = settings.worker.app_id
    topic = settings.topics.readings
    admin = AdminClient(_conf(settings))
    # Metadata of every topic, not list_topics(topic=...): asking for one topic by name makes
    # a broker with auto.create.topics.enable create it, and status must change nothing.
    metadata = admin.list_topics(timeout=timeout_s).topics.get(topic)
    if metadata is None or metadata.error is not None:
        partitions: list[int] = []
    else:
        partitions = sorted(metadata.partitions)

    description = admin.describe_consumer_groups([group], request_timeout=timeout_s)[group].result()
    members = [_member(m, topic) for m in description.members]
    owners = {p: m.name for m in members for p in m.partitions}

    committed: dict[int, int | None] = {p: None for p in partitions}
    if partitions:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
        answer = admin.list_consumer_group_offsets([request], request_timeout=timeout_s)[group].result()
        for tp in answer.topic_partitions:
            if tp.error is None and tp.offset != OFFSET_UNSET and tp.offset >= 0:
                committed[tp.partition] = tp.offset

    rows = []
    consumer = Consumer({**_conf(settings), "group.id": f"{group}-status-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False})
    try:
        for p in partitions:
            low, high = watermark_offsets(consumer, TopicPartition(topic, p), timeout_s)
            done = committed[p]
            lag = max(0, high - done) if done is not None else max(0, high - low)
            rows.append(PartitionLag(p, done, low, high, lag, owners.get(p)))
    finally:
        consumer.close()
    state = getattr(description.state, "name", str(description.state))
    return GroupState(group, topic, state, members, rows)


def _member(m: MemberDescription, topic: str) -> GroupMember:
    assigned = m.assignment.topic_partitions if m.assignment else []
    mine = sorted(tp.partition for tp in assigned if tp.topic == topic)
    return GroupMember(m.member_id, m.client_id, m.host.lstrip("/"), mine, len(assigned) - len(mine))

