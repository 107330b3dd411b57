"""Garbage-collector settings for a worker that holds the state of thousands of devices.

CPython's full (generation 2) collection walks every tracked object. With 10,000
devices' window and detector state (millions of small objects) each one took
0.4-0.5 s and ran about every 5 s under load (measured with `gc.callbacks`): a
stall of the whole stream and close to a tenth of the CPU. Device state is freed
by reference counting when windows close; reference cycles (asyncio futures,
tracebacks) are short-lived, so the young generations, collected often, free
them. So the objects alive at start-up are frozen out of collections, young
collections run every `young` allocations, and full ones only every
`full_every` middle-generation collections.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def tune_gc(young: int, full_every: int) -> None:
    """Call before the first batch. No forced collection here: once in CI a worker that
    collected here while its sinks were starting crashed 6 ms later on a PostgreSQL
    connection asyncpg found busy ("another operation is in progress"); freezing alone
    runs no finalisers."""
    gc.freeze()  # imports, the app, its services: alive for good, never worth walking again
    gc.set_threshold(young, 10, full_every)
    log.info("gc: %d objects frozen; young collections every %d allocations, full ones every %d "
             "middle ones", gc.get_freeze_count(), young, full_every)
