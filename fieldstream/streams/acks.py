"""Hold Faust messages until every part that buffers their effects has made them durable.

Faust commits an offset when the message's reference count drops to zero.
take_events() drops one reference after each batch. The ingest agent takes
one more for every message when its batch starts (`hold`), so a cancelled or
failed batch is never committed by take_events. The messages are acked
(`release`) once the buffering parts (Parquet files, window and detector
checkpoints) report their partition durable past the message's offset; the
agent never releases while a batch is in flight, since its offsets are not
yet covered by what the buffering parts report.
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

    def drop(self, events: list[EventT]) -> None:
        """A batch that will not be processed here: never ack it; the next owner reads it again."""
        dropped = {id(e.message) for e in events}
        for tp in {e.message.tp for e in events}:
            queue = self._held.get(tp)
            if queue:
                self._held[tp] = deque(m for m in queue if id(m) not in dropped)

    def release(self, pending_low: dict[tuple[str, int], int]) -> int:
        """Ack held messages below each partition's lowest pending offset; returns how many.

        A dropped or forgotten message blocks nothing: Faust commits only contiguous acks,
        so offsets after it stay uncommitted anyway until it is read again.
        """
        released = 0
        for tp, queue in self._held.items():
            low = pending_low.get((tp.topic, tp.partition))
            while queue and (low is None or queue[0].offset < low):
                queue.popleft().ack(self.app.consumer)
                released += 1
        return released

    def forget(self, tps: set[TP]) -> None:
        """Partitions taken from this worker: their messages must never be acked by us."""
        for tp in tps:
            self._held.pop(tp, None)

    @property
    def held(self) -> int:
        return sum(len(q) for q in self._held.values())
