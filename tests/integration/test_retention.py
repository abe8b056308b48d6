"""A worker stopped past the retention of its committed offset.

Kafka deleted the records after the group's committed offset (they were older than
``retention.ms``) while the worker was down. Restarted, it must reset to the log start (the
project's ``earliest`` policy), apply what is still there exactly once, report a lag that
drains to 0, and be ready, without a stalled partition. Fails when the reset is ``latest``
(the surviving records are skipped: profiles missing) or when the worker cannot get past the
out-of-range offset (not ready, or a stall).
"""

from __future__ import annotations

import asyncio
import json
import re
import time

import aiokafka
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from .helpers import Model, get, http, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
TOPIC = "amazon-product-views"
ENV = {"RECSYS_READY_STALL_S": "5"}


async def set_configs(bootstrap: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        # AlterConfigs replaces a topic's whole config: keep topics.yaml's, change these.
        from recsys_faust.kafka.topics import load_topics
        from pathlib import Path as _Path

        declared = load_topics(_Path(__file__).resolve().parents[2] / "topics.yaml", replication_factor=1)[TOPIC].config
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, TOPIC, {**declared, **configs})])
    finally:
        await admin.close()


async def offsets(bootstrap: str) -> dict[int, tuple[int, int]]:
    """partition -> (log start offset, end offset)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        parts = [p["partition"] for p in (await admin.describe_topics([TOPIC]))[0]["partitions"]]
    finally:
        await admin.close()
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    await asyncio.sleep(0)
    try:
        tps = [TopicPartition(TOPIC, p) for p in parts]
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        return {tp.partition: (starts[tp], ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


async def produce_at(bootstrap: str, events: list[tuple[str, dict]], at: float) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for _, obj in events:
            await producer.send(TOPIC, json.dumps(obj).encode(), key=obj["user_id"].encode(),
                                timestamp_ms=int(at * 1000))
        await producer.flush()
    finally:
        await producer.stop()


def views(prefix: str, users: int, per_user: int, t0: float) -> list[tuple[str, dict]]:
    return [("view", {"event_id": f"{prefix}-{u}-{i}", "user_id": f"{prefix}u{u}", "product_id": f"p{(u + i) % 17}",
                      "category": "c1", "timestamp": t0 + i}) for u in range(users) for i in range(per_user)]


def test_a_worker_stopped_past_retention_resets_to_the_log_start_and_is_ready(stack):
    t0 = time.time() - 3600
    worker = stack.add_worker("w1", extra_env=ENV)
    first = views("early", 20, 3, t0)
    produce_events(stack.broker.bootstrap, first)
    wait_until(lambda: all(get(f"{worker.url}/api/users/{o['user_id']}/profile")[0] == 200 for _, o in first),
               60, what="the first events applied (and committed at the stop)")
    worker.stop()
    gone = views("gone", 20, 3, t0)              # produced while the worker is down, then deleted
    produce_events(stack.broker.bootstrap, gone)
    # Short segments and retention: the next record rolls the segment, the cleaner deletes it.
    asyncio.run(set_configs(stack.broker.bootstrap, {"segment.ms": "500", "retention.ms": "1500"}))
    ends = {p: end for p, (_, end) in asyncio.run(offsets(stack.broker.bootstrap)).items()}
    time.sleep(0.6)                               # past segment.ms: the next record opens a new segment
    kept = views("kept", 20, 3, t0)
    # Their Kafka timestamps 20 minutes ahead: retention (1.5 s here) deletes by record time, and
    # would take the active segment too once all of it is older than that.
    asyncio.run(produce_at(stack.broker.bootstrap, kept, time.time() + 1200))

    assert sum(ends.values()) == len(first) + len(gone), ends

    def deleted() -> bool:   # every record before ``kept`` is gone, on every partition that had any
        now = asyncio.run(offsets(stack.broker.bootstrap))
        return all(now[p][0] >= end for p, end in ends.items() if end > 0)

    wait_until(deleted, 60, interval=1, what="retention to delete the records past the committed offsets")
    asyncio.run(set_configs(stack.broker.bootstrap, {"segment.ms": "604800000", "retention.ms": "604800000"}))
    worker.start()
    worker.wait_ready()
    model = Model(kept)
    wait_until(lambda: all(get(f"{worker.url}/api/users/{u}/profile")[1].get("counts") == model.counts(u)
                           for u in model.by_user), 60, what="what survived applied exactly once")
    leaked = {o["user_id"]: get(f"{worker.url}/api/users/{o['user_id']}/profile") for _, o in gone}
    assert all(s == 404 for s, _ in leaked.values()), {u: v for u, v in list(leaked.items())[:3]}

    def lag() -> float:
        _, text = http("GET", f"{worker.url}/metrics?name[]=recsys_consumer_lag_records")
        return sum(float(v) for v in re.findall(rf'^recsys_consumer_lag_records\{{[^}}]*topic="{TOPIC}"[^}}]*\}} (\S+)',
                                                text, re.M))

    wait_until(lambda: lag() == 0, 30, what="the lag drained")
    status, ready = get(f"{worker.url}/api/health/ready")
    assert status == 200 and ready["ready"], ready
