"""Which partition a device's records live on: Kafka's Java-compatible murmur2.

Devices produce with librdkafka's `murmur2_random` partitioner and Faust's
changelog producer uses aiokafka's default (also murmur2), so a device's
readings and its table state land on the same partition number.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions
