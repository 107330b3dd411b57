"""Hold Faust messages until every sink that buffers them has made them durable.

Faust commits an offset when the message's reference count drops to zero.
take_events() drops one reference after each batch; a message whose reading
sits in a buffering sink (Parquet) gets one more reference here, released
when that sink reports its partition durable past the message's offset.
"""

from __future__ import annotations

from collections import deque

from faust.types import TP, AppT, EventT
from faust.types.tuples import Message


class AckGate:
    def __init__(self, app: AppT) -> None:
        self.app = app
        self._held: dict[TP, deque[Message]] = {}

    def hold(self, events: list[EventT]) -> None:
        for event in events:
            message = event.message
            message.incref()
            self._held.setdefault(message.tp, deque()).append(message)

    def release(self, pending_low: dict[tuple[str, int], int]) -> int:
        """Ack held messages below each partition's lowest pending offset; returns how many."""
        released = 0
        for tp, queue in self._held.items():
            low = pending_low.get((tp.topic, tp.partition))
            while queue and (low is None or queue[0].offset < low):
                queue.popleft().ack(self.app.consumer)
                released += 1
        return released

    def forget(self, tps: set[TP]) -> None:
        """Revoked partitions: their held messages must never be acked by us."""
        for tp in tps:
            self._held.pop(tp, None)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._held.values())
