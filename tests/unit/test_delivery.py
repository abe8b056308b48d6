"""The worker consumer's inline delivery (kafka/transport.py): same outcomes as Faust's path."""

from __future__ import annotations

import asyncio

import pytest
from mode.utils.locks import Event

from recsys_faust.kafka.transport import _resume, wait_first_inline


class FaustWaitFirst:
    """Faust's wait_first in short (tasks, first completed, the rest cancelled), counting calls."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, *coros, timeout=None):
        self.calls += 1
        tasks = [asyncio.ensure_future(c) for c in coros]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            t.cancel()
        return [t.result() for t in done]


@pytest.mark.asyncio
async def test_a_delivery_that_does_not_block_completes_inline_without_faust_wait_first():
    faust_wait_first, suspend = FaustWaitFirst(), Event()
    delivered = []

    async def deliver(msg):
        delivered.append(msg)
        return msg * 2

    result = await wait_first_inline((deliver(21), suspend.wait()), None, False, faust_wait_first)
    assert delivered == [21] and result.results == [42] and not result.stopped
    assert faust_wait_first.calls == 0  # no tasks made


@pytest.mark.asyncio
async def test_a_blocked_delivery_resumes_where_it_stopped_and_finishes():
    faust_wait_first, suspend = FaustWaitFirst(), Event()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)  # full: the next put blocks
    steps = []

    async def deliver(msg):
        steps.append("before")
        await queue.put(msg)
        steps.append("after")
        return "ok"

    waiter = asyncio.ensure_future(wait_first_inline((deliver(7), suspend.wait()), None, False, faust_wait_first))
    await asyncio.sleep(0.01)
    assert steps == ["before"] and not waiter.done() and faust_wait_first.calls == 1
    assert queue.get_nowait() == 0  # room again: the blocked put goes on, once
    assert await asyncio.wait_for(waiter, 1) == ["ok"]
    assert steps == ["before", "after"] and queue.get_nowait() == 7 and queue.empty()


@pytest.mark.asyncio
async def test_a_blocked_delivery_is_abandoned_when_the_flow_is_suspended():
    faust_wait_first, suspend = FaustWaitFirst(), Event()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
    queue.put_nowait(0)
    cancelled = []

    async def deliver(msg):
        try:
            await queue.put(msg)
        except asyncio.CancelledError:
            cancelled.append(msg)
            raise

    waiter = asyncio.ensure_future(wait_first_inline((deliver(7), suspend.wait()), None, False, faust_wait_first))
    await asyncio.sleep(0.01)
    suspend.set()  # a rebalance: Faust's wait_first returns and cancels the delivery
    await asyncio.wait_for(waiter, 1)
    await asyncio.sleep(0)
    assert cancelled == [7] and queue.qsize() == 1


@pytest.mark.asyncio
async def test_while_the_flow_is_suspended_every_delivery_takes_faust_path():
    faust_wait_first, suspend = FaustWaitFirst(), Event()
    suspend.set()

    async def deliver(msg):
        return msg

    assert await wait_first_inline((deliver(1), suspend.wait()), None, True, faust_wait_first)
    assert faust_wait_first.calls == 1


@pytest.mark.asyncio
async def test_resume_propagates_errors_raised_after_the_suspension():
    fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def work():
        value = await fut
        raise ValueError(f"bad {value}")

    coro = work()
    suspended_on = coro.send(None)
    task = asyncio.ensure_future(_resume(coro, suspended_on))
    fut.set_result(3)
    with pytest.raises(ValueError, match="bad 3"):
        await task
