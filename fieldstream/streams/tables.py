"""Changelog-backed Faust tables of per-device state, keyed by device_id, values pickled by the stage."""

from __future__ import annotations

from collections.abc import Iterator

import faust

from fieldstream import metrics
from fieldstream.partitioning import device_partition
from fieldstream.streams.changelog import ChangelogWriter, Mark

# What the local store holds for a key whose state the stage holds live (checkpoint.Releasing).
HELD_LIVE = object()


class ChangelogTable:
    """A Faust table seen as str → pickled bytes, whose changelog we write ourselves.

    Reads and writes go to the table's local store; each write is also sent to the
    table's changelog topic by the worker's ChangelogWriter (see streams/changelog.py),
    on the partition of the device's readings, where Faust's recovery finds it.
    The stage that holds a device's state live keeps it out of the local store
    (`send`, `release`): only the key stays, marked `HELD_LIVE`.
    """

    def __init__(self, table: faust.Table, writer: ChangelogWriter, partitions: int) -> None:
        self.table = table
        self.writer = writer
        self.partitions = partitions
        self.topic = table.changelog_topic.get_topic_name()
        self._writes = metrics.STATE_WRITES.labels(table.name)

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = self.table.data.get(key.encode())
        if value is HELD_LIVE:
            raise LookupError(f"{self.table.name}: the state of {key!r} was left to the stage holding it live, "
                              "which no longer has it")
        return default if value is None else value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.encode() in self.table.data

    def __getitem__(self, key: str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    # What CheckpointedStates needs to keep pickled copies of live states out of memory
    # (checkpoint.Releasing). Every write comes from the stage holding the state live.
    def send(self, key: str, value: bytes) -> None:
        k = key.encode()
        self.table.data[k] = HELD_LIVE
        self.writer.send(self.topic, device_partition(key, self.partitions), k, value)
        self._writes.inc()

    def release(self, key: str) -> None:
        k = key.encode()
        if k in self.table.data:
            self.table.data[k] = HELD_LIVE

    def forget(self, key: str) -> None:
        # Faust's recovery reads a partition newly assigned from the start of its changelog.
        self.table.data.pop(key.encode(), None)

    def __delitem__(self, key: str) -> None:
        k = key.encode()
        self.table.data.pop(k, None)
        self.writer.send(self.topic, device_partition(key, self.partitions), k, None)  # a tombstone

    def __iter__(self) -> Iterator[str]:
        return iter([k.decode() for k in list(self.table.data.keys())])

    def __len__(self) -> int:
        return len(self.table.data)

    # What CheckpointedStates needs to know when its writes are durable (checkpoint.Durable).
    def mark(self) -> Mark:
        return self.writer.mark()

    def reached(self, mark: Mark) -> bool:
        return self.writer.reached(mark)

    def take_failed(self) -> set[str]:
        return {k.decode() for k in self.writer.take_failed(self.topic)}

    async def flush(self) -> None:
        await self.writer.flush()


def device_state_table(app: faust.App, name: str, partitions: int, writer: ChangelogWriter,
                       help: str) -> ChangelogTable:  # noqa: A002
    """Co-partitioned with the readings topic: a device's state lives on its readings' partition
    number (Java-compatible murmur2, as devices produce) and moves with it on a rebalance."""
    table = app.Table(name, default=None, partitions=partitions, key_type=bytes, value_type=bytes,
                      help=help)
    return ChangelogTable(table, writer, partitions)
