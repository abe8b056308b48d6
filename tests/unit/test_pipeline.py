import asyncio

import pytest

from recsys_faust.streaming.pipeline import BatchPipeline


def test_events_are_acked_in_order_only_after_their_batch_is_processed():
    log: list[tuple[str, object]] = []

    async def process(batch):
        log.append(("start", tuple(batch)))
        await asyncio.sleep(0.01)  # the agent keeps taking meanwhile
        log.append(("done", tuple(batch)))

    async def ack(event):
        log.append(("ack", event))

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

    async def ack(event):
        acked.append(event)

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
