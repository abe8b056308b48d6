"""Every worker's own copy of a table changelog, read from all partitions, kept in memory.

Faust's GlobalTable is meant for this but does not reliably deliver other workers' updates at
run time (faust-streaming issue #283, robinhood/faust #716, #751). This service is a group-less
aiokafka consumer assigned every partition of one changelog topic, from the beginning, that
hands each record to a callback. The state it feeds is rebuilt from a topic at every start,
which keeps the rule "no in-process state that a table or topic cannot rebuild".
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Callable, Optional

import aiokafka
import orjson
from aiokafka import TopicPartition
from mode import Service

from ..settings import Settings
from .clients import client_kwargs

log = logging.getLogger(__name__)

#: Once caught up, the tail reads at most this often. Read as fast as records came, it fetched
#: after every micro-batch's changelog send (its own, mostly: skipped after decoding), and at
#: 500 events/s these fetches cost the worker and the dev broker a measurable share of a core.
#: What it feeds (other workers' popularity entries, a newly published model) can lag this much.
TAIL_INTERVAL_S = 0.1

Callback = Callable[[list[tuple[str, Optional[Any]]]], None]


class ReplicatedChangelog(Service):
    """Tails ``topic`` (all partitions) into ``on_records``; ``caught_up`` once at the end."""

    def __init__(self, settings: Settings, topic: str, on_records: Callback, *,
                 skip: Optional[Callable[[int, int], bool]] = None,
                 skip_from: Optional[Callable[[int, int], Optional[int]]] = None,
                 ignore_key: Optional[Callable[[Optional[bytes]], bool]] = None, timestamps: bool = False,
                 **kwargs: Any) -> None:
        """``skip(partition, offset)``: records this process already applied (own_writes.py);
        ``skip_from(partition, offset)``: where a run of them that starts at ``offset`` ends (the
        tail seeks past it, unread); ``ignore_key(raw key)``: records no worker but their owner
        needs, passed over undecoded; ``timestamps``: each update is ``(key, value, the broker's
        timestamp in seconds)`` (the model registry clamps announced times to it)."""
        super().__init__(**kwargs)
        self.settings = settings
        self.topic = topic
        self.on_records = on_records
        self.skip = skip
        self.skip_from = skip_from
        self.ignore_key = ignore_key
        self.timestamps = timestamps
        self.records_skipped = 0
        self.records_seen = 0
        self.caught_up = asyncio.Event()
        self._consumer: Optional[aiokafka.AIOKafkaConsumer] = None

    async def _assign(self) -> list[TopicPartition]:
        assert self._consumer is not None
        while not self.should_stop:
            await self._consumer._client.force_metadata_update()
            parts = self._consumer.partitions_for_topic(self.topic)
            if parts:
                tps = [TopicPartition(self.topic, p) for p in sorted(parts)]
                self._consumer.assign(tps)
                await self._consumer.seek_to_beginning(*tps)
                return tps
            await asyncio.sleep(0.5)
        return []

    @Service.task
    async def _tail(self) -> None:
        self._consumer = aiokafka.AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5_000,
            fetch_max_wait_ms=100,
            **client_kwargs(self.settings),
        )
        await self._consumer.start()
        try:
            tps = await self._assign()
            while not self.should_stop:
                batch = await self._consumer.getmany(timeout_ms=200)
                updates: list[Any] = []
                skip, ignore = self.skip, self.ignore_key
                for records in batch.values():
                    for rec in records:
                        if skip is not None and skip(rec.partition, rec.offset):
                            self.records_skipped += 1
                            continue
                        if ignore is not None and ignore(rec.key):
                            continue
                        try:
                            key = rec.key.decode("utf-8") if rec.key is not None else ""
                            value = orjson.loads(rec.value) if rec.value is not None else None
                        except ValueError:  # UnicodeDecodeError and orjson's JSONDecodeError
                            # outside producers write to some tailed topics; their sink agent
                            # dead-letters such records, here they are only skipped
                            log.warning("replicated %s: skipping undecodable record at %s[%d]@%d",
                                        self.topic, rec.topic, rec.partition, rec.offset)
                            continue
                        updates.append((key, value, rec.timestamp / 1000) if self.timestamps else (key, value))
                if updates:
                    self.records_seen += len(updates)
                    self.on_records(updates)
                if not self.caught_up.is_set():
                    if await self._at_end(tps):
                        self.caught_up.set()
                        log.info("replicated %s: caught up after %d records", self.topic, self.records_seen)
                elif batch:
                    # Records wait in the consumer's buffer meanwhile, and a partition with
                    # buffered records is not fetched again: fewer, fuller fetches.
                    await asyncio.sleep(TAIL_INTERVAL_S)
                    await self._seek_past_own(tps)
        finally:
            await self._consumer.stop()

    async def _seek_past_own(self, tps: list[TopicPartition]) -> None:
        """Seek past this process's own records where they come next: on a worker that owns
        the partitions it tails, unpacking records only to skip them was about 3% of its loop."""
        if self.skip_from is None:
            return
        assert self._consumer is not None
        for tp in tps:
            position = await self._consumer.position(tp)
            past = self.skip_from(tp.partition, position)
            if past is not None and past > position:
                self._consumer.seek(tp, past)
                self.records_skipped += past - position

    async def _at_end(self, tps: list[TopicPartition]) -> bool:
        assert self._consumer is not None
        for tp in tps:
            hw = self._consumer.highwater(tp)  # from Fetch responses: right on every broker
            if hw is None or await self._consumer.position(tp) < hw:
                return False
        return True
