"""An upstream producer that writes amazon-purchases in transactions, some committed, some aborted.

Every transaction leaves a marker offset on the partition, and an aborted one leaves its records
too: the worker reads ``read_committed`` and meets offsets the broker does not return. They must
count as done without a rejoin (each rejoin was a rebalance of the whole group, and a marker at
the end of every transaction made a storm of them), without a stalled partition, and no aborted
record may ever be applied. Fails when the worker reads ``read_uncommitted`` (aborted purchases
counted) and when skipped offsets are not counted as done (the partition stalls behind the first
marker: readiness reports it, and the committed offset stops).
"""

from __future__ import annotations

import asyncio
import json
import time

import aiokafka
import pytest
from aiokafka import TopicPartition

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, get, produce_events, wait_until

pytestmark = pytest.mark.integration
ENV = {"RECSYS_READY_STALL_S": "5"}


async def transactions(bootstrap: str, committed: list[dict], aborted: list[dict], per_txn: int = 5) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="upstream-shop-1")
    await producer.start()
    try:
        chunks = [(c, False) for c in (committed[i:i + per_txn] for i in range(0, len(committed), per_txn))]
        chunks += [(a, True) for a in (aborted[i:i + per_txn] for i in range(0, len(aborted), per_txn))]
        chunks.sort(key=lambda c: c[0][0]["timestamp"])   # aborted and committed interleaved
        for chunk, abort in chunks:
            await producer.begin_transaction()
            for obj in chunk:
                await producer.send("amazon-purchases", key=obj["user_id"].encode(), value=json.dumps(obj).encode())
            if abort:
                await producer.abort_transaction()
            else:
                await producer.commit_transaction()
    finally:
        await producer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        out = {}
        for p in parts:
            out[p] = await consumer.committed(TopicPartition(topic, p)) or 0
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {p: (out[p], ends[TopicPartition(topic, p)]) for p in parts}
    finally:
        await consumer.stop()


def test_committed_and_aborted_transactions_no_rejoin_no_stall_aborted_never_applied(stack):
    worker = stack.add_worker("w1", extra_env=ENV)
    events = synthetic_events(ShopSpec(users=30, items=40, categories=4, events_per_user=12, seed=41),
                              end=time.time() - 120)
    purchases = [o for k, o in events if k == "purchase"]
    others = [(k, o) for k, o in events if k != "purchase"]
    kept, dropped = purchases[::2], purchases[1::2]
    dropped = [{**o, "event_id": o["event_id"] + "-aborted"} for o in dropped]
    assert len(kept) >= 10 and len(dropped) >= 10
    produce_events(stack.broker.bootstrap, others)
    # Joins counted from here: on a slow machine the group's first join could be answered
    # "member not recognized" by a coordinator still loading its partition (a rejoin at start,
    # seen before any record), which is not what this test is about.
    joins_before = worker.log_path.read_text().count("Setting newly assigned partitions")
    asyncio.run(transactions(stack.broker.bootstrap, kept, dropped))
    model = Model(others + [("purchase", o) for o in kept])

    def wrong() -> list[str]:
        return [u for u in model.by_user
                if get(f"{worker.url}/api/users/{u}/profile")[1].get("counts") != model.counts(u)]

    wait_until(lambda: not wrong(), 90, what="every profile to count the committed purchases only")
    # Every partition's committed offset reaches its end (markers and aborted records included).
    def caught_up() -> bool:
        offsets = asyncio.run(committed_offsets(stack.broker.bootstrap, stack.settings.kafka.app_id, "amazon-purchases"))
        return all(c == end for c, end in offsets.values())

    wait_until(caught_up, 60, what="the committed offsets to pass every transaction marker")
    status, ready = get(f"{worker.url}/api/health/ready")
    assert status == 200 and ready["ready"], ready
    assert not wrong()
    log = worker.log_path.read_text()
    assert log.count("Setting newly assigned partitions") == joins_before, "the worker rejoined its group"
