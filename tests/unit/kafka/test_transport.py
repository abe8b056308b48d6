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


class FakeFetcher:
    """aiokafka's Fetcher as far as FetchPacer sees it: one fetch call per request, which takes
    ``answer_s`` on the test's clock."""

    def __init__(self, clock: "FakeClock", answer_s: float = 0.0) -> None:
        self.clock, self.answer_s = clock, answer_s
        self.started: list[tuple[str, float]] = []

    async def _proc_fetch_request(self, assignment, node_id, request):
        self.started.append((node_id, self.clock.now))
        self.clock.now += self.answer_s
        return True


class FakeClock:
    """Time that moves only when the code under test sleeps (or a fetch takes time)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_a_paced_fetch_starts_no_sooner_than_the_interval_after_the_last_answer():
    from recsys_faust.kafka.transport import FetchPacer

    clock = FakeClock()
    fetcher = FakeFetcher(clock, answer_s=0.010)
    FetchPacer(fetcher, 0.008, clock=clock, sleep=clock.sleep)
    assert await fetcher._proc_fetch_request(None, "n1", None) is True  # the first: at once
    assert clock.slept == []
    answered = clock.now
    assert await fetcher._proc_fetch_request(None, "n1", None) is True  # right after: waits
    assert fetcher.started[1] == ("n1", pytest.approx(answered + 0.008))
    await fetcher._proc_fetch_request(None, "n2", None)  # another broker: its own answers count
    assert len(clock.slept) == 1
    clock.now += 0.5  # long after the last answer: no wait
    await fetcher._proc_fetch_request(None, "n1", None)
    assert len(clock.slept) == 1 and len(fetcher.started) == 4


async def test_a_paced_fetch_cancelled_while_waiting_returns_no_data_instead_of_raising():
    from recsys_faust.kafka.transport import FetchPacer

    fetcher = FakeFetcher(FakeClock())
    FetchPacer(fetcher, 10.0)  # the real clock and sleep
    await fetcher._proc_fetch_request(None, "n1", None)
    waiting = asyncio.ensure_future(fetcher._proc_fetch_request(None, "n1", None))
    await asyncio.sleep(0.01)
    waiting.cancel()
    # aiokafka's fetch routine reads the result of a cancelled fetch: it must be False, as
    # aiokafka's own fetch returns when cancelled, or the routine ends
    assert await asyncio.wait_for(asyncio.shield(waiting), 1) is False
    assert len(fetcher.started) == 1


class _Conf:
    def __init__(self) -> None:
        self.reads = 0

    @property
    def producer_threaded(self) -> bool:
        self.reads += 1
        return False


@pytest.mark.asyncio
async def test_the_lean_producer_buffer_counts_what_faust_counts_and_reads_the_setting_once():
    from types import SimpleNamespace

    from faust.transport.producer import ProducerBuffer

    from recsys_faust.kafka.transport import LeanProducerBuffer

    conf = _Conf()
    stock, lean = ProducerBuffer(), LeanProducerBuffer()
    stock.app = lean.app = SimpleNamespace(conf=conf)
    for n in range(5):
        assert lean.size == stock.size == n
        stock.pending.put_nowait(n)
        lean.pending.put_nowait(n)
    reads_by_stock = 5
    assert conf.reads == reads_by_stock + 1  # the stock buffer read it every time, the lean one once
