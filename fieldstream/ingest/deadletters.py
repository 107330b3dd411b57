"""Reading, summarising and replaying the dead-letter topic: what `fieldstream dlq` runs (no Faust).

The reader is not a member of any processing group: it assigns every
partition itself under a throwaway group id, commits nothing, and stops at
each partition's end as it was when it started, so a busy topic cannot keep
it reading forever.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from fieldstream.config.kafka import KafkaSettings
from fieldstream.errors import FieldstreamError
from fieldstream.sinks.dlq import HEADER_PREFIX, parse_headers
from fieldstream.topics import watermark_offsets

#: Marks a record re-injected from the dead-letter topic (so a second failure shows it was a replay).
REPLAYED_HEADER = HEADER_PREFIX + "replayed"


class DeadLetterTopicError(FieldstreamError):
    """The dead-letter topic (or the replay target) cannot be read or written."""

    reason = "dlq_topic"


@dataclass(frozen=True, slots=True)
class DeadLetterRecord:
    """One message of the dead-letter topic: where it sits, its bytes, and the context headers."""

    partition: int
    offset: int
    timestamp_ms: int | None  # when it was dead-lettered
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...]
    context: dict[str, str]  # our headers, without the prefix: stage, reason, topic, offset, ...

    @property
    def stage(self) -> str:
        return self.context.get("stage") or "unknown"

    @property
    def reason(self) -> str:
        return self.context.get("reason") or "unknown"

    def record_headers(self) -> list[tuple[str, bytes | None]]:
        """The original record's own headers: the dead-letter sink appends them after its context."""
        return [(k, v) for k, v in self.headers if not k.startswith(HEADER_PREFIX)]

    @classmethod
    def from_message(cls, msg: Message) -> DeadLetterRecord:
        kind, ts = msg.timestamp()
        headers = tuple(msg.headers() or ())
        return cls(msg.partition(), msg.offset(), ts if kind != TIMESTAMP_NOT_AVAILABLE else None, msg.key(),
                   msg.value(), headers, parse_headers(headers))


class DeadLetterReader:
    """Every dead letter from the beginning up to the partition ends seen on opening."""

    def __init__(self, kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> None:
        self.topic = topic
        self.timeout_s = timeout_s
        self._consumer = Consumer({
            **kafka.confluent_config(),
            "group.id": f"fieldstream-dlq-reader-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": True,
        })
        try:
            self.starts, self.ends = self._bounds()
        except BaseException:
            self._consumer.close()
            raise

    def _bounds(self) -> tuple[dict[int, int], dict[int, int]]:
        try:
            meta = self._consumer.list_topics(self.topic, timeout=self.timeout_s).topics.get(self.topic)
        except KafkaException as e:
            raise DeadLetterTopicError(f"cannot reach Kafka to read {self.topic}: {e}") from e
        if meta is None or meta.error is not None or not meta.partitions:
            raise DeadLetterTopicError(f"topic {self.topic} does not exist"
                                       + (f" ({meta.error})" if meta is not None and meta.error else ""))
        starts, ends = {}, {}
        for p in sorted(meta.partitions):
            starts[p], ends[p] = watermark_offsets(self._consumer, TopicPartition(self.topic, p), self.timeout_s)
        return starts, ends

    @property
    def total(self) -> int:
        """How many dead letters the topic held on opening (what iterating yields, unless compacted)."""
        return sum(self.ends[p] - self.starts[p] for p in self.ends)

    @property
    def partitions(self) -> int:
        return len(self.ends)

    def __iter__(self) -> Iterator[DeadLetterRecord]:
        remaining = {p for p in self.ends if self.ends[p] > self.starts[p]}
        if not remaining:
            return
        self._consumer.assign([TopicPartition(self.topic, p, self.starts[p]) for p in sorted(remaining)])
        idle = 0.0
        while remaining:
            msg = self._consumer.poll(0.5)
            if msg is None:
                idle += 0.5
                if idle >= self.timeout_s:
                    raise DeadLetterTopicError(f"no message from {self.topic} for {self.timeout_s:.0f}s with "
                                               f"partitions {sorted(remaining)} unfinished")
                continue
            idle = 0.0
            err = msg.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    remaining.discard(msg.partition())
                elif err.fatal() or not err.retriable():
                    raise DeadLetterTopicError(f"reading {self.topic}: {err}")
                continue
            p = msg.partition()
            if msg.offset() >= self.ends[p]:  # written after we opened
                remaining.discard(p)
                continue
            yield DeadLetterRecord.from_message(msg)
            if msg.offset() >= self.ends[p] - 1:
                remaining.discard(p)

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> DeadLetterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- inspect ---------------------------------------------------------------------------------------------


@dataclass
class GroupSummary:
    """The dead letters of one (stage, reason)."""

    stage: str
    reason: str
    count: int = 0
    first: DeadLetterRecord | None = None  # the earliest dead-lettered (then lowest partition/offset)
    last: DeadLetterRecord | None = None
    offsets: dict[int, list[int]] = field(default_factory=dict)  # partition → [first, last] offset

    def add(self, rec: DeadLetterRecord) -> None:
        self.count += 1
        order = (rec.timestamp_ms or 0, rec.partition, rec.offset)
        if self.first is None or order < (self.first.timestamp_ms or 0, self.first.partition, self.first.offset):
            self.first = rec
        if self.last is None or order > (self.last.timestamp_ms or 0, self.last.partition, self.last.offset):
            self.last = rec
        span = self.offsets.setdefault(rec.partition, [rec.offset, rec.offset])
        span[0], span[1] = min(span[0], rec.offset), max(span[1], rec.offset)


def summarize(records: Iterable[DeadLetterRecord]) -> list[GroupSummary]:
    """Dead letters grouped by (stage, reason), largest group first."""
    groups: dict[tuple[str, str], GroupSummary] = {}
    for rec in records:
        key = (rec.stage, rec.reason)
        group = groups.get(key)
        if group is None:
            group = groups[key] = GroupSummary(*key)
        group.add(rec)
    return sorted(groups.values(), key=lambda g: (-g.count, g.stage, g.reason))


def iso_ms(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")


def show_bytes(data: bytes | None, limit: int = 48) -> dict[str, Any]:
    """A JSON-safe view of key or value bytes: text when it is text, else hex; length always."""
    if data is None:
        return {"null": True}
    head = data[:limit]
    try:
        shown: dict[str, Any] = {"text": head.decode()}
    except UnicodeDecodeError:
        shown = {"hex": head.hex()}
    return {"length": len(data), **shown, "truncated": len(data) > limit}


def record_view(rec: DeadLetterRecord) -> dict[str, Any]:
    """One dead letter as JSON-safe data: where, when, key/value preview, the context headers."""
    return {
        "partition": rec.partition,
        "offset": rec.offset,
        "dead_lettered_at": iso_ms(rec.timestamp_ms),
        "key": show_bytes(rec.key),
        "value": show_bytes(rec.value),
        "context": rec.context,
    }


def position(rec: DeadLetterRecord | None) -> dict[str, Any] | None:
    if rec is None:
        return None
    return {"partition": rec.partition, "offset": rec.offset, "dead_lettered_at": iso_ms(rec.timestamp_ms)}


def summary_data(topic: str, partitions: int, groups: list[GroupSummary]) -> dict[str, Any]:
    return {
        "topic": topic,
        "partitions": partitions,
        "total": sum(g.count for g in groups),
        "groups": [
            {
                "stage": g.stage,
                "reason": g.reason,
                "count": g.count,
                "first": position(g.first),
                "last": position(g.last),
                "offsets": {str(p): span for p, span in sorted(g.offsets.items())},
                "example": record_view(g.first) if g.first is not None else None,
            }
            for g in groups
        ],
    }


# --- replay ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayFilter:
    """Which dead letters to replay; empty sets mean any. Times are when the record was dead-lettered."""

    stages: frozenset[str] = frozenset()
    reasons: frozenset[str] = frozenset()
    since_ms: int | None = None  # inclusive
    until_ms: int | None = None  # exclusive

    def matches(self, rec: DeadLetterRecord) -> bool:
        if self.stages and rec.stage not in self.stages:
            return False
        if self.reasons and rec.reason not in self.reasons:
            return False
        ts = rec.timestamp_ms
        if self.since_ms is not None and (ts is None or ts < self.since_ms):
            return False
        return not (self.until_ms is not None and (ts is None or ts >= self.until_ms))


@dataclass
class ReplayResult:
    scanned: int = 0
    matched: int = 0
    produced: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    by_group: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def complete(self) -> bool:
        return self.failed == 0 and self.delivered == self.produced


def replay_headers(rec: DeadLetterRecord) -> list[tuple[str, bytes | None]]:
    """The record's own headers, without our context, marked as replayed."""
    return [(k, v) for k, v in rec.record_headers() if k != REPLAYED_HEADER] + [(REPLAYED_HEADER, b"1")]


def target_partitions(kafka: KafkaSettings, topic: str, timeout_s: float = 30.0) -> int:
    """Partitions of the replay target; it must exist (a producer's metadata request could create it)."""
    from confluent_kafka.admin import AdminClient

    try:
        meta = AdminClient(kafka.confluent_config()).list_topics(timeout=timeout_s).topics.get(topic)
    except KafkaException as e:
        raise DeadLetterTopicError(f"cannot reach Kafka to check {topic}: {e}") from e
    if meta is None or meta.error is not None:
        raise DeadLetterTopicError(f"replay target {topic} does not exist")
    return len(meta.partitions)


class Replayer:
    """Re-injects dead letters into a topic: original key and value bytes, delivery confirmed."""

    def __init__(self, kafka: KafkaSettings, target: str, flush_timeout_s: float = 60.0) -> None:
        self.target = target
        self.flush_timeout_s = flush_timeout_s
        self.partitions = target_partitions(kafka, target)
        self.result = ReplayResult()
        self._producer = Producer({
            **kafka.confluent_config(),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "message.max.bytes": 4 * 1024 * 1024,  # as the dead-letter sink: what it could write, we resend
        })

    def _partition(self, rec: DeadLetterRecord) -> int | None:
        """The record's original partition when going back to its own topic.

        The producer that wrote it may partition keys differently from librdkafka
        (Java and aiokafka use murmur2, librdkafka CRC32), and per-device order,
        dedup and windows rely on a device staying on its partition.
        """
        ctx = rec.context
        original = ctx.get("partition", "")
        if ctx.get("topic") == self.target and original.isdigit() and int(original) < self.partitions:
            return int(original)
        return None

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            self.result.delivered += 1
        else:
            self.result.failed += 1
            if len(self.result.errors) < 5:
                self.result.errors.append(str(err))

    def send(self, rec: DeadLetterRecord) -> None:
        kwargs: dict[str, Any] = {"key": rec.key, "value": rec.value, "headers": replay_headers(rec),
                                  "on_delivery": self._on_delivery}
        partition = self._partition(rec)
        if partition is not None:
            kwargs["partition"] = partition
        while True:
            try:
                self._producer.produce(self.target, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.1)  # local queue full: let deliveries drain
        self.result.produced += 1
        self._producer.poll(0)

    def flush(self) -> None:
        """Wait for every delivery report; what is still in flight after the timeout counts as failed."""
        remaining = self._producer.flush(self.flush_timeout_s)
        if remaining:
            self.result.failed += remaining
            self.result.errors.append(f"{remaining} not confirmed within {self.flush_timeout_s:.0f}s")


Progress = Callable[[int], None]


def replay(reader: DeadLetterReader, flt: ReplayFilter, replayer: Replayer | None, *, limit: int | None = None,
           progress: Progress | None = None) -> ReplayResult:
    """Send the dead letters `flt` selects (at most `limit`) through `replayer`; None is a dry run.

    Returns after every delivery is confirmed (or counted as failed).
    """
    result = replayer.result if replayer is not None else ReplayResult()
    try:
        for rec in reader:
            result.scanned += 1
            if progress is not None:
                progress(1)
            if not flt.matches(rec):
                continue
            result.matched += 1
            result.by_group[(rec.stage, rec.reason)] += 1
            if replayer is not None:
                replayer.send(rec)
            if limit is not None and result.matched >= limit:
                break
    finally:
        if replayer is not None:
            replayer.flush()
    return result
