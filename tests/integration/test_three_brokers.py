"""Three Apache Kafka brokers, replication factor 3, min.insync.replicas 2.

- Topics: after ``topics apply`` and a worker start, every topic (the changelogs the worker
  created included) has three replicas and the configs asked. Fails when the app creates its
  topics with replication factor 1 (its old default) or without min.insync.replicas.
- Broker failover: the broker leading most partitions is SIGKILLed mid-stream. The worker is not
  restarted; the state is exact and PostgreSQL holds every event once. Then a second broker goes
  down too: writes with acks=all are refused (NotEnoughReplicas: none acknowledged), and
  everything resumes when the brokers return.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import psycopg
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.kafka.topics import describe_topic_configs

from .helpers import Model, get, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
BROKERS = 3
WITH_DATABASE = True


async def describe(bootstrap: str) -> tuple[dict[str, list[dict]], dict[str, dict[str, str]]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        names = [n for n in await admin.list_topics() if not n.startswith("__")]
        parts = {d["topic"]: d["partitions"] for d in await admin.describe_topics(names)}
        configs, why = await describe_topic_configs(admin, names)
        assert not why, why
        return parts, configs
    finally:
        await admin.close()


def leaders(bootstrap: str) -> dict[int, int]:
    parts, _ = asyncio.run(describe(bootstrap))
    count: dict[int, int] = {}
    for topic, ps in parts.items():
        for p in ps:
            count[p["leader"]] = count.get(p["leader"], 0) + 1
    return count


def stored_ids(stack, prefix: str) -> list[str]:
    with psycopg.connect(stack.postgres.url, connect_timeout=3) as conn:
        return [r[0] for r in conn.execute(
            "SELECT event_id FROM interactions WHERE event_id LIKE %s UNION ALL "
            "SELECT event_id FROM user_events WHERE event_id LIKE %s", (prefix + "%", prefix + "%"))]


def shop(seed: int, prefix: str) -> list[tuple[str, dict]]:
    evs = synthetic_events(ShopSpec(users=60, items=60, categories=4, events_per_user=16, seed=seed),
                           end=time.time() - 120)
    return [(k, {**o, "event_id": prefix + o["event_id"], "user_id": prefix + o["user_id"]}) for k, o in evs]


@pytest.fixture(scope="module")
def worker(stack):
    return stack.add_worker("w1")


def test_every_topic_changelogs_included_has_three_replicas_and_the_configs_asked(stack, worker):
    wait_until(lambda: any(t.endswith("-changelog") for t in asyncio.run(describe(stack.broker.bootstrap))[0]),
               60, what="the worker's changelog topics")
    parts, configs = asyncio.run(describe(stack.broker.bootstrap))
    from recsys_faust.kafka.topics import plan_from_settings

    plan = plan_from_settings(stack.settings)
    changelogs = [t for t in parts if t.endswith("-changelog")]
    assert len(changelogs) >= 5, sorted(parts)
    for topic, ps in parts.items():
        assert all(len(p["replicas"]) == 3 for p in ps), (topic, [p["replicas"] for p in ps])
    for spec in plan.topics:
        for key, want in spec.config.items():
            assert configs[spec.name][key] == want, (spec.name, key)
    for topic in changelogs:
        assert configs[topic]["min.insync.replicas"] == "2" and configs[topic]["cleanup.policy"] == "compact", topic


def test_the_leading_broker_killed_mid_stream_then_a_second_one(stack, worker):
    events = shop(3, "bf-")
    model = Model(events)
    half = len(events) // 2
    feeder_error: list[BaseException] = []

    def feed() -> None:
        try:
            for i in range(half, len(events), 60):
                produce_events(stack.broker.bootstrap, events[i:i + 60])
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            feeder_error.append(exc)

    produce_events(stack.broker.bootstrap, events[:half])
    counts = leaders(stack.broker.bootstrap)
    victim = next(n for n in stack.broker.nodes if n.node_id == max(counts, key=counts.get))
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    stack.broker.kill_node(victim)
    feeder.join(120)
    assert not feeder_error, feeder_error

    def wrong() -> list[str]:
        return [u for u in model.by_user
                if get(f"{worker.url}/api/users/{u}/profile")[1].get("counts") != model.counts(u)]

    wait_until(lambda: not wrong(), 120, what="every profile exact after the leader was lost")
    want = {o["event_id"] for _, o in events}
    wait_until(lambda: set(stored_ids(stack, "bf-")) == want, 120, what="every event in PostgreSQL")
    ids = stored_ids(stack, "bf-")
    assert len(ids) == len(set(ids)) == len(want)
    assert worker.alive() and worker.proc is not None

    # A second broker down: one replica left, below min.insync.replicas. acks=all is refused.
    second = next(n for n in stack.broker.nodes if n.alive())
    stack.broker.kill_node(second)
    refused = shop(4, "nr-")[:40]

    def try_produce() -> tuple[int, int]:
        """Every write of ``refused`` at once, acks=all, 15 s each to be acknowledged. librdkafka's
        producer, whose flush has a deadline: aiokafka's stop() and the event loop's shutdown can
        wait without end for batches a cluster without a quorum never takes."""
        from confluent_kafka import Producer

        results: list[bool] = []
        producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "acks": "all", "enable.idempotence": True,
                             "message.timeout.ms": 15000, "partitioner": "murmur2_random"})
        topics = {"view": "amazon-product-views", "purchase": "amazon-purchases", "review": "amazon-reviews",
                  "user-event": "amazon-user-events"}
        for kind, obj in refused:
            producer.produce(topics[kind], json.dumps(obj).encode(), key=obj["user_id"].encode(),
                             on_delivery=lambda err, msg: results.append(err is None))
        producer.flush(40)   # every delivery is reported within message.timeout.ms
        return sum(results), len(refused) - sum(results)

    ok, failed = try_produce()
    assert ok == 0 and failed == len(refused), (ok, failed)   # not one acknowledged
    stack.broker.start_node(second)
    stack.broker.start_node(victim)
    after = shop(5, "ar-")
    produce_events(stack.broker.bootstrap, after)
    model_after = Model(after)
    wait_until(lambda: all(get(f"{worker.url}/api/users/{u}/profile")[1].get("counts") == model_after.counts(u)
                           for u in model_after.by_user), 120, what="the stream resumed after the brokers returned")
    assert not wrong()
    # The refused writes: never acknowledged. A write that timed out may still have reached the
    # leader's log and become visible once the in-sync replicas shrank to it (Kafka's contract
    # is about what was acknowledged); whatever of them arrived is stored once and applied once.
    arrived = stored_ids(stack, "nr-")
    assert len(arrived) == len(set(arrived))
