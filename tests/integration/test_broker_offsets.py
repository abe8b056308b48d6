"""The dev broker's end-offset defect, and the fetch-verified end offsets that cope with it."""

import asyncio

import aiokafka
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from recsys_faust.devstack.broker import DevBroker
from recsys_faust.kafka.transport import verified_end_offsets

pytestmark = pytest.mark.integration


async def _scenario(bootstrap: str) -> tuple[dict, dict]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic("offsets", 3, 1)])
    await admin.close()
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=50)
    await producer.start()
    # partition 0: one batch of 500; partition 1: 10 single-record batches; partition 2: empty
    futs = [await producer.send("offsets", b"x", partition=0) for _ in range(500)]
    await asyncio.gather(*futs)
    for _ in range(10):
        await (await producer.send("offsets", b"y", partition=1))
    await producer.stop()
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition("offsets", p) for p in range(3)]
        listed = await consumer.end_offsets(tps)
        fixed = await verified_end_offsets(consumer, listed)
    finally:
        await consumer.stop()
    return {tp.partition: v for tp, v in listed.items()}, {tp.partition: v for tp, v in fixed.items()}


def test_verified_end_offsets_are_the_true_log_ends():
    with DevBroker() as broker:
        listed, fixed = asyncio.run(_scenario(broker.bootstrap))
    assert fixed == {0: 500, 1: 10, 2: 0}
    # On Tansu the listed end of a 500-record batch is wrong; on Kafka both agree.
    assert listed[0] <= 500 and listed[1] == 10
