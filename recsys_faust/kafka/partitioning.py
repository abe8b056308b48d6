"""Kafka's standard key partitioner (murmur2), the one the contract fixes for every producer."""

from __future__ import annotations

from functools import lru_cache

from aiokafka.partitioner import murmur2

USER_PARTITION_CACHE = 65_536  # user ids remembered (about 10 MiB)


def partition_for(key: bytes, n_partitions: int) -> int:
    """Partition of ``key`` exactly as the Java client, aiokafka and Faust choose it."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions


@lru_cache(maxsize=USER_PARTITION_CACHE)
def user_partition(user_id: str, n_partitions: int) -> int:
    """``partition_for`` of the UTF-8 id, remembered: the hash is pure Python (2 us) and runs
    for every event (the re-route check) and twice for every request (owner, table read)."""
    return partition_for(user_id.encode("utf-8"), n_partitions)
