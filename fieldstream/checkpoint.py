"""Per-device state worked on in memory and checkpointed, pickled, into a changelog-backed mapping.

Writing every state after every batch would put one changelog message per
reading on the wire; instead changed states are written every few seconds,
and the caller keeps the offsets they cover uncommitted until then
(`pending_low_offsets`), so a crash replays exactly what the restored state
has not seen. Shared by the window and detection stages.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, Generic, TypeVar

from fieldstream.partitioning import partition_for

S = TypeVar("S")


class CheckpointedStates(Generic[S]):
    def __init__(self, store: MutableMapping[str, bytes], partitions: int, every_s: float) -> None:
        self.store = store
        self.partitions = partitions
        self.every_s = every_s
        self._cache: dict[str, S] = {}
        self._partition: dict[str, int] = {}
        self._dirty: set[str] = set()
        self._pending: dict[tuple[str, int], int] = {}
        self._last = time.monotonic()
        self._paused = False

    def pause(self) -> None:
        """A rebalance is under way: no checkpoint until we know which partitions stay ours."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def partition_of(self, device_id: str) -> int:
        p = self._partition.get(device_id)
        if p is None:
            p = self._partition[device_id] = partition_for(device_id.encode(), self.partitions)
        return p

    def get(self, device_id: str, create: Callable[[], S]) -> S:
        state = self._cache.get(device_id)
        if state is None:
            blob = self.store.get(device_id)
            state = pickle.loads(blob) if blob else create()  # noqa: S301 - our own changelog
            self._cache[device_id] = state
        return state

    def changed(self, device_id: str, topic: str | None = None, partition: int = -1, offset: int = -1) -> None:
        """Mark a state changed; with a source offset, hold it until the next checkpoint."""
        self._dirty.add(device_id)
        if topic is not None:
            tp = (topic, partition)
            low = self._pending.get(tp)
            if low is None or offset < low:
                self._pending[tp] = offset

    def delete(self, device_id: str) -> None:
        self._cache.pop(device_id, None)
        self._dirty.discard(device_id)
        if self.store.get(device_id) is not None:
            del self.store[device_id]

    def devices(self, owned: set[int]) -> list[str]:
        """Devices of the owned partitions, in memory or only in the store (silent since a restart)."""
        keys = set(self._cache) | {k.decode() if isinstance(k, bytes) else k for k in self.store}
        return [d for d in keys if self.partition_of(d) in owned]

    def due(self) -> bool:
        return not self._paused and time.monotonic() - self._last >= self.every_s

    def checkpoint(self) -> int:
        n = len(self._dirty)
        for device_id in self._dirty:
            state = self._cache.get(device_id)
            if state is not None:
                self.store[device_id] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        self._dirty.clear()
        self._pending.clear()
        self._last = time.monotonic()
        return n

    def write_now(self, device_ids: Iterable[str]) -> None:
        """Checkpoint these states at once: they just published something (closed windows,
        alerts) that a restart from an older checkpoint would publish a second time."""
        for device_id in device_ids:
            state = self._cache.get(device_id)
            if state is not None:
                self.store[device_id] = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        return dict(self._pending)

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Revoked: drop in-memory states of those partitions; their new owner restores the checkpoint."""
        partitions = set(partitions)
        numbers = {p for _, p in partitions}
        for device_id in [d for d in self._cache if self.partition_of(d) in numbers]:
            self._cache.pop(device_id, None)
            self._dirty.discard(device_id)
        for tp in partitions:
            self._pending.pop(tp, None)


Retry = Callable[..., Awaitable[Any]]


async def no_retry(name: str, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return await fn(*args)


class DeviceStateStage(Generic[S]):
    """What the window and detection stages share: checkpointed states, their outputs, one lock.

    The lock keeps a checkpoint from capturing a state whose results are still being emitted,
    and lets a rebalance wait for the stage's work in flight (streams/ownership.py).
    """

    name = "stage"

    def __init__(self, store: MutableMapping[str, bytes], partitions: int, checkpoint_s: float,
                 outputs: Sequence[Any], retry: Retry = no_retry) -> None:
        self.states: CheckpointedStates[S] = CheckpointedStates(store, partitions, checkpoint_s)
        self.outputs = tuple(outputs)
        self.retry = retry
        self.busy = asyncio.Lock()

    async def start(self) -> None:
        for part in self.outputs:
            await self.retry(part.name, part.start)

    async def close(self) -> None:
        async with self.busy:
            self.states.checkpoint()  # a clean stop hands over current state
        for part in self.outputs:
            await part.close()

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        return self.states.pending_low_offsets()

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        self.states.forget_partitions(partitions)

    def pause(self) -> None:
        self.states.pause()

    def resume(self) -> None:
        self.states.resume()
