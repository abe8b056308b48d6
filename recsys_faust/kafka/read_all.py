"""Every record of a topic, from its beginning to its end, with a consumer of its own.

For the commands that read a whole topic once (backup, ``models list``), not for workers. The
end is "at the high watermark and quiet for ``QUIET_S``": the dev broker (Tansu) reports end
offsets short of the records it serves (BROKER_NOTES.md), so a reader that stopped at them
would miss the last records.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import aiokafka
from aiokafka import TopicPartition

from ..settings import Settings
from .clients import client_kwargs

QUIET_S = 1.0


class TopicMissing(RuntimeError):
    pass


class TopicReader:
    """``batches()``: ``topic``'s records (aiokafka ``ConsumerRecord``s) in batches, each
    partition in offset order; ``partitions`` then lists the topic's partitions."""

    def __init__(self, settings: Settings, topic: str, **consumer_kwargs: Any) -> None:
        self.settings, self.topic, self.consumer_kwargs = settings, topic, consumer_kwargs
        self.partitions: list[int] = []

    async def batches(self) -> AsyncIterator[list[Any]]:
        consumer = aiokafka.AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                             fetch_max_wait_ms=100, **client_kwargs(self.settings),
                                             **self.consumer_kwargs)
        await consumer.start()
        try:
            parts = consumer.partitions_for_topic(self.topic)
            if not parts:
                await consumer._client.force_metadata_update()
                parts = consumer.partitions_for_topic(self.topic) or set()
            self.partitions = sorted(parts)
            tps = [TopicPartition(self.topic, p) for p in self.partitions]
            if not tps:
                raise TopicMissing(f"topic {self.topic} does not exist on the broker (run `recsys-faust topics apply`)")
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            last_seen = {tp: time.monotonic() for tp in tps}
            done: set = set()
            while len(done) < len(tps):
                batch = await consumer.getmany(timeout_ms=200)
                now = time.monotonic()
                for tp, records in batch.items():
                    if records:
                        last_seen[tp] = now
                        yield records
                for tp in tps:
                    if await consumer.position(tp) >= ends[tp] and now - last_seen[tp] >= QUIET_S:
                        done.add(tp)
        finally:
            await consumer.stop()
