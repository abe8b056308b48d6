"""The PostgreSQL sink against a real (embedded) PostgreSQL: exactly once through duplicates,
a SIGKILL, and a ten-second database outage."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psycopg
import pytest

from recsys_faust.sink.schema import LATEST_VERSION, MIGRATIONS
from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import TOPIC_OF, get, http, produce_events, wait_committed_to_end, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
END = time.time() - 60


def stored(stack) -> tuple[int, int]:
    """(interactions, user_events) rows in PostgreSQL."""
    try:
        with psycopg.connect(stack.postgres.url, connect_timeout=2) as conn:
            inter = conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
            users = conn.execute("SELECT count(*) FROM user_events").fetchone()[0]
            return inter, users
    except psycopg.Error:
        return -1, -1


def expected(events) -> tuple[int, int]:
    ids = {(k == "user-event", o["event_id"]) for k, o in events}
    return sum(1 for u, _ in ids if not u), sum(1 for u, _ in ids if u)


def shop(seed: int, users: int = 120):
    evs = synthetic_events(ShopSpec(users=users, items=100, categories=5, events_per_user=10, seed=seed), end=END)
    return [(k, {**o, "event_id": f"s{seed}-{o['event_id']}"}) for k, o in evs]


@pytest.fixture(scope="module")
def worker(stack):
    return stack.add_worker("w1", extra_env={"RECSYS_METRICS_SNAPSHOT_S": "1"})


def live_worker(stack, worker):
    """The module's worker, or the one that replaced it after the SIGKILL test (each test also
    runs alone: ``pytest --lf``)."""
    return stack.workers[-1] if stack.workers and stack.workers[-1].alive() else worker


def with_interactions(stack) -> None:
    """Some events in the database, for a test run on its own."""
    if stored(stack)[0] <= 0:
        events = shop(4, users=40)
        produce_events(stack.broker.bootstrap, events)
        want = expected(events)
        wait_until(lambda: stored(stack)[0] >= want[0], 60, what="events in the database")


def test_db_init_is_idempotent(stack, worker):
    env = {**os.environ, **stack.env}
    run = lambda: subprocess.run([sys.executable, "-m", "recsys_faust", "db", "init"], env=env,
                                 capture_output=True, text=True, timeout=60)
    first, second = run(), run()
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert f"schema already at version {LATEST_VERSION}" in second.stdout
    with psycopg.connect(stack.postgres.url) as conn:
        assert conn.execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall() == \
            [(v,) for v, _, _ in MIGRATIONS]


def test_every_event_once_even_when_produced_twice(stack, worker):
    events = shop(1)
    produce_events(stack.broker.bootstrap, events)
    produce_events(stack.broker.bootstrap, events)  # the same event_ids again
    want = expected(events)
    wait_until(lambda: stored(stack) == want, 60, what=f"{want} rows")
    # Not a pause: every record, the second copies included, processed and stored by the sink.
    wait_committed_to_end(stack.broker.bootstrap, list(TOPIC_OF.values()))
    assert stored(stack) == want
    with psycopg.connect(stack.postgres.url) as conn:
        n_users = conn.execute("SELECT count(*) FROM users").fetchone()[0]
        assert n_users == len({o["user_id"] for k, o in events if k != "user-event"})
        row = conn.execute("SELECT kind, payload->>'event_id', source_topic FROM interactions LIMIT 1").fetchone()
        assert row[0] in ("view", "purchase", "review") and row[1].startswith("s1-") and row[2].startswith("amazon-")


def _stream(stack, events, per_chunk=100, pause=0.1) -> threading.Thread:
    def run():
        for i in range(0, len(events), per_chunk):
            produce_events(stack.broker.bootstrap, events[i:i + per_chunk])
            time.sleep(pause)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_sigkill_mid_stream_then_restart_leaves_every_event_once(stack, worker):
    wait_until(lambda: stored(stack)[0] >= 0, 30, what="the schema (the sink creates it at start)")
    before = stored(stack)
    events = shop(2, users=200)
    feeder = _stream(stack, events)
    wait_until(lambda: stored(stack)[0] > before[0] + 100, 30, what="the sink to be mid-stream")
    worker.kill()
    feeder.join()
    restarted = stack.add_worker("w1")  # same data dir
    want = tuple(a + b for a, b in zip(before, expected(events)))
    try:
        wait_until(lambda: stored(stack) == want, 90, what=f"{want} rows after the restart")
    except AssertionError:
        raise AssertionError(f"{stored(stack)} rows, {want} expected, after the restart") from None
    wait_committed_to_end(stack.broker.bootstrap, list(TOPIC_OF.values()))   # replays processed too
    assert stored(stack) == want
    assert restarted.alive()


def test_database_outage_of_ten_seconds_loses_and_duplicates_nothing(stack, worker):
    worker = live_worker(stack, worker)
    pid = worker.proc.pid
    wait_until(lambda: stored(stack)[0] >= 0, 30, what="the schema (the sink creates it at start)")
    before = stored(stack)
    events = shop(3, users=150)
    feeder = _stream(stack, events, per_chunk=50, pause=0.1)
    wait_until(lambda: stored(stack)[0] > before[0], 30, what="the sink storing the stream")
    stack.postgres.stop()
    down_at = time.monotonic()
    health = wait_until(lambda: (lambda h: h if h["database"]["status"] == "down" else None)(
        get(f"{worker.url}/api/health")[1]), 15, what="health to report the database down")
    assert health["status"] == "degraded"
    time.sleep(max(0.0, 10 - (time.monotonic() - down_at)))
    stack.postgres.restart()
    feeder.join()
    want = tuple(a + b for a, b in zip(before, expected(events)))
    wait_until(lambda: stored(stack) == want, 90, what=f"{want} rows after the outage")
    assert worker.proc.pid == pid and worker.alive()  # never restarted
    _, text = http("GET", f"{worker.url}/metrics")
    retries = [float(line.split()[-1]) for line in text.splitlines() if line.startswith("recsys_sink_retries_total ")]
    assert retries and retries[0] > 0
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["database"]["status"] == "up", 15)


def test_train_reads_interactions_from_the_database(stack, worker, tmp_path):
    with_interactions(stack)
    env = {**os.environ, **stack.env, "RECSYS_MODELS_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-m", "recsys_faust", "train", "--no-eval", "--factors", "16"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    inter, _ = stored(stack)
    assert f"postgresql:interactions: {inter} interactions" in out.stdout
    assert any((p / "model.npz").exists() for p in tmp_path.iterdir())


def test_worker_metric_snapshots_reach_the_database(stack, worker):
    """Each worker posts its counters to amazon-system-metrics; the sink stores them."""
    def rows():
        with psycopg.connect(stack.postgres.url) as conn:
            return conn.execute(
                "SELECT value FROM metric_snapshots WHERE metric = 'recsys_events_total' AND source = 'w1'"
                " AND labels @> '{\"outcome\": \"applied\"}' ORDER BY ts DESC LIMIT 4").fetchall()
    with_interactions(stack)
    found = wait_until(rows, 30, what="metric snapshots in PostgreSQL")
    assert sum(v for (v,) in found) > 0


def test_bad_records_on_output_topics_are_dead_lettered_and_the_model_tail_survives(stack, worker, tmp_path):
    """Outside producers can write anything to model-updates and responses: refused records
    reach the dead-letter topic with a reason, and a good model published after them loads."""
    import asyncio
    import json

    import numpy as np

    from recsys_faust.ranking.model.artifact import ModelArtifact
    from recsys_faust.training.train import publish

    from .helpers import produce, read_topic

    worker = live_worker(stack, worker)
    produce(stack.broker.bootstrap, [
        ("amazon-model-updates", b"junk-model", b"not json at all"),
        ("amazon-recommendation-responses", b"junk-response", json.dumps({"user_id": "x"}).encode()),
    ])
    artifact = ModelArtifact("tiny-v1", ["a", "b"], np.eye(2, dtype=np.float32),
                             params={"alpha": 1.0, "regularization": 1.0}, manifest={"created_at": time.time()})
    asyncio.run(publish(stack.settings, artifact))
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == "tiny-v1", 30,
               what="the model published after a malformed announcement")

    def dead() -> dict:
        found = {r.key: json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-dead-letters", 5)}
        return found if {b"junk-model", b"junk-response"} <= found.keys() else {}

    found = wait_until(dead, 30, interval=1, what="both malformed records dead-lettered")
    assert found[b"junk-model"]["reason"] == "sink_rejected" and found[b"junk-model"]["payload"] == "not json at all"
    assert found[b"junk-response"]["source_topic"] == "amazon-recommendation-responses"
    with psycopg.connect(stack.postgres.url) as conn:
        assert conn.execute("SELECT 1 FROM model_versions WHERE model_version = 'tiny-v1'").fetchone()
    assert worker.alive()


def test_two_sinks_starting_together_on_an_empty_database_store_every_row(stack, worker):
    """Regression (found by the failover test): two workers' sinks creating the schema at once
    made PostgreSQL refuse the loser's first batch (a unique violation in its catalogue), which
    was then dead-lettered: those events never reached the database."""
    import asyncio

    from recsys_faust.events.model import Event
    from recsys_faust.sink.rows import event_row
    from recsys_faust.sink.writer import PostgresSink

    def rows(tag: str, n: int) -> list[tuple]:
        return [event_row(Event("view", f"{tag}-{i}", f"u{i}", 1_700_000_000.0 + i, product_id="p"),
                          ("amazon-product-views", 0, i))[1] for i in range(n)]

    async def race(dsn: str) -> None:
        sinks = [PostgresSink(dsn) for _ in range(3)]
        for s in sinks:
            await s.open()
        try:
            await asyncio.wait_for(asyncio.gather(*(s.write({"interactions": rows(f"s{k}", 50)})
                                                    for k, s in enumerate(sinks))), 60)
        finally:
            for s in sinks:
                await s.close()

    with psycopg.connect(stack.postgres.url, autocommit=True) as admin:
        for round_ in range(6):
            name = f"race_{round_}_{int(time.time() * 1000) % 10**8}"
            admin.execute(f"CREATE DATABASE {name}")
            dsn = stack.postgres.url.rsplit("/", 1)[0] + f"/{name}"
            asyncio.run(race(dsn))
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT count(*) FROM interactions").fetchone()[0] == 150, round_
