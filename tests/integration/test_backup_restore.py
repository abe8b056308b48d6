"""`recsys-faust backup DIR` and `restore DIR` on real stacks: a stack with a database and a
published model is backed up, thrown away, and a new empty stack (new broker, new database) is
restored from the backup; its worker, on an empty data dir, must rebuild every table. Compared:
every database table's row count, every user's profile, recommendations computed from the
rebuilt state, and the active model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from benchmarks.suite import publish_model
from recsys_faust.devstack.postgres import other_major_bin_dir
from recsys_faust.devstack.stack import DevStack

from .helpers import TOPIC_OF, Model, get, produce_events, wait_committed_to_end, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
END = time.time() - 60
#: Debian's PostgreSQL (the test command installs it as root), another major version than the wheel's.
OTHER_PG = other_major_bin_dir()
if OTHER_PG is None:
    message = ("no PostgreSQL of another major version than the embedded one under /usr/lib/postgresql "
               "(apt-get install postgresql): the cross-version restore cannot run")
    if os.environ.get("CI"):
        raise RuntimeError(message)
    pytest.skip(message, allow_module_level=True)


def cli(stack: DevStack, models_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "RECSYS_MODELS_DIR": str(models_dir)}
    return subprocess.run([sys.executable, "-m", "recsys_faust", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


#: Answers compared per user; each is asked for a few more, to tell a tie at the cut from a change.
K = 10


def snapshot(worker, users: list[str], probe: str) -> dict:
    out = {}
    for u in users:
        status, prof = get(f"{worker.url}/api/users/{u}/profile")
        # exclude= makes the worker rank from its state now rather than serve the stored list,
        # whose scores depend on when during the replay each event was folded
        _, recs = get(f"{worker.url}/api/recommendations/{u}?k={K + 5}&exclude={probe}")
        out[u] = (status, prof, [i["product_id"] for i in recs.get("items", [])],
                  [i["score"] for i in recs.get("items", [])], recs.get("strategy"), recs.get("model_version"))
    return out


def settled(worker, users: list[str], probe: str) -> dict | None:
    """A snapshot equal to the one taken just before it: the trending index is rebuilt lazily
    (at most every 0.5 s), so the first answers after the last events may rank on a build
    that missed them; two equal snapshots in a row have no such build left."""
    first, second = snapshot(worker, users, probe), snapshot(worker, users, probe)
    return second if first == second else None


def close(a: float, b: float) -> bool:
    return a == pytest.approx(b, rel=1e-4, abs=1e-5)


def alike(before: tuple, after: tuple) -> bool:
    """One user's answers from the same state: profile, strategy and model equal; the top K items
    with scores equal to float32 rounding (the fold-in sums in another order), and in the same
    order except between items tied to that rounding: where the two lists differ at a rank, each
    item is in the other list with the score of that rank."""
    (status_a, prof_a, items_a, scores_a, *rest_a), (status_b, prof_b, items_b, scores_b, *rest_b) = before, after
    if (status_a, prof_a, rest_a) != (status_b, prof_b, rest_b) or len(items_a) != len(items_b):
        return False
    if not all(close(x, y) for x, y in zip(scores_a[:K], scores_b[:K])):
        return False
    score_a, score_b = dict(zip(items_a, scores_a)), dict(zip(items_b, scores_b))
    for rank, (a, b) in enumerate(zip(items_a[:K], items_b[:K])):
        if a != b and not (b in score_a and close(score_a[b], scores_a[rank])
                           and a in score_b and close(score_b[a], scores_b[rank])):
            return False
    return True


def test_a_stack_restored_from_its_backup_rebuilds_the_same_state(tmp_path):
    events = synthetic_events(ShopSpec(users=50, items=100, categories=5, events_per_user=12, seed=5), end=END)
    model = Model(events)
    users = sorted(model.by_user)
    n_rows = len(events)

    def folded(worker) -> bool:
        return all(get(f"{worker.url}/api/users/{u}/profile")[1].get("counts", {}) == model.counts(u) for u in users)

    original = DevStack(tmp_path / "a", partitions=4, database=True).start()
    models_a = original.workdir / "models"
    try:
        original.apply_topics()
        publish_model(original, events)  # trained on the events, into models_a and the model topic
        worker = original.add_worker("w1")
        produce_events(original.broker.bootstrap, events)
        wait_until(lambda: folded(worker), 90, what="profiles folded on the original stack")
        wait_until(lambda: row_counts(original.postgres.url).get("interactions", 0)
                   + row_counts(original.postgres.url).get("user_events", 0) >= n_rows, 60, what="sink caught up")
        wait_committed_to_end(original.broker.bootstrap, list(TOPIC_OF.values()))
        before_rows = row_counts(original.postgres.url)
        before = wait_until(lambda: settled(worker, users, "no-such-item"), 60, 0.1, "the original's answers settled")
        version = get(f"{worker.url}/api/health")[1]["model_version"]
        assert version and version != "popularity"
        done = cli(original, models_a, "backup", str(tmp_path / "backup"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "backup" / "database" / "interactions.csv").stat().st_size > 0
    finally:
        original.stop()

    # Restored into another PostgreSQL major version than the one backed up (Debian's 15 beside the
    # wheel's 18): the backup is rows, not a dump tied to its pg_dump's version.
    restored = DevStack(tmp_path / "b", partitions=4, database=True, postgres_bin=OTHER_PG).start()
    models_b = tmp_path / "b-models"
    try:
        assert row_counts(restored.postgres.url).get("interactions", 0) == 0
        back = cli(restored, models_b, "restore", str(tmp_path / "backup"))
        assert back.returncode == 0, back.stderr + back.stdout
        assert sorted(p.name for p in models_b.rglob("*") if p.is_file()) \
            == sorted(p.name for p in models_a.rglob("*") if p.is_file())
        assert row_counts(restored.postgres.url) == before_rows
        worker = restored.add_worker("w1")  # an empty data dir: every table from the topics
        wait_until(lambda: folded(worker), 90, what="profiles rebuilt on the restored stack")
        wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 30,
                   what="the backed-up model active")
        differing: dict = {}

        def the_same_answers() -> bool:
            after = snapshot(worker, users, "no-such-item")
            differing.clear()
            differing.update({u: (before[u], after[u]) for u in users if not alike(before[u], after[u])})
            return not differing

        try:
            wait_until(the_same_answers, 60, 0.1, "the restored worker's answers equal the original's")
        except AssertionError:
            u = sorted(differing)[0]
            raise AssertionError(f"{len(differing)} users answered otherwise, first {u}:\n before {differing[u][0]}"
                                 f"\n after  {differing[u][1]}") from None
        assert {s[4] for s in before.values()} >= {"als+transitions"}
        # the sink saw every event again: once it has committed to the end, still each one once
        wait_committed_to_end(restored.broker.bootstrap, list(TOPIC_OF.values()))
        # (what the restored worker observes itself is new, not restored: reading a backlog, its
        # topics at different paces, it may see drift the original did not, and it posts metrics)
        observed = {"drift_alerts", "metric_snapshots"}
        assert {t: n for t, n in row_counts(restored.postgres.url).items() if t not in observed} == \
            {t: n for t, n in before_rows.items() if t not in observed}
        again = cli(restored, models_b, "restore", str(tmp_path / "backup"))
        assert again.returncode != 0 and "already hold records" in again.stderr  # never doubled
    finally:
        restored.stop()


def test_backup_under_live_producers_ends_and_restored_records_keep_their_time_in_a_header(tmp_path):
    """A topic written all the time is backed up to the end it had when the backup started (a
    reader that waited for silence never ended); restored records get the restore's time as their
    Kafka timestamp, so retention.ms does not delete them, and keep the original in a header."""
    import threading

    from .helpers import read_topic

    stack = DevStack(tmp_path / "live", partitions=4, database=False).start()
    stop = threading.Event()
    sent = [0]

    def feed() -> None:
        n, deadline = 0, time.monotonic() + 180   # bounded: until stopped, three minutes at most
        while not stop.is_set() and time.monotonic() < deadline:
            produce_events(stack.broker.bootstrap, [("view", {"event_id": f"l{n}-{i}", "user_id": f"u{i % 37}",
                                                              "product_id": f"p{i % 11}", "timestamp": END})
                                                    for i in range(50)])
            sent[0] += 50
            n += 1
            stop.wait(0.05)   # about a thousand records a second

    feeder = threading.Thread(target=feed, daemon=True)
    try:
        feeder.start()
        wait_until(lambda: sent[0] >= 500, 60, what="the producer under way")
        at_start = sent[0]
        done = cli(stack, tmp_path / "m", "backup", str(tmp_path / "backup"))
        assert done.returncode == 0, done.stderr
        assert feeder.is_alive(), "the producer stopped before the backup ended: not a live topic"
        stop.set()
        feeder.join(60)
        import json as _json
        manifest = _json.loads((tmp_path / "backup" / "manifest.json").read_text())
        backed_up = manifest["topics"]["amazon-product-views"]["records"]
        assert at_start <= backed_up < sent[0], (at_start, backed_up, sent[0])
    finally:
        stop.set()
        stack.stop()
    fresh = DevStack(tmp_path / "fresh", partitions=4, database=False).start()
    try:
        started_ms = time.time() * 1000
        back = cli(fresh, tmp_path / "m2", "restore", str(tmp_path / "backup"))
        assert back.returncode == 0, back.stderr
        records = read_topic(fresh.broker.bootstrap, "amazon-product-views", 20)
        assert len(records) == backed_up
        assert all(r.timestamp >= started_ms - 1000 for r in records)
        original = [dict(r.headers)["recsys-original-timestamp"] for r in records]
        assert all(int(t) < started_ms - 1000 for t in original)
    finally:
        fresh.stop()
