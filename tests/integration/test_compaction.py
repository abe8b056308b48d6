"""Compacted changelogs: Kafka's log cleaner really ran over the workers' changelogs (they are
created with short segments and a low dirty ratio here), and the state rebuilt from them is exact.

Every user gets events in several waves, so each profile key is written many times; once the
cleaner has removed the older values (fewer records on a changelog than its offsets span, and
offset gaps where it removed them), a worker restarted on its data dir and a worker on an empty
data dir must both serve every profile and every item's successors exactly as the model says,
and an event sent again with an old event_id must still count once. Fails when recovery cannot
read past the gaps compaction leaves, or when a fold depends on the superseded values.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiokafka
import pytest
from aiokafka import TopicPartition

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, across_midnight, get, partition_ids, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
END = across_midnight()
ENV = {"RECSYS_CHANGELOG_TOPIC_CONFIG": json.dumps({"segment.ms": "300", "min.cleanable.dirty.ratio": "0.01",
                                                    "delete.retention.ms": "100", "min.compaction.lag.ms": "0"})}
CHANGELOG = "recsys-faust-user_profiles-changelog"


async def span_and_records(bootstrap: str, topic: str) -> tuple[int, int]:
    """(offsets the partitions span, records they hold)."""
    tps = [TopicPartition(topic, p) for p in await partition_ids(bootstrap, topic)]
    assert tps, topic
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=100)
    await consumer.start()
    await asyncio.sleep(0)
    try:
        starts, ends = await consumer.beginning_offsets(tps), await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        held = 0
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind():
            for records in (await consumer.getmany(timeout_ms=500)).values():
                held += len(records)
        return sum(ends[tp] - starts[tp] for tp in tps), held
    finally:
        await consumer.stop()


def test_rebuilt_from_compacted_changelogs_the_state_is_exact(stack):
    events = synthetic_events(ShopSpec(users=60, items=50, categories=4, events_per_user=20, seed=31), end=END)
    model = Model(events)
    worker = stack.add_worker("w1", extra_env=ENV)
    waves = [events[i::6] for i in range(6)]   # every user in every wave: each profile written six times or more
    for wave in waves:
        produce_events(stack.broker.bootstrap, sorted(wave, key=lambda e: e[1]["timestamp"]))
        time.sleep(0.4)                         # past segment.ms: each wave's changelog writes roll a segment

    def exact(w) -> bool:
        return all(get(f"{w.url}/api/users/{u}/profile")[1].get("counts") == model.counts(u) for u in model.by_user)

    wait_until(lambda: exact(worker), 90, what="every profile applied")
    def compacted() -> bool:   # the cleaner has run: fewer records than offsets on the changelog
        span, held = asyncio.run(span_and_records(stack.broker.bootstrap, CHANGELOG))
        return held < span * 0.8
    wait_until(compacted, 90, interval=2, what="the log cleaner to compact the profiles' changelog")
    span, held = asyncio.run(span_and_records(stack.broker.bootstrap, CHANGELOG))
    print(f"{CHANGELOG}: {held} records over {span} offsets after compaction")

    worker.stop()
    worker.start()                               # the same data dir: RocksDB plus the changelog tail
    worker.wait_ready()
    assert exact(worker)
    rebuilt = stack.add_worker("w2", extra_env=ENV)   # an empty data dir: every table from the changelogs
    worker.stop()                                     # w2 owns every partition now
    wait_until(lambda: get(f"{rebuilt.url}/api/health")[1]["broker"]["assigned_partitions"], 60)
    rebuilt.wait_ready()
    wait_until(lambda: exact(rebuilt), 90, what="every profile rebuilt from the compacted changelogs")
    successors = model.successors()
    wait_until(lambda: not model.wrong_successors(rebuilt.url, sorted(successors)), 60, interval=1,
               what="every item's successors rebuilt")
    # The de-duplication entries came back too: an old event sent again counts once.
    kind, old = events[0]
    produce_events(stack.broker.bootstrap, [(kind, old)])
    marker = ("view", {"event_id": "after-compaction", "user_id": old["user_id"], "product_id": "p-marker",
                       "timestamp": END, "category": "c0"})
    produce_events(stack.broker.bootstrap, [marker])
    want = {**model.counts(old["user_id"])}
    want["view"] = want.get("view", 0) + 1
    wait_until(lambda: get(f"{rebuilt.url}/api/users/{old['user_id']}/profile")[1].get("counts") == want, 30,
               what="the replayed event counted once, the new one applied")
