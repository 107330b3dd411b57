"""Which partition a device's records live on: Kafka's Java-compatible murmur2.

Devices produce with librdkafka's `murmur2_random` partitioner, and the state
tables' changelog messages are sent to the same partition number
(streams/tables.py), so a device's readings and its state move together.
"""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


@lru_cache(maxsize=1 << 17)
def device_partition(device_id: str, partitions: int) -> int:
    """partition_for a device id, remembered: asked at every state write (murmur2 is pure Python)."""
    return partition_for(device_id.encode(), partitions)
