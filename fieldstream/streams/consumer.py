"""Faust's aiokafka consumer, committing only what was acknowledged.

When Faust's fetcher sees a partition's offsets jump (a record it hands over
after a seek: its own seek to the committed offsets on every rebalance, or the
ack gate's seek back over a hole), it records the offsets in between as a
"gap" and counts them as acknowledged, so its next commit goes past records
nobody processed. That is meant for compacted and transactional topics; it was
seen here as readings missing from every sink with their offsets committed (2 or
3 of 2,400 in the scaling test). The readings topic holds every offset, and the
ack gate (streams/acks.py) reads any jump again, so for it only acknowledged
records are committed. Changelog topics keep Faust's behaviour.

Faust also asks the broker to hold every fetch up to 1.5 s when it has no data.
aiokafka keeps one fetch in flight per broker and leaves out partitions whose
records are still buffered, so a fetch of only the partitions without new data
(Faust's one-partition leader topic, always empty) holds back the busy ones for
those 1.5 s: at a steady 1,400 readings/s the stream went in 1.7 s steps
(readings waited 1.3 s on average). The worker's fetch wait is its own setting.
So is the least a fetch gathers (aiokafka's 1 byte by default): more lets the broker answer
a live stream of small messages in fewer, fuller fetches (a live worker used 15 % less CPU
with 64 KiB), but slowed two workers catching up on a backlog by 7-11 % (docs/BENCHMARKS.md,
"A live worker, fetches that gather").
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread, Consumer
from faust.types import TP


class PromptFetchThread(AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # Read by the fetcher aiokafka creates when the consumer starts (no public setter).
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms  # FieldstreamApp's worker settings
        consumer._fetch_min_bytes = self.app.fetch_min_bytes
        return consumer


class AckedOnlyConsumer(Consumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return PromptFetchThread(self, loop=self.loop, beacon=self.beacon)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if self._is_changelog_tp(tp):
            await super()._add_gap(tp, offset_from, offset_to)
