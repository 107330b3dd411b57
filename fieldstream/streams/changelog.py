"""Writes the state tables' changelog messages with confluent-kafka instead of Faust's producer.

Faust sends a table's changelog messages from its producer buffer, one awaited
aiokafka send each (~100 µs of Python apiece), and every Faust commit first
flushes that buffer whole: with 10,000 devices checkpointed a few thousand at a
time, commits took up to 76 s in the 2,000,000-reading benchmark, and the stream
waited. librdkafka batches, compresses and retries in C. The messages are the
same ones Faust would write (raw key and value, explicit partition), so Faust's
own recovery restores them into the table on assignment.

Durability is ours to track, since Faust's commit no longer waits for these
writes: `mark()` notes how many messages each partition had been sent, and
`reached(mark)` says whether all of those are settled (librdkafka reports
deliveries of one partition in order). A message the broker never took is
reported through `take_failed`, so its state is written again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict

from confluent_kafka import KafkaError, Message, Producer

from fieldstream import metrics
from fieldstream.config.kafka import KafkaSettings

log = logging.getLogger(__name__)

Mark = dict[tuple[str, int], int]  # (topic, partition) → messages sent to it so far


class ChangelogWriter:
    """One idempotent producer for every state table of the worker."""

    def __init__(self, kafka: KafkaSettings, linger_ms: int = 20) -> None:
        self._config = {**kafka.confluent_config(), "enable.idempotence": True, "acks": "all",
                        "linger.ms": linger_ms, "compression.type": "zstd"}
        self._producer_: Producer | None = None
        self._sent: dict[tuple[str, int], int] = defaultdict(int)
        self._settled: dict[tuple[str, int], int] = defaultdict(int)
        self._failed: dict[str, set[bytes]] = defaultdict(set)  # topic → keys to write again

    @property
    def _producer(self) -> Producer:
        # Made at the first write: every CLI command builds the app, and most never start a worker.
        if self._producer_ is None:
            self._producer_ = Producer(self._config)
        return self._producer_

    def send(self, topic: str, partition: int, key: bytes, value: bytes | None) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, partition, on_delivery=self._on_delivery)
                break
            except BufferError:  # librdkafka's queue is full: let deliveries drain it
                self._producer.poll(0.05)
        self._sent[(topic, partition)] += 1
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        topic, partition = msg.topic(), msg.partition()
        self._settled[(topic, partition)] += 1
        if err is not None:
            metrics.SINK_ERRORS.labels("changelog", "delivery").inc()
            self._failed[topic].add(msg.key())
            log.error("changelog: a state write to %s[%d] failed (%s); it is written again at the next "
                      "checkpoint, and offsets wait for it", topic, partition, err)

    def mark(self) -> Mark:
        return dict(self._sent)

    def reached(self, mark: Mark) -> bool:
        """Every message sent before `mark` was taken is settled (delivered, or failed and reported)."""
        if self._producer_ is not None:
            self._producer_.poll(0)
        settled = self._settled
        return all(settled[tp] >= n for tp, n in mark.items())

    def take_failed(self, topic: str) -> set[bytes]:
        return self._failed.pop(topic, set())

    async def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every message sent so far; returns how many are still undelivered.

        Polled from the event loop rather than flushed in a thread, so delivery reports (and
        the counts they update) are only ever served on the loop's thread.
        """
        if self._producer_ is None:
            return 0
        deadline = time.monotonic() + timeout_s
        while len(self._producer) and time.monotonic() < deadline:
            self._producer.poll(0)
            await asyncio.sleep(0.01)
        return len(self._producer)
