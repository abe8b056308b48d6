"""End to end quality: what a worker serves over HTTP against what ``evaluate`` reports.

Train on every user's history minus their last interaction, publish, stream that history
through a real worker (profiles, popularity and transitions all learned from the stream), then
ask the worker for every held-out user's top 10. The served blend must reach 95% of the blend
NDCG@10 that ``evaluate`` computes offline on the same split.

Data: the Amazon grocery interactions when this machine has them (``amazon_csv``), a quarter
of the users in CI (``RECSYS_SERVED_USERS_MOD=1`` for all of them, the README's figure);
otherwise the synthetic shop, said loudly in the output.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.settings import Settings
from recsys_faust.training.dataset import Interactions, amazon_csv, from_rows, leave_last_out
from recsys_faust.training.evaluate import evaluate
from recsys_faust.training.train import eval_options, params_from_settings

from .helpers import get, produce_events, wait_until

pytestmark = pytest.mark.integration
USERS_MOD = int(os.environ.get("RECSYS_SERVED_USERS_MOD", "4"))


def _rows() -> tuple[str, list[tuple]]:
    path = amazon_csv()
    weight = Settings().popularity.weights.als_weight("purchase")
    if path is None:
        print("!!! Amazon data not found (RECSYS_AMAZON_CSV): served quality measured on the synthetic shop")
        events = synthetic_events(ShopSpec(users=600, items=300, categories=8, events_per_user=12, seed=8),
                                  end=time.time() - 60)
        return "synthetic shop", [(o["user_id"], o["product_id"], weight, o["timestamp"], o["category"])
                                  for k, o in events if k != "user-event"]
    rows = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            if int(r["user_id"]) % USERS_MOD == 0:
                cat = r.get("category") or ""
                rows.append((r["user_id"], r["item_id"], weight, float(r["timestamp"]),
                             None if cat in ("", "0") else cat))
    return f"Amazon grocery, users with id % {USERS_MOD} == 0", rows


def _ndcg(ranked: list[str], target: str) -> float:
    return 1.0 / np.log2(ranked.index(target) + 2) if target in ranked else 0.0


def test_served_blend_reaches_95_percent_of_evaluate(stack, tmp_path):
    source, rows = _rows()
    data: Interactions = from_rows(rows)
    settings = Settings()
    params = params_from_settings(settings)
    quality, _ = evaluate(data, params, **eval_options(settings))
    offline = {q.name: q.ndcg for q in quality}

    train, test_row = leave_last_out(data)
    train_csv = tmp_path / "train.csv"
    stream = []
    with open(train_csv, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "rating", "timestamp", "category"])
        for n, r in enumerate(np.flatnonzero(train)):
            user, item = data.user_ids[data.users[r]], data.item_ids[data.items[r]]
            cat, ts = data.item_category[data.items[r]], float(data.ts[r])
            w.writerow([user, item, 1, ts, cat or ""])
            stream.append(("purchase", {"event_id": f"q{n}", "user_id": user, "product_id": item,
                                        "timestamp": ts, **({"category": cat} if cat else {})}))
    models_dir = tmp_path / "models"
    env = {**os.environ, **stack.env, "RECSYS_MODELS_DIR": str(models_dir)}
    out = subprocess.run([sys.executable, "-m", "recsys_faust", "train", "--data", str(train_csv), "--publish",
                          "--no-eval"], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr + out.stdout
    version = next(p.name for p in models_dir.iterdir() if (p / "manifest.json").exists())

    worker = stack.add_worker("w1")
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60,
               what="the worker to load the published model")
    produce_events(stack.broker.bootstrap, stream)
    counts = Counter(o["user_id"] for _, o in stream)
    last_users = list(dict.fromkeys(o["user_id"] for _, o in reversed(stream)))[:30]
    wait_until(lambda: all(get(f"{worker.url}/api/users/{u}/profile")[1].get("counts", {}).get("purchase")
                           == counts[u] for u in last_users), 300, interval=1,
               what="the training history streamed through the worker")

    served: list[float] = []
    strategies: Counter = Counter()
    for u in np.flatnonzero(test_row >= 0).tolist():
        uid, target = data.user_ids[u], data.item_ids[data.items[test_row[u]]]
        status, body = get(f"{worker.url}/api/recommendations/{uid}?k=10")
        assert status == 200 and body["model_version"] == version, body
        strategies[body["strategy"]] += 1
        served.append(_ndcg([i["product_id"] for i in body["items"]], target))
    s, b = float(np.mean(served)), offline["als+transitions"]
    print(f"\n{source}: {len(served)} users; served NDCG@10 {s:.4f} vs evaluate's blend {b:.4f} ({s / b:.1%}); "
          f"evaluate: ALS {offline['als']:.4f}, transitions {offline['transitions']:.4f}; "
          f"served strategies {dict(strategies)}")
    assert strategies["als+transitions"] > 0.9 * len(served)
    assert b > offline["als"] and s >= 0.95 * b
