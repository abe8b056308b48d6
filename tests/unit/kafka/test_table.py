"""send_all_staged: every table-partition's changelog send is in flight at once.
ChangelogPipe: a batch's changelog sends run behind it, in batch order, and are drained."""

from __future__ import annotations

import asyncio

import pytest

from recsys_faust.kafka.table import ChangelogPipe, send_all_staged


class _Partitions:
    """Stands in for a table: one send per partition, each held until the test releases it
    (as aiokafka's ``send_batch`` holds a send while the partition's previous batch drains)."""

    def __init__(self, name: str, partitions: list[int], entered: list[str], release: asyncio.Event) -> None:
        self.name, self.partitions, self.entered, self.release = name, partitions, entered, release

    def _staged_sends(self, writes: object) -> list:
        async def send(p: int) -> None:
            self.entered.append(f"{self.name}[{p}]")
            await self.release.wait()
        return [send(p) for p in self.partitions]


async def test_every_partition_send_is_in_flight_before_any_completes():
    entered: list[str] = []
    release = asyncio.Event()
    tables = [_Partitions(name, [0, 1, 2, 3], entered, release) for name in ("profiles", "lists")]
    task = asyncio.create_task(send_all_staged([(t, None) for t in tables]))
    for _ in range(5):
        await asyncio.sleep(0)
    # awaited one after another, only the first send would have started by now
    assert sorted(entered) == sorted(f"{n}[{p}]" for n in ("profiles", "lists") for p in range(4))
    assert not task.done()
    release.set()
    await task


async def test_nothing_staged_sends_nothing():
    log: list = []
    table = FakeTable(log)
    table._staged_sends = lambda writes: []   # a table whose batch touched no partition
    assert await send_all_staged([]) is None
    assert await send_all_staged([(table, "nothing")], acked=True) is None
    assert log == [] and table.gates == {}


class FakeTable:
    """Stands in for StrKeyTable's ``_staged_sends``: each send is released by the test."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.gates: dict[str, asyncio.Event] = {}

    def _staged_sends(self, writes: str) -> list:
        gate = self.gates.setdefault(writes, asyncio.Event())

        async def send() -> None:
            self.log.append(("start", writes))
            await gate.wait()
            if writes.startswith("bad"):
                raise RuntimeError(f"send of {writes} failed")
            self.log.append(("done", writes))
        return [send()]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_batch_does_not_wait_for_its_own_sends_but_for_the_previous_batches():
    log: list = []
    table = FakeTable(log)
    pipe = ChangelogPipe(in_flight=1)
    await asyncio.wait_for(pipe.send([(table, "b1")]), 1)  # returns with b1 still in flight
    await settle()
    assert log == [("start", "b1")]
    second = asyncio.ensure_future(pipe.send([(table, "b2")]))
    await settle()
    assert not second.done(), "batch 2 went on before batch 1's sends completed"
    assert ("start", "b2") not in log, "batch 2's sends started before batch 1's completed"
    table.gates["b1"].set()
    await asyncio.wait_for(second, 1)
    await settle()
    assert log == [("start", "b1"), ("done", "b1"), ("start", "b2")]
    drained = asyncio.ensure_future(pipe.drain())
    await settle()
    assert not drained.done(), "drain returned with batch 2's sends outstanding"
    table.gates["b2"].set()
    await asyncio.wait_for(drained, 1)
    assert log[-1] == ("done", "b2")


async def test_a_failed_send_is_raised_by_drain_and_by_the_next_batch_and_stops_later_sends():
    log: list = []
    table = FakeTable(log)
    pipe = ChangelogPipe()
    await pipe.send([(table, "bad1")])
    table.gates.setdefault("bad1", asyncio.Event()).set()
    with pytest.raises(RuntimeError, match="bad1"):
        await asyncio.wait_for(pipe.send([(table, "b2")]), 1)
    with pytest.raises(RuntimeError, match="bad1"):
        await asyncio.wait_for(pipe.drain(), 1)
    assert ("start", "b2") not in log


async def test_drain_with_nothing_sent_returns_at_once():
    await asyncio.wait_for(ChangelogPipe().drain(), 1)


async def test_with_room_for_three_batches_only_the_fourth_waits_and_sends_stay_in_order():
    log: list = []
    table = FakeTable(log)
    pipe = ChangelogPipe(in_flight=3)
    for name in ("b1", "b2", "b3"):
        await asyncio.wait_for(pipe.send([(table, name)]), 1)   # none waits: three outstanding
    await settle()
    assert log == [("start", "b1")]   # b2's sends wait for b1's: a partition's records in order
    fourth = asyncio.ensure_future(pipe.send([(table, "b4")]))
    await settle()
    assert not fourth.done(), "a fourth batch went on with three batches' sends outstanding"
    table.gates["b1"].set()
    await asyncio.wait_for(fourth, 1)
    for name in ("b2", "b3", "b4"):
        table.gates.setdefault(name, asyncio.Event()).set()
    await asyncio.wait_for(pipe.drain(), 1)
    assert [n for what, n in log if what == "start"] == ["b1", "b2", "b3", "b4"]
    assert [n for what, n in log if what == "done"] == ["b1", "b2", "b3", "b4"]


async def test_a_failed_send_stops_the_later_ones_and_is_raised_by_drain_with_room_in_flight():
    log: list = []
    table = FakeTable(log)
    pipe = ChangelogPipe(in_flight=4)
    await pipe.send([(table, "bad1")])
    await pipe.send([(table, "b2")])
    table.gates.setdefault("bad1", asyncio.Event()).set()
    with pytest.raises(RuntimeError, match="bad1"):
        await asyncio.wait_for(pipe.drain(), 1)
    assert ("start", "b2") not in log
    with pytest.raises(RuntimeError, match="bad1"):
        await asyncio.wait_for(pipe.send([(table, "b3")]), 1)
