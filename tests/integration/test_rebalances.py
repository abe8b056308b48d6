"""Rebalances under Kafka's group coordinator while events flow: one worker, then three, then two
(one stopped), then a rolling restart of both. In the end every worker's port serves every
profile and every item's successors exactly as the independent model says, and PostgreSQL holds
every event once. The offsets the broker skipped are counted (``recsys_offset_gaps_total``):
none here, since nothing compacts or writes transactions on these topics.
"""

from __future__ import annotations

import re
import threading
import time

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, across_midnight, get, http, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
WITH_DATABASE = True
END = across_midnight()
ENV = {"RECSYS_BROKER_COMMIT_INTERVAL": "2"}


def stored(stack) -> set[str]:
    with psycopg.connect(stack.postgres.url, connect_timeout=3) as conn:
        if conn.execute("SELECT to_regclass('user_events')").fetchone()[0] is None:
            return set()
        return {r[0] for r in conn.execute("SELECT event_id FROM interactions UNION ALL SELECT event_id FROM user_events")}


def test_one_three_two_workers_and_a_rolling_restart_under_load(stack):
    events = synthetic_events(ShopSpec(users=180, items=120, categories=6, events_per_user=12, seed=23), end=END)
    model = Model(events)
    chunks = [events[i:i + 40] for i in range(0, len(events), 40)]
    fed = threading.Event()
    progress = [0]

    def feed() -> None:
        for chunk in chunks:   # about a minute of steady load
            produce_events(stack.broker.bootstrap, chunk)
            progress[0] += 1
            time.sleep(0.1)
        fed.set()

    w1 = stack.add_worker("w1", extra_env=ENV)
    threading.Thread(target=feed, daemon=True).start()
    wait_until(lambda: progress[0] >= 5, 30, what="the load under way")
    w2 = stack.add_worker("w2", extra_env=ENV)
    w3 = stack.add_worker("w3", extra_env=ENV)
    wait_until(lambda: all(get(f"{w.url}/api/health")[1]["broker"]["assigned_partitions"] for w in (w1, w2, w3)),
               60, what="partitions on all three workers")
    w3.stop()                                   # three -> two
    for w in (w1, w2):                          # a rolling restart, each on its own data dir
        w.stop()
        w.start()
        w.wait_ready()
    wait_until(fed.is_set, 180, what="the whole load produced")
    workers = (w1, w2)

    def wrong_profiles(w) -> list[str]:
        return [u for u in model.by_user if get(f"{w.url}/api/users/{u}/profile")[1].get("counts") != model.counts(u)]

    wait_until(lambda: not any(wrong_profiles(w) for w in workers), 120, interval=1,
               what="every profile exact on both ports")
    successors = model.successors()
    wait_until(lambda: not any(model.wrong_successors(w.url, sorted(successors)) for w in workers), 60, interval=1,
               what="every item's successors exact on both ports")
    want = {o["event_id"] for _, o in events}
    wait_until(lambda: stored(stack) >= want, 60, what="every event in PostgreSQL")
    with psycopg.connect(stack.postgres.url) as conn:
        rows = conn.execute("SELECT count(*) FROM interactions").fetchone()[0] + \
            conn.execute("SELECT count(*) FROM user_events").fetchone()[0]
    assert rows == len(want)
    for w in workers:
        _, text = http("GET", f"{w.url}/metrics?name[]=recsys_offset_gaps_total")
        gaps = sum(float(v) for v in re.findall(r'^recsys_offset_gaps_total\{[^}]*\} (\S+)', text, re.M))
        print(f"{w.name}: {gaps:.0f} offsets skipped by the broker")
        assert gaps == 0
