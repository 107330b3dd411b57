"""Changelog-backed Faust tables of per-device state, keyed by device_id, values pickled by the stage."""

from __future__ import annotations

import asyncio
import logging

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
    """Keep every table's changelog topic in the producer's metadata before the first table write.

    Faust picks a changelog partition synchronously from the producer's cached topic
    metadata (`key_partition`). On a fresh broker the changelog topics Faust has just
    created may not be in that cache, and a table write fails ("'NoneType' object is not
    iterable" in aiokafka's partitioner), stopping the worker. Being in the cache once is
    not enough either: aiokafka refreshes metadata for the topics it tracks only, so a
    topic seen in an all-topics answer drops out at the next refresh. `add_topic` makes
    the producer's client track it; `partitions_for` waits until it is there (or raises).
    (Faust exposes its aiokafka producer only through `_ensure_producer`.)
    """
    producer = app.producer._ensure_producer()
    for table in app.tables.values():
        topic = table.changelog_topic.get_topic_name()
        await asyncio.wait_for(producer.client.add_topic(topic), timeout_s)
        await asyncio.wait_for(producer.partitions_for(topic), timeout_s)
        log.info("tables: changelog topic %s tracked by the producer", topic)
