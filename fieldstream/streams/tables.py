"""Changelog-backed Faust tables of per-device state, keyed by device_id, values pickled by the stage."""

from __future__ import annotations

import asyncio
import logging
import time

import faust

log = logging.getLogger(__name__)


class BytesTable:
    """The Faust table seen as str → pickled bytes (keys and values travel raw)."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table

    def get(self, key: str, default: bytes | None = None) -> bytes | None:
        value = self.table.get(key.encode())
        return default if value is None else value

    def __getitem__(self, key: str) -> bytes:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: str, value: bytes) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        self.table.pop(key.encode(), None)

    def __iter__(self):  # noqa: ANN204
        return iter(list(self.table.keys()))

    def __len__(self) -> int:
        return len(self.table)


def device_state_table(app: faust.App, name: str, partitions: int, help: str) -> BytesTable:  # noqa: A002
    """Co-partitioned with the readings topic: devices produce with the Java-compatible murmur2
    partitioner, which Faust's producer also uses for the changelog (`use_partitioner=True`),
    so a device's state lives on its readings' partition number and moves with it."""
    table = app.Table(name, default=None, partitions=partitions, key_type=bytes, value_type=bytes,
                      use_partitioner=True, help=help)
    return BytesTable(table)


async def await_changelog_metadata(app: faust.App, timeout_s: float = 60.0) -> None:
    """Have the producer's metadata for every table's changelog topic before the first table write.

    Faust picks a changelog partition synchronously from the producer's cached topic
    metadata (`key_partition`). On a fresh broker the changelog topics Faust has just
    created may not be cached yet, and the first write fails ("'NoneType' object is not
    iterable" in aiokafka's partitioner), stopping the worker. aiokafka's
    `partitions_for` waits for the metadata; Faust exposes its aiokafka producer only
    through `_ensure_producer`.
    """
    producer = app.producer._ensure_producer()
    for table in app.tables.values():
        topic = table.changelog_topic.get_topic_name()
        deadline = time.monotonic() + timeout_s
        while not await asyncio.wait_for(producer.partitions_for(topic), timeout_s):
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no metadata for changelog topic {topic} after {timeout_s:.0f}s")
            await asyncio.sleep(0.5)
        log.info("tables: changelog topic %s ready", topic)
