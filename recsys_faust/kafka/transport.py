"""The worker's Faust transport: verified end offsets, commits behind the changelogs, paced
fetches (``FetchPacer``) and a cheaper per-message delivery (``WorkerConsumer``). The benchmark's baseline agent gets only
the first (``BaselineTransport``), so it measures Faust's own delivery.

Table recovery reads each changelog up to ``consumer.highwaters()``, which Faust answers with
ListOffsets(LATEST). The dev broker (Tansu 0.6) answers that with the base offset of the last
record batch + 1, short by the rest of the batch: restarts then fail the consistency check
and rebuilds silently lose the tail (docs/brokers.md, Tansu). The high watermark in a
Fetch response is always right, so for every non-empty partition we fetch one record at
(listed end - 1) and take ``max(listed, fetched)``. On Apache Kafka both agree; the cost is
one extra round trip per recovery.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, Coroutine, Generator, List, Mapping, Optional, cast

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from mode.services import WaitResults

from .. import metrics
from .flow import next_commit
from .delivered import Delivered

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
            consumer._fetch_max_wait_ms = settings.kafka.fetch_max_wait_ms  # read by the Fetcher at start()
        # Records of aborted transactions are never delivered, nor those of open ones yet: an
        # upstream producer may write the input topics transactionally (docs/contract.md).
        consumer._isolation_level = "read_committed"  # read by the Fetcher at start()
        return consumer

    async def on_start(self) -> None:
        await super().on_start()
        settings = getattr(self.app, "settings", None)
        if settings is not None and settings.kafka.fetch_min_interval_ms > 0:
            FetchPacer(self._consumer._fetcher, settings.kafka.fetch_min_interval_ms / 1000)

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

    #: Offsets delivered to the agents, per partition (kafka/delivered.py).
    _delivered: Optional[Delivered] = None
    #: The next offset each partition's fetch should deliver: set by a seek, then by each delivery.
    _expected: Optional[dict] = None

    def _books(self) -> tuple[Delivered, dict]:
        if self._delivered is None:
            self._delivered, self._expected = Delivered(), {}
        assert self._expected is not None
        return self._delivered, self._expected

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Faust's fetch, with the offsets it skips found here rather than by Faust (``_add_gap``).

        A record past the offset expected (a seek's position, or the last delivery + 1) means
        the broker skipped offsets: records removed by compaction, transaction markers, aborted
        records (``read_committed``). Of those, the ones never delivered count as acknowledged,
        so commits pass them; offsets delivered before (records read ahead of a seek) do not, and
        are acked by the agents that hold them (kafka/delivered.py).
        """
        delivered, expected = self._books()
        acks_enabled_for = self.app.topics.acks_enabled_for
        async for tp, message in super().getmany(timeout):
            offset = message.offset
            if acks_enabled_for(tp.topic):
                nxt = expected.get(tp)
                if nxt is not None and offset > nxt:
                    self._skipped(tp, nxt, offset)
                if nxt is None or offset >= nxt:
                    expected[tp] = offset + 1
                delivered.add(tp, offset)
            yield tp, message

    def _skipped(self, tp: TP, first: int, end: int) -> None:
        """Offsets ``first .. end - 1`` were not returned by the broker: count those never
        delivered as acked (Faust's gap intervals), from the committed offset on."""
        delivered, _ = self._books()
        committed = self._committed_offset.get(tp)
        for a, b in delivered.undelivered(tp, first, end):
            if committed is not None:
                a = max(a, committed)
            if a < b:
                self._gap[tp].addi(a, b)
                self._gap[tp].merge_overlaps()
                metrics.OFFSET_GAPS.labels(tp.topic).inc(b - a)

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Faust's own gap detection is replaced by ``getmany``'s: it counts offsets delivered
        before a seek as skipped, and misses an offset skipped right at a sought position."""

    async def perform_seek(self) -> None:
        """Faust's seek of every assigned partition to its commit; the next offsets expected follow."""
        await super().perform_seek()
        _, expected = self._books()
        for tp in self.assignment():
            offset = self._read_offset.get(tp)
            if offset is None:
                expected.pop(tp, None)   # no commit: the first record read starts the partition
            else:
                expected[tp] = offset

    async def seek(self, partition: TP, offset: int) -> None:
        await super().seek(partition, offset)
        self._books()[1][partition] = offset

    def _new_offset(self, tp: TP) -> Optional[int]:
        """The offset to commit for ``tp``: never past a record some stream has not acked
        (Faust's own version can skip one; kafka/flow.py)."""
        offset = next_commit(self._acked[tp], self._acked_index[tp], self._gap[tp], self._committed_offset.get(tp))
        if offset is not None:
            self._books()[0].prune(tp, offset)
        return offset

    async def on_partitions_revoked(self, revoked: Any) -> None:
        delivered, expected = self._books()
        for tp in revoked:   # their buffers are cleared: nothing delivered waits to be acked
            delivered.forget(tp)
            expected.pop(tp, None)
        await super().on_partitions_revoked(revoked)

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
