"""Micro-batches processed while the next one is being taken, acknowledged only when done.

Faust's ``take_events`` stops filling its buffer while the agent holds a batch, so delivery
(fetch, decode, queue: about a third of a worker's time) and processing never overlapped:
measured, the agent waited as long for each batch as it spent on it. With ``noack_take`` the
buffer is released as soon as the batch is handed here; a single task processes batches in
order and acks each event only after its batch's state is written, so an offset is never
committed ahead of its state (at-least-once as before, replays are skipped by the state).
``depth`` bounds the batches waiting, which is the back-pressure on the stream.

Batches that queued up while one was processed are merged (up to ``max_events``) and processed
as one: under a backlog the unit of work grows (one matrix product, one changelog batch per
partition for more events), while a lone event at low load is still processed at once. So the
take's ``within`` can stay short for freshness without shrinking the batches under load.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Optional, Sequence

from faust.types import AppT, EventT, StreamT

log = logging.getLogger(__name__)


class BatchPipeline:
    def __init__(
        self,
        process: Callable[[Sequence[EventT]], Awaitable[None]],
        ack: Callable[[EventT], Awaitable[Any]],
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
        while True:
            batch = list(await self._queue.get())
            while not self._queue.empty() and len(batch) < self._max_events:
                batch.extend(self._queue.get_nowait())
            await self._process(batch)
            for event in batch:
                await self._ack(event)


async def run_batches(
    app: AppT,
    stream: StreamT,
    process: Callable[[Sequence[EventT]], Awaitable[None]],
    *,
    size: int,
    within: float,
    depth: int = 4,
    what: str = "batch processing",
) -> None:
    """An agent's body: micro-batches taken without acks, processed in order, acked after.

    Faust's ``take_events`` acks a batch in a ``finally``, so an exception while processing
    acked records whose effect never happened. Here an error stops the worker instead; the
    restarted worker reads the unacked records again (every processor is idempotent).
    """
    pipeline = BatchPipeline(process, stream.ack, depth=depth, max_events=depth * size)
    try:
        async for batch in stream.noack_take(size, within=within):
            await pipeline.submit(batch)
    except Exception as exc:
        log.exception("%s failed; stopping the worker so that no record is acked unprocessed", what)
        await app.crash(exc)
        raise
    finally:
        await pipeline.close()
