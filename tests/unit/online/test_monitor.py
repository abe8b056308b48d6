"""The recsys-served records' batched sends (online/monitor.py), against a recording producer."""

import asyncio
import logging

import pytest
from aiokafka.errors import KafkaTimeoutError, ProducerClosed

from recsys_faust.kafka.partitioning import user_partition
from recsys_faust.online.attribution import Key
from recsys_faust.online.monitor import OnlineMonitor, ServedSender
from recsys_faust.online.stats import OnlineStats
from recsys_faust.ranking.model.active import ModelHolder
from recsys_faust.settings import Settings


class Batch:
    def __init__(self, room: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self.room = room

    def append(self, *, key, value, timestamp):
        if len(self.records) >= self.room:
            return None  # full, as aiokafka's BatchBuilder says
        self.records.append((key, value))
        return object()


class Producer:
    """Batches per (topic, partition) in the order they were sent; ``gate`` holds sends back."""

    def __init__(self, room: int = 100, gate: asyncio.Event | None = None, fail: bool = False,
                 undelivered: bool = False) -> None:
        self.room, self.gate, self.fail, self.undelivered = room, gate, fail, undelivered
        self.sent: list[tuple[str, int, list]] = []

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def send_batch(self, batch, topic, *, partition):
        if self.fail:
            raise ConnectionError("broker gone")
        if self.gate is not None:
            await self.gate.wait()
        self.sent.append((topic, partition, batch.records))
        delivery = asyncio.get_running_loop().create_future()
        if self.undelivered:
            delivery.set_exception(ConnectionError("not leader"))
        else:
            delivery.set_result(None)
        return delivery


def users(n: int) -> list[str]:
    return [f"user-{i}" for i in range(n)]


async def test_records_leave_as_one_batch_per_partition_in_order_after_the_linger():
    producer = Producer()
    sender = ServedSender("recsys-served", lambda: producer, lambda: 4, linger_s=0.01)
    for n, user in enumerate(users(40)):
        sender.add(user, b"%d" % n)
    assert producer.sent == []  # waiting for the linger
    await asyncio.sleep(0.05)
    assert len(producer.sent) == len({user_partition(u, 4) for u in users(40)})
    for topic, partition, records in producer.sent:
        assert topic == "recsys-served"
        want = [(u.encode(), b"%d" % n) for n, u in enumerate(users(40)) if user_partition(u, 4) == partition]
        assert records == want
    assert sender.sent == 40 and sender.dropped == 0


async def test_a_full_buffer_goes_at_once_and_a_full_producer_batch_is_split():
    producer = Producer(room=3)
    sender = ServedSender("recsys-served", lambda: producer, lambda: 1, linger_s=60, max_records=10)
    for n in range(10):
        sender.add("u", b"%d" % n)
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [len(r) for _, _, r in producer.sent] == [3, 3, 3, 1]
    assert [v for _, _, r in producer.sent for _, v in r] == [b"%d" % n for n in range(10)]


async def test_a_slow_broker_makes_records_wait_and_merge_never_drops_them():
    gate = asyncio.Event()
    producer = Producer(gate=gate)
    sender = ServedSender("recsys-served", lambda: producer, lambda: 1, linger_s=60, max_records=1, max_in_flight=2)
    for n in range(7):
        sender.add("u", b"%d" % n)
        await asyncio.sleep(0)
    assert sender.dropped == 0 and producer.sent == []  # two sends wait for the producer, five records wait
    gate.set()
    await sender.flush()
    assert sender.sent == 7 and sender.dropped == 0
    assert [v for _, _, r in producer.sent for _, v in r] == [b"%d" % n for n in range(7)]
    assert len(producer.sent) == 3  # the five that waited went as one batch


async def test_a_broker_that_stops_taking_batches_costs_counted_records_never_an_error():
    gate = asyncio.Event()
    producer = Producer(gate=gate)
    sender = ServedSender("recsys-served", lambda: producer, lambda: 2, linger_s=60, max_records=1, max_in_flight=2,
                          max_waiting=3)
    for user in users(8):
        sender.add(user, b"x")
        await asyncio.sleep(0)
    assert sender.dropped == 3  # two batches with the producer, three records waiting; the rest dropped, counted
    gate.set()
    await sender.flush()
    assert sender.sent == 5 and sender.dropped == 3
    failing = ServedSender("recsys-served", lambda: Producer(fail=True), lambda: 2, linger_s=60)
    failing.add("u", b"x")
    await failing.flush()
    assert failing.dropped == 1 and failing.sent == 0


async def test_flush_sends_what_waits():
    producer = Producer()
    sender = ServedSender("recsys-served", lambda: producer, lambda: 3, linger_s=60)
    sender.add("a", b"1")
    await sender.flush()
    assert producer.sent == [("recsys-served", user_partition("a", 3), [(b"a", b"1")])]


async def test_a_batch_the_broker_refuses_is_counted_undelivered():
    producer = Producer(room=2, undelivered=True)
    sender = ServedSender("recsys-served", lambda: producer, lambda: 1, linger_s=60)
    for n in range(5):
        sender.add("u", b"%d" % n)
    await sender.flush()
    await asyncio.sleep(0)
    assert sender.sent == 5 and sender.undelivered == 5 and sender.dropped == 0


class RefusingProducer:
    """A metrics producer whose every send raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error, self.calls = error, 0

    async def send_model_metric(self, *args, **kwargs):
        self.calls += 1
        raise self.error


@pytest.mark.parametrize("error, warned", [
    (ProducerClosed(), False),      # the worker's stop closed the producer while a post waited on it
    (KafkaTimeoutError(), True),    # the broker did not take the send within the request timeout
])
async def test_a_post_that_cannot_send_ends_without_raising_out_of_the_timer(error, warned, caplog):
    stats = OnlineStats()
    stats.answered(Key("v1", "als", "control"), ["p1"], hit=True)
    monitor = OnlineMonitor(Settings(), stats, ModelHolder(), ServedSender("recsys-served", lambda: None, lambda: 1),
                            catalogue_size=lambda: 10)
    monitor.producer = producer = RefusingProducer(error)
    with caplog.at_level(logging.WARNING, logger="recsys_faust.online.monitor"):
        await monitor.post()   # raised out of the timer (and crashed the worker) before
    assert producer.calls == 1 and monitor.posted == 0
    assert any("online figures not posted" in r.getMessage() for r in caplog.records) == warned
