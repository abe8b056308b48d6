import asyncio

import pytest

from recsys_faust.streaming.pipeline import BatchPipeline


def test_events_are_acked_in_order_only_after_their_batch_is_processed():
    log: list[tuple[str, object]] = []

    async def process(batch):
        log.append(("start", tuple(batch)))
        await asyncio.sleep(0.01)  # the agent keeps taking meanwhile
        log.append(("done", tuple(batch)))

    def ack(events):
        log.extend(("ack", event) for event in events)

    async def main():
        pipe = BatchPipeline(process, ack, depth=1)
        for batch in ([1, 2], [3], [4, 5]):
            await pipe.submit(batch)
        while len([e for e in log if e[0] == "ack"]) < 5:
            await asyncio.sleep(0.005)
        await pipe.close()

    asyncio.run(main())
    assert log == [("start", (1, 2)), ("done", (1, 2)), ("ack", 1), ("ack", 2),
                   ("start", (3,)), ("done", (3,)), ("ack", 3),
                   ("start", (4, 5)), ("done", (4, 5)), ("ack", 4), ("ack", 5)]


def test_a_failed_batch_is_not_acked_and_the_error_reaches_the_agent():
    acked: list[int] = []

    async def process(batch):
        if 3 in batch:
            raise ValueError("boom")

    def ack(events):
        acked.extend(events)

    async def main():
        pipe = BatchPipeline(process, ack, depth=1)
        await pipe.submit([1, 2])
        with pytest.raises(ValueError, match="boom"):
            await pipe.submit([3, 4])
            for _ in range(100):  # a submit after the failure raises it
                await pipe.submit([5])
                await asyncio.sleep(0.001)
        await pipe.close()

    asyncio.run(main())
    assert acked == [1, 2]


def two_step_batches():
    """A processor whose rests wait for a gate per batch (its scores), and a log of it all."""
    log: list[tuple[str, object]] = []
    release: dict[tuple, asyncio.Event] = {}

    async def process(batch):
        log.append(("fold", tuple(batch)))
        gate = release[tuple(batch)] = asyncio.Event()

        async def rest():
            await gate.wait()  # the scores of this batch
            log.append(("stored", tuple(batch)))
        return rest()

    def ack(events):
        log.extend(("ack", event) for event in events)

    return log, release, process, ack


def test_a_batch_arriving_while_a_rest_waits_is_folded_but_completes_after_it():
    log, release, process, ack = two_step_batches()

    async def main():
        pipe = BatchPipeline(process, ack, depth=4)
        await pipe.submit([1, 2])
        await asyncio.sleep(0.01)          # batch 1 folded; its rest runs, waiting for its scores
        await pipe.submit([3])
        await asyncio.sleep(0.01)          # batch 2 is folded meanwhile
        assert log == [("fold", (1, 2)), ("fold", (3,))]
        release[(3,)].set()                # batch 2's scores first: it still waits for batch 1
        await asyncio.sleep(0.01)
        assert log == [("fold", (1, 2)), ("fold", (3,))]
        release[(1, 2)].set()
        await asyncio.sleep(0.01)
        await pipe.close()

    asyncio.run(main())
    assert log == [("fold", (1, 2)), ("fold", (3,)), ("stored", (1, 2)), ("ack", 1), ("ack", 2),
                   ("stored", (3,)), ("ack", 3)]


def test_the_next_batch_is_folded_while_the_previous_one_waits_for_its_rest():
    log, release, process, ack = two_step_batches()

    async def main():
        pipe = BatchPipeline(process, ack, depth=4)
        # Two batches queued before the pipeline's task first runs: the second is folded
        # before the first one's rest is awaited.
        await pipe.submit([1])
        await pipe.submit([2])
        await asyncio.sleep(0.01)
        assert log == [("fold", (1,)), ("fold", (2,))]
        release[(2,)].set()                # out of order: batch 2's scores come first
        await asyncio.sleep(0.01)
        assert log == [("fold", (1,)), ("fold", (2,))]  # nothing completes before batch 1
        release[(1,)].set()
        await asyncio.sleep(0.01)
        await pipe.close()

    asyncio.run(main())
    assert log == [("fold", (1,)), ("fold", (2,)), ("stored", (1,)), ("ack", 1), ("stored", (2,)), ("ack", 2)]


def test_closing_the_pipeline_tells_an_unfinished_rest_and_acks_nothing_of_it():
    acked: list[int] = []
    closed: list[tuple] = []

    class Rest:
        def __init__(self, batch):
            self.batch = tuple(batch)

        def __await__(self):
            return asyncio.sleep(3600).__await__()  # its scores never come

        def close(self):
            closed.append(self.batch)

    async def process(batch):
        return Rest(batch)

    def ack(events):
        acked.extend(events)

    async def main():
        pipe = BatchPipeline(process, ack, depth=4)
        await pipe.submit([1, 2])
        await asyncio.sleep(0.01)
        await pipe.close()

    asyncio.run(main())
    assert acked == [] and closed == [(1, 2)]


# --- take_batches: the agent's channel queue read in bulk ------------------------------------

class _Message:
    def __init__(self, partition: int) -> None:
        self.tp = ("amazon-purchases", partition)


class _Event:
    def __init__(self, n: int) -> None:
        self.n = n
        self.message = _Message(n % 4)


class _Stream:
    """What take_batches uses of a Faust stream: start, stop flag, the channel's queue."""

    def __init__(self) -> None:
        from mode.utils.queues import FlowControlEvent, ThrowableQueue

        self.should_stop = False
        self.started = False
        flow = FlowControlEvent()
        flow.resume()
        self.channel = type("Channel", (), {})()
        self.channel.queue = ThrowableQueue(maxsize=10_000, flow_control=flow)

    async def maybe_start(self) -> None:
        self.started = True


class _App:
    def __init__(self) -> None:
        self.monitor = type("Monitor", (), {"stream_inbound_time": {}})()


def test_a_backlog_is_taken_in_batches_of_size_without_waiting_and_in_order():
    from recsys_faust.streaming.pipeline import take_batches

    async def main():
        app, stream, slept = _App(), _Stream(), []

        async def sleep(s):
            slept.append(s)

        for n in range(1_200):
            stream.channel.queue.put_nowait(_Event(n))
        it = take_batches(app, stream, 500, 0.02, sleep=sleep)
        first, second = await it.__anext__(), await it.__anext__()
        return stream, app, slept, first, second, stream.channel.queue.qsize()

    stream, app, slept, first, second, left = asyncio.run(main())
    assert stream.started
    assert [e.n for e in first] == list(range(500)) and [e.n for e in second] == list(range(500, 1_000))
    assert slept == [], "a full batch waited for the window"
    assert left == 200
    assert set(app.monitor.stream_inbound_time) == {("amazon-purchases", p) for p in range(4)}


def test_events_within_the_window_are_collected_and_a_late_event_is_taken_at_once():
    from recsys_faust.streaming.pipeline import take_batches

    async def main():
        app, stream, slept = _App(), _Stream(), []
        queue = stream.channel.queue

        async def sleep(s):
            slept.append(s)
            for n in (2, 3, 4):  # arriving while the window is open
                queue.put_nowait(_Event(n))

        it = take_batches(app, stream, 500, 0.05, sleep=sleep)
        queue.put_nowait(_Event(1))
        windowed = await it.__anext__()
        await asyncio.sleep(0.08)  # quiet for longer than the window
        queue.put_nowait(_Event(5))
        late = await it.__anext__()
        return slept, windowed, late

    slept, windowed, late = asyncio.run(main())
    assert [e.n for e in windowed] == [1, 2, 3, 4]
    assert [e.n for e in late] == [5]
    assert len(slept) == 1 and 0 < slept[0] <= 0.05, "the late event waited for a window"


def test_a_closed_channel_ends_the_batches_and_a_thrown_error_is_raised():
    from recsys_faust.streaming.pipeline import take_batches

    async def drain(exc):
        stream = _Stream()
        await stream.channel.queue.throw(exc)
        return [b async for b in take_batches(_App(), stream, 10, 0.01)]

    assert asyncio.run(drain(StopAsyncIteration())) == []
    with pytest.raises(ValueError, match="broken channel"):
        asyncio.run(drain(ValueError("broken channel")))
