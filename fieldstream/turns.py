"""Long loops of a batch that let the event loop run in between.

A backlog batch is 1,000 messages (FIELDSTREAM_WORKER_BATCH_MAX), 20,000
readings when gateways send 20 per message: seconds of CPU in each stage. Done
in one go, Faust's commit timer, its fetcher and our own timers waited for all
of it (timers seen waking up 10 s late in the 2,000,000-reading benchmark).
Smaller batches would fix that at a price: 13 % fewer readings/s with 100
messages per batch, side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import TypeVar

T = TypeVar("T")

ITEMS_PER_TURN = 1000  # readings or aggregates: a few hundredths to a tenth of a second of work


async def in_turns(items: Iterable[T], per_turn: int = ITEMS_PER_TURN) -> AsyncIterator[T]:
    """Yield `items`, giving the event loop a turn after every `per_turn` of them."""
    for i, item in enumerate(items, 1):
        yield item
        if i % per_turn == 0:
            await asyncio.sleep(0)
