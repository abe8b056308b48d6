"""send_all_staged: every table-partition's changelog send is in flight at once."""

from __future__ import annotations

import asyncio

from recsys_faust.kafka.table import send_all_staged


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
    await send_all_staged([])
