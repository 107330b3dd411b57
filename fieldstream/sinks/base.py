"""The sink protocol the stream calls. No sink imports Faust.

`write` hands a batch over; `flush` returns once everything written so far is
durable. A sink that cannot keep up or whose backend is down raises
SinkUnavailable: the stream stops taking new records and retries with backoff
(it never drops the batch). A sink that buffers across batches (Parquet) also
says the lowest offset of each partition it has not yet made durable, so offsets are
committed only behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from fieldstream.schemas.reading import Reading


@runtime_checkable
class Sink(Protocol):
    name: str

    async def start(self) -> None: ...

    async def write(self, batch: Sequence[Reading]) -> None: ...

    async def flush(self) -> None: ...

    async def close(self) -> None: ...


@runtime_checkable
class BufferingSink(Sink, Protocol):
    async def tick(self) -> None:
        """Called about once a second: write what has aged out even when no data arrives."""
        ...

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) → lowest offset not yet durable; absent partitions have nothing pending."""
        ...

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        """Drop buffered rows of partitions taken from this worker: their new owner replays them."""
        ...

    def expect_start(self, partitions: set[tuple[str, int]]) -> None:
        """Partitions newly ours: their committed offset follows in `starts_at`."""
        ...

    def starts_at(self, partition: tuple[str, int], offset: int | None) -> None:
        """Where a partition newly ours is read from (None: unknown; its first record will do)."""
        ...

    def pause(self) -> None:
        """A rebalance is under way: make nothing durable until `resume`."""
        ...

    def resume(self) -> None: ...
