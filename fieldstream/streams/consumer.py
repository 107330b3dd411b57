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
"""

from __future__ import annotations

from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP


class AckedOnlyConsumer(Consumer):
    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if self._is_changelog_tp(tp):
            await super()._add_gap(tp, offset_from, offset_to)
