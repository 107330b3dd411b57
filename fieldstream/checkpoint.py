"""Per-device state worked on in memory and checkpointed, pickled, into a changelog-backed mapping.

Writing every state after every batch would put one changelog message per
reading on the wire; instead changed states are written every checkpoint interval,
and the caller keeps the offsets they cover uncommitted until then
(`pending_low_offsets`), so a crash replays exactly what the restored state
has not seen. Shared by the window and detection stages.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from fieldstream.partitioning import device_partition

S = TypeVar("S")


@runtime_checkable
class Durable(Protocol):
    """A store whose writes become durable later (the worker's changelog tables, streams/tables.py).

    A plain mapping (tests) is durable as soon as it is written.
    """

    def mark(self) -> Any:
        """A token for every write so far."""

    def reached(self, mark: Any) -> bool:
        """Every write before `mark` is settled."""

    def take_failed(self) -> set[str]:
        """Keys whose writes the store lost since last asked: to write again."""

    async def flush(self) -> None:
        """Wait for every write so far."""


@runtime_checkable
class Releasing(Protocol):
    """A store that need not hold in memory the values whose live state the caller holds (the
    worker's changelog tables: their pickled copies would add a third to the state's memory)."""

    def send(self, key: str, value: bytes) -> None:
        """Write `value` without keeping it in memory: the caller holds the state it pickles."""

    def release(self, key: str) -> None:
        """Drop the in-memory copy of `key`'s value: the caller now holds the state."""

    def forget(self, key: str) -> None:
        """Drop `key` here without writing anything: its partition is no longer ours. Should it
        come back, Faust's recovery reads the partition's changelog again from its start."""


class CheckpointedStates(Generic[S]):
    """Per-device states in memory, written to `store` in gradual checkpoints.

    A checkpoint snapshots which states changed (and the lowest source offset per
    partition behind those changes), then writes them a slice per `step()`, so that
    10,000 devices do not stall the stream for the half second their pickling takes.
    A state of the snapshot that is about to change before its slice comes is written
    first (`get`), so the store holds each state as of the snapshot, and the snapshot's
    offsets are released (`pending_low_offsets`) once all of it is written and durable
    (a `Durable` store: its changelog messages are acknowledged). A crash in
    the middle leaves some states newer than the committed offsets (as `write_now`
    does): the replay brings them readings they already hold, which both stages
    recognise (windows by seq, detectors by source position).
    """

    def __init__(self, store: MutableMapping[str, bytes], partitions: int, every_s: float,
                 steps: int | None = None) -> None:
        self.store = store
        self.partitions = partitions
        self.every_s = every_s
        # Ticks (about a second apart) a snapshot is spread over: half the interval.
        self.steps = steps or max(1, round(every_s / 2))
        self._cache: dict[str, S] = {}
        self._dirty: set[str] = set()  # changed since the snapshot being written began
        self._pending: dict[tuple[str, int], int] = {}  # their lowest source offsets
        self._writing: set[str] = set()  # the snapshot: changed before it began, not yet written
        self._writing_pending: dict[tuple[str, int], int] = {}  # sealed when _writing is empty
        # Written snapshots waiting to be durable: (the store's mark, their offsets), oldest first.
        self._sealed: list[tuple[Any, dict[tuple[str, int], int]]] = []
        self._durable = store if isinstance(store, Durable) else None
        self._releasing = store if isinstance(store, Releasing) else None
        self._slice = 0
        self._last = time.monotonic()
        self._paused = False

    def pause(self) -> None:
        """A rebalance is under way: no checkpoint until we know which partitions stay ours."""
        self._paused = True

    def resume(self) -> None:
        self._paused = False

    def partition_of(self, device_id: str) -> int:
        return device_partition(device_id, self.partitions)

    def get(self, device_id: str, create: Callable[[], S], will_change: bool = True) -> S:
        """The device's state, to change (then call `changed`) or, with will_change=False, to look at.

        Timers pass will_change=False: what they change (closed windows, alerts) they also
        publish and write at once (`write_now`), and the rest they change may be forgotten.
        """
        if will_change and device_id in self._writing and not self._paused:
            self._write(device_id)  # before it changes: the snapshot must hold it as it was
            self._writing.discard(device_id)
        state = self._cache.get(device_id)
        if state is None:
            blob = self.store.get(device_id)
            state = pickle.loads(blob) if blob else create()  # noqa: S301 - our own changelog
            self._cache[device_id] = state
            if blob and self._releasing is not None:
                self._releasing.release(device_id)
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
        self._writing.discard(device_id)
        if device_id in self.store:
            del self.store[device_id]

    def devices(self, owned: set[int]) -> list[str]:
        """Devices of the owned partitions, in memory or only in the store (silent since a restart)."""
        keys = set(self._cache) | {k.decode() if isinstance(k, bytes) else k for k in self.store}
        return [d for d in keys if self.partition_of(d) in owned]

    def step(self) -> int:
        """Timer: begin a checkpoint when due, write the next slice of the one under way.

        Returns how many states this step wrote.
        """
        if self._paused:
            return 0
        if not self._writing:
            if time.monotonic() - self._last < self.every_s:
                return 0
            self._begin()
        n = min(len(self._writing), self._slice)
        for _ in range(n):
            self._write(self._writing.pop())
        if not self._writing:
            self._seal(self._writing_pending)
            self._writing_pending = {}
            self._last = time.monotonic()
        return n

    def checkpoint(self) -> int:
        """Write every changed state now (a clean stop, a test); every held offset is released
        once these writes are durable (`flush`)."""
        todo = self._writing | self._dirty
        for device_id in todo:
            self._write(device_id)
        self._seal(lowest(self._writing_pending, self._pending))
        self._writing, self._dirty = set(), set()
        self._writing_pending, self._pending = {}, {}
        self._last = time.monotonic()
        return len(todo)

    async def flush(self) -> None:
        """Wait until every write so far is durable."""
        if self._durable is not None:
            await self._durable.flush()

    def write_now(self, device_ids: Iterable[str]) -> None:
        """Checkpoint these states at once: they just published something (closed windows,
        alerts) that a restart from an older checkpoint would publish a second time."""
        for device_id in device_ids:
            self._write(device_id)
            self._writing.discard(device_id)  # what was written holds the snapshot's changes too

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        self._settle()
        return lowest(self._writing_pending, self._pending, *(offsets for _, offsets in self._sealed))

    def _seal(self, offsets: dict[tuple[str, int], int]) -> None:
        if self._durable is not None:
            self._sealed.append((self._durable.mark(), offsets))

    def _settle(self) -> None:
        """Release sealed snapshots now durable. A lost write puts its device in the next
        checkpoint, and every offset held so far waits for that one: the lost write may
        belong to any snapshot not yet released."""
        durable = self._durable
        if durable is None:
            return
        done = 0
        while done < len(self._sealed) and durable.reached(self._sealed[done][0]):
            done += 1
        lost = durable.take_failed()  # after `reached`: the failures among what it found settled
        if lost:
            self._dirty |= lost
            self._pending = lowest(self._pending, self._writing_pending, *(offsets for _, offsets in self._sealed))
            self._writing_pending, self._sealed = {}, []
        else:
            del self._sealed[:done]

    def forget_partitions(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Revoked: drop in-memory states of those partitions; their new owner restores the checkpoint
        (and so does this worker, from the changelog, should one come back)."""
        partitions = set(partitions)
        numbers = {p for _, p in partitions}
        for device_id in [d for d in self._cache if self.partition_of(d) in numbers]:
            del self._cache[device_id]
            if self._releasing is not None:
                self._releasing.forget(device_id)
            self._dirty.discard(device_id)
            self._writing.discard(device_id)
        for tp in partitions:
            self._pending.pop(tp, None)
            self._writing_pending.pop(tp, None)
            for _, offsets in self._sealed:
                offsets.pop(tp, None)

    def _begin(self) -> None:
        self._writing, self._dirty = self._dirty, set()
        self._writing_pending, self._pending = self._pending, {}
        self._slice = -(-len(self._writing) // self.steps)  # ceil: the last step finishes it

    def _write(self, device_id: str) -> None:
        state = self._cache.get(device_id)
        if state is None:
            return
        blob = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        if self._releasing is not None:
            self._releasing.send(device_id, blob)
        else:
            self.store[device_id] = blob


def lowest(*held: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
    """The lowest offset per partition over several {partition: offset} maps."""
    low: dict[tuple[str, int], int] = {}
    for offsets in held:
        for tp, offset in offsets.items():
            if offset < low.get(tp, offset + 1):
                low[tp] = offset
    return low


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
        self.rebalances = 0  # revocations seen: work split across lock releases checks it
        # Set once every output has started. The worker's first batch can arrive while start()
        # still waits on the registry or the database, and nothing may be sent before.
        self.started = asyncio.Event()

    async def start(self) -> None:
        for part in self.outputs:
            await self.retry(part.name, part.start)
        self.started.set()

    async def close(self) -> None:
        async with self.busy:
            self.states.checkpoint()  # a clean stop hands over current state
            await self.states.flush()
        for part in self.outputs:
            await part.close()

    def pending_low_offsets(self) -> dict[tuple[str, int], int]:
        return self.states.pending_low_offsets()

    def forget_partitions(self, partitions: set[tuple[str, int]]) -> None:
        self.states.forget_partitions(partitions)

    def pause(self) -> None:
        self.rebalances += 1
        self.states.pause()

    def resume(self) -> None:
        self.states.resume()
