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

from recsys_faust.devstack.demo_data import ShopSpec, synthetic_events
from recsys_faust.bench.suite import publish_model
from recsys_faust.devstack.stack import DevStack

from .helpers import Model, get, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
END = time.time() - 60


def cli(stack: DevStack, models_dir, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "RECSYS_MODELS_DIR": str(models_dir)}
    return subprocess.run([sys.executable, "-m", "recsys_faust", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def row_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}


def snapshot(worker, users: list[str], probe: str) -> dict:
    out = {}
    for u in users:
        status, prof = get(f"{worker.url}/api/users/{u}/profile")
        # exclude= makes the worker rank from its state now rather than serve the stored list,
        # whose scores depend on when during the replay each event was folded
        _, recs = get(f"{worker.url}/api/recommendations/{u}?k=10&exclude={probe}")
        out[u] = (status, prof, [i["product_id"] for i in recs.get("items", [])],
                  [i["score"] for i in recs.get("items", [])], recs.get("strategy"), recs.get("model_version"))
    return out


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
        time.sleep(1.5)  # trending rebuilt (every 0.5 s) from every partition
        before_rows = row_counts(original.postgres.url)
        before = snapshot(worker, users, "no-such-item")
        version = get(f"{worker.url}/api/health")[1]["model_version"]
        assert version and version != "popularity"
        done = cli(original, models_a, "backup", str(tmp_path / "backup"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "backup" / "database.dump").stat().st_size > 0
    finally:
        original.stop()

    restored = DevStack(tmp_path / "b", partitions=4, database=True).start()
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
        time.sleep(1.5)
        after = snapshot(worker, users, "no-such-item")
        for u in users:  # the same state; scores to float32 rounding (the fold-in sums in another order)
            assert after[u][:3] == before[u][:3] and after[u][4:] == before[u][4:], u
            assert after[u][3] == pytest.approx(before[u][3], rel=1e-4, abs=1e-5), u
        assert {s[4] for s in after.values()} >= {"als+transitions"}
        time.sleep(1.0)  # the sink saw every event again: still each one once
        assert row_counts(restored.postgres.url) == before_rows
        again = cli(restored, models_b, "restore", str(tmp_path / "backup"))
        assert again.returncode != 0 and "already hold records" in again.stderr  # never doubled
    finally:
        restored.stop()
