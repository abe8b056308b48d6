"""Failover: two workers with the database, one SIGKILLed mid-stream. The survivor takes its
partitions and serves every user exactly from its own port; the killed worker restarts with
its data dir and rejoins; in the end both ports give every profile and every item's successors
exactly as the independent model says, and PostgreSQL holds every event exactly once.

Two faults it found, both fixed and guarded here: two sinks creating the schema at once (the
loser's first batch was dead-lettered; also `test_sink.py`'s regression test), and Faust
committing past offsets it never delivered after the rebalance (its gap handling; about one
run in five lost a few of the victim's records before `WorkerConsumer._add_gap` rejoined the
group instead). The failure prints the missing records' positions."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.devstack.workers import WorkerProcess

from .helpers import Model, across_midnight, get, http, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
WITH_DATABASE = True
END = across_midnight()
ENV = {"RECSYS_BROKER_COMMIT_INTERVAL": "3"}   # plenty processed-but-uncommitted at the kill


def assigned(worker) -> list[int]:
    try:
        status, health = get(f"{worker.url}/api/health")
    except OSError:
        return []
    return health["broker"]["assigned_partitions"] if isinstance(health, dict) else []


def stored(stack) -> tuple[int, int]:
    try:
        with psycopg.connect(stack.postgres.url, connect_timeout=2) as conn:
            return (conn.execute("SELECT count(*) FROM interactions").fetchone()[0],
                    conn.execute("SELECT count(*) FROM user_events").fetchone()[0])
    except psycopg.Error:
        return (-1, -1)


def wrong_profiles(worker, model: Model) -> list[str]:
    return [u for u in sorted(model.by_user)
            if get(f"{worker.url}/api/users/{u}/profile")[1].get("counts") != model.counts(u)]


def diagnose(worker, model: Model) -> str:
    from recsys_faust.kafka.partitioning import user_partition

    wrong = wrong_profiles(worker, model)
    lines = [f"{len(wrong)} of {len(model.by_user)} profiles wrong on {worker.name}:"]
    for u in wrong[:6]:
        lines.append(f"  {u} (partition {user_partition(u, 4)}): served "
                     f"{get(f'{worker.url}/api/users/{u}/profile')[1].get('counts')}, model {model.counts(u)}")
    _, text = http("GET", f"{worker.url}/metrics?name[]=recsys_consumer_lag_records&name[]=recsys_events_total")
    lines += [line for line in text.splitlines() if line.startswith(("recsys_consumer_lag_records{topic=\"amazon-p",
                                                                      "recsys_events_total{"))]
    lines.append(str(get(f"{worker.url}/api/health/ready")[1]))
    # Which records are missing, by their position on the topic.
    from .helpers import read_topic
    import json as _json
    where = {}
    for topic in ("amazon-product-views",):
        for r in read_topic(worker_bootstrap[0], topic, 10):
            o = _json.loads(r.value)
            where[(o["user_id"], o["timestamp"], o["product_id"])] = (r.partition, r.offset)
    missing = []
    for u in wrong:
        have = {(i["timestamp"], i["product_id"]) for i in get(f"{worker.url}/api/users/{u}/profile")[1]["recent_items"]}
        for k, o in model.by_user[u]:
            if k == "view" and (o["timestamp"], o["product_id"]) not in have:
                missing.append(where.get((u, o["timestamp"], o["product_id"])))
    lines.append(f"missing views at (partition, offset): {sorted(x for x in missing if x)}")
    return "\n".join(lines)


worker_bootstrap: list = []


def test_sigkill_one_of_two_workers_mid_stream_loses_no_record_of_its_partitions(stack):
    events = synthetic_events(ShopSpec(users=300, items=150, categories=6, events_per_user=10, seed=17), end=END)
    model = Model(events)
    worker_bootstrap[:] = [stack.broker.bootstrap]
    w1 = stack.add_worker("w1", extra_env=ENV)
    w2 = stack.add_worker("w2", extra_env=ENV)
    wait_until(lambda: len(assigned(w1)) + len(assigned(w2)) == 4 and assigned(w2), 60, what="both assigned")

    def feed():
        for i in range(0, len(events), 150):
            produce_events(stack.broker.bootstrap, events[i:i + 150])
            time.sleep(0.15)
    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    wait_until(lambda: stored(stack)[0] > len(events) // 5, 60, interval=0.1, what="the stream to be under way")
    victim_partitions = assigned(w2)
    print(f"kill at {time.time():.3f}")
    w2.kill()
    killed = time.monotonic()
    wait_until(lambda: sorted(assigned(w1)) == [0, 1, 2, 3] and get(f"{w1.url}/api/health/ready")[0] == 200,
               60, interval=0.1, what="the survivor to take every partition")
    takeover = time.monotonic() - killed
    print(f"\nw2 (partitions {victim_partitions}) SIGKILLed; w1 owned all four and was ready {takeover:.1f} s later "
          f"(session timeout {stack.settings.kafka.broker_session_timeout:g} s)")
    feeder.join()

    # The survivor alone serves every user exactly, from its own port.
    try:
        wait_until(lambda: not wrong_profiles(w1, model), 120, interval=1, what="every profile exact on the survivor")
    except AssertionError:
        raise AssertionError(diagnose(w1, model)) from None

    # The killed worker restarts with its data dir and rejoins.
    w2 = WorkerProcess("w2", {**stack.env, **ENV}, stack.workdir / "w2" / "data", port=None,
                       log_path=stack.workdir / "w2-restarted.log").start()
    stack.workers.append(w2)
    w2.wait_ready()
    wait_until(lambda: assigned(w2) and len(assigned(w1)) + len(assigned(w2)) == 4, 60, what="w2 to rejoin")
    for w in (w1, w2):
        wait_until(lambda: not wrong_profiles(w, model), 120, interval=1, what=f"every profile exact on {w.name}")
    successors = model.successors()
    sample = sorted(successors)[:60]
    for w in (w1, w2):
        try:
            wait_until(lambda: not model.wrong_successors(w.url, sample), 60, interval=1,
                       what=f"item successors exact on {w.name}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; (worker, model) counts that differ: "
                                 f"{model.wrong_successors(w.url, sample)}") from None
    trending = [i["product_id"] for i in get(f"{w1.url}/api/trending?k=10")[1]["items"]]
    assert trending == model.trending(10)
    # Every event exactly once in PostgreSQL (natural keys: a replay inserts nothing).
    want = (len({o["event_id"] for k, o in events if k != "user-event"}),
            len({o["event_id"] for k, o in events if k == "user-event"}))
    try:
        wait_until(lambda: stored(stack) == want, 90, what=f"{want} rows in PostgreSQL")
    except AssertionError:
        with psycopg.connect(stack.postgres.url) as conn:
            have = {r[0] for r in conn.execute("SELECT event_id FROM interactions UNION ALL "
                                               "SELECT event_id FROM user_events").fetchall()}
        missing = sorted({o["event_id"] for _, o in events} - have)
        raise AssertionError(f"PostgreSQL holds {stored(stack)}, want {want}; {len(missing)} events missing, "
                             f"e.g. {missing[:5]}") from None
    assert w1.alive() and w2.alive()
