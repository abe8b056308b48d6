"""Micro-batches processed while the next one is being taken, acknowledged only when done.

Faust's ``take_events`` stops filling its buffer while the agent holds a batch, so delivery
(fetch, decode, queue: about a third of a worker's time) and processing never overlapped:
measured, the agent waited as long for each batch as it spent on it. Batches are taken without
acks (``take_batches``, which reads the channel queue in bulk) and handed here at once; a single task processes batches in
order and acks each event only after its batch's state is written, so an offset is never
committed ahead of its state (at-least-once as before, replays are skipped by the state).
``depth`` bounds the batches waiting, which is the back-pressure on the stream.

Batches that queued up while one was processed are merged (up to ``max_events``) and processed
as one: under a backlog the unit of work grows (one matrix product, one changelog batch per
partition for more events), while a lone event at low load is still processed at once. So the
take's ``within`` can stay short for freshness without shrinking the batches under load.

A processor may finish a batch in two steps: ``process`` returns an awaitable for the rest of
the work (the event processor returns once its ALS query is with the scoring process). The
next batch's first step then runs before the previous batch's rest, so the event loop folds
batch N+1 while batch N is scored elsewhere. With no batch waiting, the rest starts at once and
the next batch is folded when it arrives, even while that rest still waits for its scores.
Rests complete, and batches are acked, in order: a rest starts only after the one before it
completed. (The event processor's rests and first steps may interleave only at their awaits,
and it keeps both orders correct: ingest/ahead.py, ``AheadOfStore``.)
"""

from __future__ import annotations

import asyncio
import logging
from time import monotonic
from typing import Any, AsyncIterator, Awaitable, Callable, Optional, Sequence

from faust.types import AppT, EventT, StreamT

from ..kafka.internals import stream_ack_hooks
from ..kafka.lag import PROGRESS, Progress

log = logging.getLogger(__name__)


class BatchPipeline:
    def __init__(
        self,
        process: Callable[[Sequence[EventT]], Awaitable[Optional[Awaitable[None]]]],
        ack: Callable[[Sequence[EventT]], Any],
        *,
        depth: int = 4,
        max_events: int = 2_000,
    ) -> None:
        self._process = process
        self._ack = ack
        self._queue: asyncio.Queue[Sequence[EventT]] = asyncio.Queue(maxsize=depth)
        self._task: Optional[asyncio.Task] = None
        self._max_events = max_events

    async def submit(self, batch: Sequence[EventT]) -> None:
        """Queue a batch; waits while ``depth`` batches are already waiting."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="recsys-batch-pipeline")
        put = asyncio.ensure_future(self._queue.put(batch))
        await asyncio.wait({put, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            put.cancel()
            # The processor died: raise its error in the agent, whose supervisor restarts it;
            # the unacked events are delivered again.
            self._task.result()
            raise RuntimeError("batch processor stopped")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - closing; error already raised
                pass
            self._task = None

    async def _run(self) -> None:
        # The batch whose rest is outstanding, with the task running it once the pipeline had
        # nothing else to do (the rest then runs beside the wait for the next batch).
        pending: Optional[tuple[list[EventT], Awaitable[None], Optional[asyncio.Future]]] = None
        try:
            while True:
                if pending is None:
                    first = await self._queue.get()
                elif not self._queue.empty():
                    first = self._queue.get_nowait()
                else:
                    # Nothing to overlap with yet: run the rest now (freshness), and fold the
                    # next batch as soon as it comes if the rest is still waiting for scores.
                    batch_p, rest, running = pending
                    running = running or asyncio.ensure_future(rest)
                    pending = (batch_p, rest, running)
                    get = asyncio.ensure_future(self._queue.get())
                    await asyncio.wait({get, running}, return_when=asyncio.FIRST_COMPLETED)
                    if not get.done():
                        get.cancel()
                        await self._complete(*pending)
                        pending = None
                        continue
                    first = get.result()
                batch = list(first)
                while not self._queue.empty() and len(batch) < self._max_events:
                    batch.extend(self._queue.get_nowait())
                rest = await self._process(batch)
                if pending is not None:
                    await self._complete(*pending)
                    pending = None
                if rest is None:
                    self._ack(batch)
                else:
                    pending = (batch, rest, None)
        finally:
            if pending is not None:
                # Never completed: its events are not acked (they are read again), and the
                # processor is told so (``close``) if its rest never ran to the end.
                _, rest, running = pending
                if running is not None:
                    running.cancel()
                close = getattr(rest, "close", None)
                if close is not None:
                    close()

    async def _complete(self, batch: list[EventT], rest: Awaitable[None],
                        running: Optional[asyncio.Future] = None) -> None:
        await (running if running is not None else rest)
        self._ack(batch)

def ack_events(stream: StreamT, events: Sequence[EventT], progress: Progress = PROGRESS, agent: str = "") -> None:
    """``stream.ack`` for every event of a batch, without a coroutine per event.

    The same steps as Faust's ``Stream.ack`` (the event's message acked, the stream's sensors
    told): awaiting ``stream.ack`` once per event cost 3% of a busy worker's event loop.
    """
    on_event_out, on_message_out = stream_ack_hooks(stream)
    newest: dict[Any, tuple[int, Optional[float]]] = {}
    for event in events:
        last_stream_to_ack = event.ack()
        message = event.message
        on_event_out(message.tp, message.offset, stream, event)
        if last_stream_to_ack:
            on_message_out(message.tp, message.offset, message)
        newest[message.tp] = (message.offset, message.timestamp)
    progress.record(newest, agent)  # the consumer lag (kafka/lag.py), once per partition and batch


async def take_batches(
    app: AppT, stream: StreamT, size: int, within: float,
    *, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncIterator[list[EventT]]:
    """Micro-batches read from the agent's channel queue directly, as ``noack_take`` would give.

    Faust hands every event from the channel queue to the stream's iterator one at a time (the
    current-event context, the sensors, and the take's buffer processor: a coroutine per event)
    before ``noack_take`` collects them. On the full Amazon stream that was half of the
    worker's event loop: read here in bulk, the same events and the same acks (the pipeline
    acks each event after its batch, ``ack_events``), the worker needed 220 instead of ~420 us
    of CPU per event. The stream's own bookkeeping that Faust reads elsewhere is kept: the
    monitor's last-inbound time per partition (the consumer's stalled-stream check).

    Batching as ``noack_take(size, within)``: events that arrive within ``within`` of the last
    batch are collected until then, at most ``size`` a batch; an event that arrives later than
    that (a quiet stream) is taken at once, and under a backlog of ``size`` or more the batch
    goes without waiting. Exceptions thrown into the channel are raised here; a closed
    channel ends the batches, as it ends Faust's stream iteration.
    """
    await stream.maybe_start()
    queue = stream.channel.queue  # type: ignore[attr-defined]
    inbound = app.monitor.stream_inbound_time
    loop = asyncio.get_running_loop()
    next_at = loop.time() + within
    while not stream.should_stop:
        try:
            first = await queue.get()
        except StopAsyncIteration:
            return
        if queue.qsize() + 1 < size:
            delay = next_at - loop.time()
            if delay > 0:
                await sleep(delay)
        batch = [first]
        while len(batch) < size and queue.qsize():
            batch.append(queue.get_nowait())
        now = monotonic()
        for event in batch:
            inbound[event.message.tp] = now
        next_at = loop.time() + within  # the window runs from the batch, not from the next call
        yield batch


async def run_batches(
    app: AppT,
    stream: StreamT,
    process: Callable[[Sequence[EventT]], Awaitable[Optional[Awaitable[None]]]],
    *,
    size: int,
    within: float,
    depth: int = 4,
    what: str = "batch processing",
    keep_unacked: Optional[Callable[[EventT], bool]] = None,
    between_batches: Callable[[], None] = lambda: None,
) -> None:
    """An agent's body: micro-batches taken (``take_batches``, no acks), processed in order, acked after.

    ``keep_unacked(event)``: events the processor left alone on purpose (a partition revoked
    since they were fetched): not acked, so no commit covers them and their partition's owner
    reads them again.

    ``between_batches()`` runs before each batch is processed and after each is acked (the
    worker freezes what survived there: worker/collector.py).

    Faust's ``take_events`` acks a batch in a ``finally``, so an exception while processing
    acked records whose effect never happened. Here an error stops the worker instead; the
    restarted worker reads the unacked records again (every processor is idempotent).
    """
    def ack(events: Sequence[EventT]) -> None:
        if keep_unacked is not None:
            events = [e for e in events if not keep_unacked(e)]
        ack_events(stream, events, agent=what)
        between_batches()

    async def process_batch(batch: Sequence[EventT]) -> Optional[Awaitable[None]]:
        between_batches()
        return await process(batch)

    pipeline = BatchPipeline(process_batch, ack, depth=depth, max_events=depth * size)
    try:
        async for batch in take_batches(app, stream, size, within):
            await pipeline.submit(batch)
    except Exception as exc:
        log.exception("%s failed; stopping the worker so that no record is acked unprocessed", what)
        await app.crash(exc)
        raise
    finally:
        await pipeline.close()
