"""The worker's Faust transport: verified end offsets, commits behind the changelogs, paced
fetches (``FetchPacer``) and a cheaper per-message delivery (``WorkerConsumer``). The benchmark's baseline agent gets only
the first (``BaselineTransport``), so it measures Faust's own delivery.

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
import inspect
import logging
from typing import Any, Awaitable, Callable, Coroutine, Generator, List, Mapping, Optional, cast

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode.services import WaitResults

from .. import metrics
from ..events.model import INPUT_TOPICS, TOPIC_REQUESTS, TOPIC_RESPONSES, TOPIC_SERVED
from .flow import next_commit
from .holes import Holes

log = logging.getLogger(__name__)

#: Topics the agents read whose offsets have no holes (neither compacted nor transactional).
CONSECUTIVE_TOPICS = frozenset((*INPUT_TOPICS, TOPIC_REQUESTS, TOPIC_RESPONSES, TOPIC_SERVED))

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


class FetchPacer:
    """Starts each fetch at least ``interval_s`` after the previous answer from the same broker.

    aiokafka sends the next fetch as soon as an answer is in. With records arriving all the
    time, answers come back with a record or two and the fetches never stop: measured at 500
    events/s, 124 fetches a second, each built and parsed in Python for every assigned
    partition (24 here), on the worker's consumer thread and in the broker. Waiting 8 ms
    before the next one halves them (57 a second) and took 0.05 to 0.1 cores from the worker
    and 0.07 to 0.12 from the dev broker; freshness p99 read 155, 76 and 80 ms against 220, 99
    and 98 ms without, in alternated runs on this two-core machine. Under load nothing changes:
    an answer then carries everything that arrived in between (up to the fetch size limits).
    The wait adds at most ``interval_s`` to a record's delivery, like ``fetch.min.bytes`` with
    a ``fetch.max.wait.ms`` in the Java client, but it never holds a record that is already in.
    """

    def __init__(self, fetcher: Any, interval_s: float, *, clock: Optional[Callable[[], float]] = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.interval_s = interval_s
        self._clock = clock  # default: the running loop's clock
        self._sleep = sleep
        self._send = fetcher._proc_fetch_request
        self._answered: dict[Any, float] = {}  # node id -> clock time of its last answer
        fetcher._proc_fetch_request = self.fetch  # aiokafka looks it up at every fetch

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def fetch(self, assignment: Any, node_id: Any, request: Any) -> bool:
        wait = self._answered.get(node_id, float("-inf")) + self.interval_s - self._now()
        if wait > 0:
            try:
                await self._sleep(wait)
            except asyncio.CancelledError:
                # As aiokafka's own fetch does when cancelled (closing, or the assignment
                # changed): no new data. Raising would end its fetch routine.
                return False
        try:
            return await self._send(assignment, node_id, request)
        finally:
            self._answered[node_id] = self._now()


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

    async def on_start(self) -> None:
        await super().on_start()
        settings = getattr(self.app, "settings", None)
        if settings is not None and settings.fetch_min_interval_ms > 0:
            FetchPacer(self._consumer._fetcher, settings.fetch_min_interval_ms / 1000)

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
    """Faust's consumer with fetch-verified end offsets and nothing else changed.

    The benchmark's minimal agent runs on it: Faust's own per-event path, on the dev broker.
    """

    def _new_consumer_thread(self) -> VerifiedHighwatersThread:
        return VerifiedHighwatersThread(self, loop=self.loop, beacon=self.beacon)


class WorkerConsumer(VerifiedHighwatersConsumer):
    """The worker's consumer: no commit ahead of the changelogs, and cheaper delivery.

    Faust commits source offsets without waiting for the table changelog records that the
    same events produced (they sit in the producer's buffer). A rebalance or crash right after
    such a commit hands the partition to a worker whose recovered tables lack those events,
    and the events are never read again: lost (measured: 50 of 240 users undercounted after
    one worker joined mid-stream). Flushing the producer before every commit makes "offset
    committed" imply "its state is durable in the changelog". Changelog sends that micro-batches
    started and did not wait for (``ChangelogPipe``) are awaited first (``before_commit``).
    """

    _rejoins: Optional[dict] = None      # (tp, first skipped offset) -> rejoins asked for it
    _rejoin_pending = False
    #: The offsets skipped and not read yet; the processors hold back the records past them
    #: until they are (kafka/holes.py says why, and the rules that make every hole close).
    holes: Optional[Holes] = None

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """The fetch loop met an offset past the next one it expected on a topic whose offsets
        are consecutive: do not count the skipped ones as done, rejoin the group instead.

        Faust fills such a gap as acknowledged (for compaction and transaction markers), so its
        next commit went past records this worker never processed. Found by the failover test:
        right after a rebalance the fetcher's position and Faust's read offsets (sought to the
        committed ones) sometimes disagree, and some of the victim's records were lost. With
        the gap left open no commit passes it, and the rebalance a rejoin causes seeks every
        partition to its committed offset again, before the hole: what is read twice is a
        replay, which every processor skips exactly. The same hole three times is left to
        Faust's handling, said loudly.
        """
        if tp.topic not in CONSECUTIVE_TOPICS:
            await super()._add_gap(tp, offset_from, offset_to)
            return
        if tp not in self.assignment():
            return  # revoked meanwhile: its new owner reads it from the commit
        if self.holes is None:
            self.holes = Holes()
        key = (tp.topic, tp.partition)
        first = self.holes.open(key, offset_from, offset_to, self._committed_offset.get(tp))
        if first is None:
            return  # every skipped offset is below the commit: done already
        if self._rejoins is None:
            self._rejoins = {}
        tries = self._rejoins[(tp, first)] = self._rejoins.get((tp, first), 0) + 1
        if tries > 3:
            self.log.error("offsets %s..%s of %s still not delivered after three rejoins: counting them as "
                           "done (Faust's gap handling)", first, offset_to - 1, tp)
            self.holes.close(key)
            await super()._add_gap(tp, first, offset_to)
            return
        metrics.OFFSET_GAPS.labels(tp.topic).inc()
        self.log.warning("offsets %s..%s of %s were not delivered: not committing past them; rejoining the "
                         "group to read them again", first, offset_to - 1, tp)
        if not self._rejoin_pending:
            self._rejoin_pending = True
            await self._thread.call_thread(self._request_rejoin)

    def _new_offset(self, tp: TP) -> Optional[int]:
        """The offset to commit for ``tp``: never past a record some stream has not acked
        (Faust's own version can skip one; kafka/flow.py)."""
        return next_commit(self._acked[tp], self._acked_index[tp], self._gap[tp], self._committed_offset.get(tp))

    async def seek_to_committed(self) -> Mapping[TP, int]:
        """Faust's seek of every assigned partition to its commit, closing the holes it passes."""
        offsets = await super().seek_to_committed()
        self._sought({tp: offset for tp, offset in offsets.items() if offset is not None and offset >= 0})
        return offsets

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._sought({partition: offset})

    def _sought(self, positions: Mapping[TP, int]) -> None:
        if self.holes:
            closed = self.holes.sought({(tp.topic, tp.partition): offset for tp, offset in positions.items()})
            if closed:
                self.log.warning("holes of %s closed: sought past them, to offsets committed already", closed)

    async def _request_rejoin(self) -> None:
        self._thread._ensure_consumer()._coordinator.request_rejoin()

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        self._rejoin_pending = False
        if self.holes:  # a partition gone to another worker: its new owner reads from the commit
            self.holes.keep_only((tp.topic, tp.partition) for tp in assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    async def _commit_tps(self, tps: Any, start_new_transaction: bool) -> bool:
        for drain in getattr(self.app, "before_commit", ()):
            try:
                await drain()
            except Exception as exc:  # noqa: BLE001 - reported, and the worker stops
                self.log.error("not committing: a changelog send failed: %r", exc)
                await self.app.crash(exc)
                return False
        await self.app.producer.flush()
        for table in self.app.tables.values():
            error = getattr(table, "changelog_error", None)
            if error is not None:
                # Committing would acknowledge events whose state never reached the changelog.
                self.log.error("not committing: changelog of table %s failed: %r", table.name, error)
                await self.app.crash(error)
                return False
        gaps = {tp: [(iv.begin, iv.end) for iv in sorted(self._gap[tp])][:5]
                for tp in tps if tp.topic in CONSECUTIVE_TOPICS and self._gap.get(tp)}
        if gaps:
            # Faust treats offsets it never received as done (right for a compacted topic): on
            # these topics that is records skipped (only after three rejoins, see _add_gap).
            self.log.warning("committing past offsets this worker never received: %s", gaps)
        return await super()._commit_tps(tps, start_new_transaction)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """Deliver a message without four tasks when its delivery does not block.

        Faust's fetch loop hands every message to the conductor through
        ``wait_first(callback(message), suspend_flow.wait())`` (its only call here), so that a
        delivery blocked on a full stream buffer is abandoned when a rebalance suspends the
        flow (faust-streaming#229). That wraps both, plus the service's stopped and crashed
        events, in tasks and cancels three of them again: per message, measured at about a
        third of a worker's delivery cost. Here the delivery runs first, inline; almost always
        it completes without suspending (the buffer has room) and nothing else is created. If
        it does suspend, the rest of it goes through Faust's ``wait_first`` exactly as before.
        """
        idle = self.suspend_flow.is_set() or self._stopped.is_set() or self._crashed.is_set()
        return await wait_first_inline(coros, timeout, idle, super().wait_first)


WaitFirst = Callable[..., Awaitable[WaitResults]]


async def wait_first_inline(coros: tuple[Any, ...], timeout: Any, suspended: bool,
                            wait_first: WaitFirst) -> WaitResults:
    """``wait_first(deliver, suspend_wait)`` with ``deliver`` run inline until it first suspends.

    When the flow is ``suspended`` (or the call is not the fetch loop's two coroutines),
    ``wait_first`` runs as it is.
    """
    if timeout is None and len(coros) == 2 and inspect.iscoroutine(coros[0]) and not suspended:
        first, other = coros
        try:
            suspended_on = first.send(None)
        except StopIteration as done:
            if inspect.iscoroutine(other):
                other.close()  # never started: nothing to wait for
            return WaitResults([first], [done.value], False)
        coros = (_resume(first, suspended_on), other)
    return await wait_first(*coros, timeout=timeout)


class _Resumed:
    """The rest of a coroutine that suspended once, as an awaitable (``yield from`` by hand)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self._coro, self._suspended_on
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # cancellation (the flow was suspended) goes in too
                try:
                    pending = coro.throw(exc)
                except StopIteration as done:
                    return done.value
            else:
                try:
                    pending = coro.send(sent)
                except StopIteration as done:
                    return done.value


async def _resume(coro: Coroutine[Any, Any, Any], suspended_on: Any) -> Any:
    return await _Resumed(coro, suspended_on)


class LeanProducerBuffer(ProducerBuffer):
    """Faust's producer buffer, with its size read without the app's settings.

    The conductor awaits ``wait_until_ebb`` before every message it delivers, and ``size`` read
    ``app.conf.producer_threaded`` through Faust's settings descriptors each time: 1.6% of a
    busy worker's event loop. The setting does not change while the app runs.
    """

    _threaded: Optional[bool] = None

    @property
    def size(self) -> int:
        threaded = self._threaded
        if threaded is None:
            threaded = self._threaded = bool(self.app.conf.producer_threaded)
        if threaded:
            return len(self.queue._queue) if self.queue else 0  # type: ignore[attr-defined]
        return len(self.pending._queue)  # type: ignore[attr-defined]


class Producer(faust_aiokafka.Producer):
    """Faust's producer with ``LeanProducerBuffer``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        stock = self.buffer
        self.buffer = LeanProducerBuffer(loop=self.loop, beacon=self.beacon)
        self.buffer.threaded_producer = getattr(stock, "threaded_producer", None)
        self.buffer.app = self.app


class Transport(faust_aiokafka.Transport):
    Consumer = WorkerConsumer
    Producer = Producer


class BaselineTransport(faust_aiokafka.Transport):
    """Stock Faust delivery and commits, with the dev broker's end offsets verified."""

    Consumer = VerifiedHighwatersConsumer
