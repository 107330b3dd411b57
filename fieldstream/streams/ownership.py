"""Which readings partitions this worker owns, and a fence that keeps batches out of rebalances.

Faust's eager rebalance revokes every partition, then assigns the new set. A
batch taken before the revocation may hold records of a partition that moves
to another worker; processing it after we forgot that partition would write
Parquet files and window/detector state that now belong to the new owner (seen
in the scaling test as Parquet rows written twice, or a file of the new owner
overwritten by a shorter one). So:

- the revocation waits for the batch in flight (and the stages' timer work) to
  finish, and none starts until the new assignment is known (`block` ...
  `assigned`);
- each batch is stamped with the assignment generation it was taken in, and
  keeps only the records of partitions that were ours then and still are.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from faust.types import TP, EventT

log = logging.getLogger(__name__)

# How often a revocation that waits for a slow batch (a sink being retried) says so.
WAIT_REPORT_S = 15.0


class Ownership:
    """`locks`: the batch lock, then one per stage (its timer work: closing windows, offline checks).
    A revocation takes them all, in that order, and holds them until the assignment."""

    def __init__(self, locks: Sequence[asyncio.Lock]) -> None:
        self.locks = tuple(locks)
        self.generation = 0
        self._since: dict[TP, int] = {}  # partition → generation it became ours
        self._held: list[asyncio.Lock] = []

    @property
    def owned(self) -> set[TP]:
        return set(self._since)

    def split(self, events: Sequence[EventT], taken_in: int) -> tuple[list[EventT], list[EventT]]:
        """(events of partitions ours since generation `taken_in` or before and still ours, the rest)."""
        since = self._since
        owned: list[EventT] = []
        strays: list[EventT] = []
        for e in events:
            (owned if since.get(e.message.tp, taken_in + 1) <= taken_in else strays).append(e)
        return owned, strays

    async def block(self) -> None:
        """Wait for the batch and the stage timers in flight, then let none start until `assigned`."""
        if self._held:
            return  # revoked twice without an assignment between: already blocking
        for lock in self.locks:
            waited = 0.0
            while True:
                try:
                    await asyncio.wait_for(lock.acquire(), WAIT_REPORT_S)
                    break
                except TimeoutError:
                    waited += WAIT_REPORT_S
                    log.warning("rebalance: waiting %.0fs for work in flight to become durable "
                                "(a sink is being retried)", waited)
            self._held.append(lock)

    def assigned(self, mine: set[TP]) -> None:
        """The new assignment is in place: record it and let work run again."""
        self.generation += 1
        self._since = {tp: self._since.get(tp, self.generation) for tp in mine}
        self.unblock()

    def unblock(self) -> None:
        """Release what `block` holds (the assignment is known, or the worker is stopping)."""
        held, self._held = self._held, []
        for lock in reversed(held):
            lock.release()
