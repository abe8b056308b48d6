"""Kafka's standard key partitioner (murmur2), the one the contract fixes for every producer."""

from __future__ import annotations

from aiokafka.partitioner import murmur2


def partition_for(key: bytes, n_partitions: int) -> int:
    """Partition of ``key`` exactly as the Java client, aiokafka and Faust choose it."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions


def user_partition(user_id: str, n_partitions: int) -> int:
    return partition_for(user_id.encode("utf-8"), n_partitions)
