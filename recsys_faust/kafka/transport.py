"""A Faust transport whose end offsets are checked against a Fetch high watermark.

Table recovery reads each changelog up to ``consumer.highwaters()``, which Faust answers with
ListOffsets(LATEST). The dev broker (Tansu 0.6) answers that with the base offset of the last
record batch + 1, short by the rest of the batch: restarts then fail the consistency check
and rebuilds silently lose the tail (BROKER_NOTES.md, section 1). The high watermark in a
Fetch response is always right, so for every non-empty partition we fetch one record at
(listed end - 1) and take ``max(listed, fetched)``. On Apache Kafka both agree; the cost is
one extra round trip per recovery.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, List, Mapping, cast

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

log = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 10.0


async def verified_end_offsets(
    probe: aiokafka.AIOKafkaConsumer, listed: Mapping[Any, int], timeout_s: float = PROBE_TIMEOUT_S
) -> dict[Any, int]:
    """``listed`` corrected by Fetch high watermarks, using a started, group-less consumer."""
    result = dict(listed)
    pending = [tp for tp, end in listed.items() if end and end > 0]
    if not pending:
        return result
    probe.assign(pending)
    for tp in pending:
        probe.seek(tp, listed[tp] - 1)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    todo = set(pending)
    while todo and loop.time() < deadline:
        await probe.getmany(*todo, timeout_ms=200, max_records=1)
        for tp in list(todo):
            hw = probe.highwater(tp)
            if hw is not None:
                result[tp] = max(listed[tp], hw)
                todo.discard(tp)
    if todo:
        log.warning("could not verify end offsets of %s by fetch; using the listed ones", sorted(todo))
    return result


class VerifiedHighwatersThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        """Faust fixes the fetch long-poll at 1500 ms; the dev broker holds a fetch that long
        even when records arrive (measured: ~1 s median from produce to processed at 500
        events/s). The wait is a setting (RECSYS_FETCH_MAX_WAIT_MS) instead."""
        consumer = super()._create_worker_consumer(transport)
        settings = getattr(self.app, "settings", None)
        if settings is not None:
            consumer._fetch_max_wait_ms = settings.fetch_max_wait_ms  # read by the Fetcher at start()
        return consumer

    async def _highwaters(self, partitions: List[TP]) -> Mapping[TP, int]:
        listed = await super()._highwaters(partitions)
        if self.consumer.in_transaction or not any(listed.values()):
            return listed
        log.info("verifying end offsets of %d partitions by fetch", len(listed))
        probe = self._create_client_consumer(self.transport)
        try:
            await asyncio.wait_for(probe.start(), PROBE_TIMEOUT_S)
            fixed = await verified_end_offsets(probe, listed)
        except asyncio.TimeoutError:
            log.warning("end offset verification timed out; using the listed end offsets")
            return listed
        finally:
            await probe.stop()
        changed = {tp: (listed[tp], fixed[tp]) for tp in fixed if fixed[tp] != listed[tp]}
        if changed:
            log.info("end offsets corrected by fetch high watermark: %s", changed)
        return cast(Mapping[TP, int], fixed)


class VerifiedHighwatersConsumer(faust_aiokafka.Consumer):
    """The worker's consumer: fetch-verified end offsets, and no commit ahead of the changelogs.

    Faust commits source offsets without waiting for the table changelog records that the
    same events produced (they sit in the producer's buffer). A rebalance or crash right after
    such a commit hands the partition to a worker whose recovered tables lack those events,
    and the events are never read again: lost (measured: 50 of 240 users undercounted after
    one worker joined mid-stream). Flushing the producer before every commit makes "offset
    committed" imply "its state is durable in the changelog".
    """

    def _new_consumer_thread(self) -> VerifiedHighwatersThread:
        return VerifiedHighwatersThread(self, loop=self.loop, beacon=self.beacon)

    async def _commit_tps(self, tps: Any, start_new_transaction: bool) -> bool:
        await self.app.producer.flush()
        for table in self.app.tables.values():
            error = getattr(table, "changelog_error", None)
            if error is not None:
                # Committing would acknowledge events whose state never reached the changelog.
                self.log.error("not committing: changelog of table %s failed: %r", table.name, error)
                await self.app.crash(error)
                return False
        return await super()._commit_tps(tps, start_new_transaction)


class Transport(faust_aiokafka.Transport):
    Consumer = VerifiedHighwatersConsumer
