"""`recsys-faust retrain --watch` on a real stack: traffic moves to items the served model does
not know, the worker's drift detector says so on amazon-data-drift, and the watcher retrains on
what the sink persisted and publishes; the worker then serves a model that knows the new items.
Traffic the model knows must not start a retrain."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from recsys_faust.events.model import TOPIC_MODEL_UPDATES

from .helpers import cli, get, produce_events, read_topic, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
WINDOW_S = 2
ENV = {"RECSYS_DRIFT_WINDOW_S": str(WINDOW_S), "RECSYS_DRIFT_MIN_EVENTS": "40"}
ALS = ("--factors", "8", "--iterations", "3")


def purchases(n: int, items: list[str], tag: str) -> list[tuple[str, dict]]:
    now = time.time()
    return [("purchase", {"event_id": f"{tag}-{i}", "user_id": f"{tag}-u{i % 30}", "product_id": items[i % len(items)],
                          "category": "c0", "timestamp": now, "price": 10.0}) for i in range(n)]


def interactions(stack) -> int:
    try:
        with psycopg.connect(stack.postgres.url) as conn:
            return conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    except psycopg.errors.UndefinedTable:  # the sink creates it with its first batch
        return 0


def served(worker) -> str:
    return get(f"{worker.url}/api/health")[1]["model_version"]


def test_traffic_on_unknown_items_retrains_and_the_worker_serves_a_model_that_knows_them(stack, tmp_path):
    models_dir = tmp_path / "models"
    worker = stack.add_worker("w1", extra_env={**ENV, "RECSYS_MODELS_DIR": str(models_dir)})
    history = [e for e in synthetic_events(ShopSpec(users=120, items=40, categories=4, events_per_user=8, seed=7),
                                           end=time.time() - 7200) if e[0] != "user-event"]
    produce_events(stack.broker.bootstrap, history)
    wait_until(lambda: interactions(stack) == len(history), 60, what="the sink caught up")
    # The first model, trained once on what the database holds.
    once = cli(stack, "retrain", "--gate", "0", *ALS, models_dir=models_dir)
    assert once.returncode == 0, once.stderr + once.stdout
    v1 = wait_until(lambda: served(worker) if served(worker) not in (None, "popularity") else None, 60,
                    what="the first model served")
    known = sorted({o["product_id"] for _, o in history})
    new = [f"new-{i:03d}" for i in range(12)]
    assert get(f"{worker.url}/api/products/{new[0]}/similar")[0] == 404

    log_path, beat = tmp_path / "watch.log", tmp_path / "alive"
    env = {**os.environ, **stack.env, "RECSYS_MODELS_DIR": str(models_dir), "RECSYS_ENV_FILE": ""}
    with open(log_path, "w") as log:
        watcher = subprocess.Popen([sys.executable, "-m", "recsys_faust", "retrain", "--watch", "--cooldown", "0",
                                    "--gate", "0", "--max-retrains", "1", "--heartbeat", str(beat), *ALS], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, text=True)
    try:
        wait_until(lambda: "watching" in log_path.read_text(), 60, what="the watcher started")
        # Traffic on items the model knows: judged against the model, no alert, no retrain.
        for i in range(2):
            produce_events(stack.broker.bootstrap, purchases(60, known, f"known{i}"))
            time.sleep(WINDOW_S + 0.3)
        wait_until(lambda: "catalogue" in get(f"{worker.url}/api/health")[1]["drift"]["last_psi"], 20,
                   what="a judged catalogue window")
        assert "drifted" not in log_path.read_text() and watcher.poll() is None
        assert time.time() - beat.stat().st_mtime < 15  # the heartbeat a container health check reads
        assert served(worker) == v1

        # Traffic on items the model does not know.
        produce_events(stack.broker.bootstrap, purchases(80, new, "new"))
        try:
            v2 = wait_until(lambda: served(worker) if served(worker) != v1 else None, 180, what="a retrained model")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the watcher said:\n{log_path.read_text()[-1500:]}") from None
        assert watcher.wait(timeout=30) == 0  # --max-retrains 1
    finally:
        if watcher.poll() is None:
            watcher.kill()
    said = log_path.read_text()
    assert f"catalogue drifted from model {v1}" in said and f"model {v2} published" in said
    models = {m["model_version"]: m for m in get(f"{worker.url}/api/models")[1]["versions"]}
    assert models[v2]["active"] and not models[v1]["active"]
    assert models[v2]["items"] == len(known) + len(new) and models[v1]["items"] == len(known)
    status, similar = get(f"{worker.url}/api/products/{new[0]}/similar")
    assert status == 200 and similar["items"]

    # The quality gate, once without --watch. v2 was trained without an evaluation (gate 0):
    # nothing to compare, so the first gated retrain publishes (with its figures); against
    # those, a gate no model can pass (100 x the served NDCG) keeps the next one unpublished.
    first = cli(stack, "retrain", "--gate", "100", *ALS, models_dir=models_dir)
    assert first.returncode == 0 and "no offline figures to compare" in first.stdout, first.stdout + first.stderr
    v3 = wait_until(lambda: served(worker) if served(worker) not in (v1, v2) else None, 60, what="the gated model")
    refused = cli(stack, "retrain", "--gate", "100", *ALS, models_dir=models_dir)
    assert refused.returncode == 3 and "not published" in refused.stdout, refused.stdout + refused.stderr
    # The CLI has returned: whatever it published is on the model topic now, where the workers read it.
    announced = {r.key.decode() for r in read_topic(stack.broker.bootstrap, TOPIC_MODEL_UPDATES) if r.key}
    assert announced == {v1, v2, v3}, announced
    assert served(worker) == v3 and len(get(f"{worker.url}/api/models")[1]["versions"]) == 3
