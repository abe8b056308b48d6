"""Every record of a topic, from its beginning to the end it had when the reading started.

For the commands that read a whole topic once (backup, ``models list``), not for workers. The
end of each partition is fixed when reading starts, so a topic written continuously is still
read to an end: its last stable offset (records of open transactions are not read; aborted ones
are skipped, ``read_committed``), as ListOffsets gives it and as the first Fetch answer gives
it, whichever is higher. The dev broker Tansu lists end offsets short of the records it serves
(docs/brokers.md), and its Fetch answers carry the right one.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import aiokafka
from aiokafka import TopicPartition

from ..settings import Settings
from .clients import client_kwargs

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
                                             fetch_max_wait_ms=100, isolation_level="read_committed",
                                             **client_kwargs(self.settings), **self.consumer_kwargs)
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
            ends = await consumer.end_offsets(tps)   # the last stable offsets (read_committed)
            answered: set = set()                    # partitions whose first Fetch answer was read
            done: set = set()
            while len(done) < len(tps):
                batch = await consumer.getmany(timeout_ms=200)
                for tp in tps:
                    if tp not in answered and consumer.highwater(tp) is not None:
                        lso = consumer.last_stable_offset(tp)
                        ends[tp] = max(ends[tp], lso if lso is not None and lso >= 0 else consumer.highwater(tp))
                        answered.add(tp)
                for tp, records in batch.items():
                    kept = [r for r in records if r.offset < ends[tp]]   # written after the start
                    if kept:
                        yield kept
                for tp in answered - done:
                    if await consumer.position(tp) >= ends[tp]:
                        done.add(tp)
                        consumer.pause(tp)
        finally:
            await consumer.stop()


async def topics_with_records(settings: Settings, names: list[str]) -> list[str]:
    """Which of the topics ``names`` hold records (a non-zero end offset on some partition)."""
    consumer = aiokafka.AIOKafkaConsumer(enable_auto_commit=False, **client_kwargs(settings))
    await consumer.start()
    # aiokafka 0.14: a group-less consumer stopped before its committed-offsets task first ran
    # raises CancelledError from stop(); one turn of the loop lets the task start.
    await asyncio.sleep(0)
    try:
        await consumer._client.force_metadata_update()  # every topic's partitions, just created ones too
        tps = [TopicPartition(n, p) for n in names for p in (consumer.partitions_for_topic(n) or ())]
        ends = await consumer.end_offsets(tps) if tps else {}
        return sorted({tp.topic for tp, end in ends.items() if end > 0})
    finally:
        await consumer.stop()
