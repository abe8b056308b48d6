"""Train, publish through Kafka, a running worker switches, fold-in personalises new users."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import cli, get, http, produce_events, wait_until, write_shop_csv

pytestmark = pytest.mark.integration
END = time.time() - 60
TOKEN = "test-token"


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory):
    events = synthetic_events(ShopSpec(users=400, items=240, categories=8, events_per_user=15, seed=21), end=END)
    return write_shop_csv(tmp_path_factory.mktemp("data") / "shop.csv", events), events


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory):
    models_dir = tmp_path_factory.mktemp("worker-models")
    return stack.add_worker("w1", extra_env={"RECSYS_API_TOKEN": TOKEN, "RECSYS_MODELS_DIR": str(models_dir)})


NAMES = ("als", "transitions", "als+transitions", "most_popular", "popular_affinity")


def test_evaluate_prints_als_and_baselines(stack, shop_csv, tmp_path):
    path, _ = shop_csv
    out = cli(stack, "evaluate", "--data", str(path), "--factors", "32", models_dir=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = {line.split()[0]: line.split() for line in out.stdout.splitlines()
            if line.split() and line.split()[0] in NAMES}
    assert set(rows) == set(NAMES)
    assert float(rows["als"][1]) > float(rows["most_popular"][1])  # NDCG@10: ALS learns the categories


def test_train_publish_switch_and_personalise(stack, worker, shop_csv, tmp_path):
    path, events = shop_csv
    status, health = get(f"{worker.url}/api/health")
    assert health["model_version"] == "popularity-v1"
    # popularity state for the fallback
    produce_events(stack.broker.bootstrap, events[:800])

    out = cli(stack, "train", "--data", str(path), "--factors", "32", "--publish", "--no-eval", models_dir=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    version = next(p.name for p in tmp_path.iterdir() if (p / "manifest.json").exists())
    manifest = json.loads((tmp_path / version / "manifest.json").read_text())
    assert manifest["params"]["factors"] == 32 and manifest["data"]["interactions"] > 1000

    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60,
               what="the worker to switch to the published model")

    # a new user browsing one category gets that category back, from ALS
    categories = {o["product_id"]: o["category"] for k, o in events if k != "user-event"}
    by_cat = Counter(categories.values())
    cat = sorted(by_cat)[3]
    picks = [p for p, c in sorted(categories.items()) if c == cat][:6]
    user = "newcomer-1"
    produce_events(stack.broker.bootstrap, [
        ("view", {"event_id": f"n-{i}", "user_id": user, "product_id": p, "timestamp": END - 10, "category": cat})
        for i, p in enumerate(picks)])

    # A batch makes the profile and the list visible together: once the profile holds all six
    # views, the list is the one computed from them (the six events may span two batches).
    wait_until(lambda: (lambda r: r[0] == 200 and r[1]["counts"] == {"view": 6})(
        get(f"{worker.url}/api/users/{user}/profile")), 30, what="all six views in the new user's profile")
    status, body = get(f"{worker.url}/api/recommendations/{user}?k=10")
    # the model shipped its training data's transitions: the newcomer's views have successors
    assert status == 200 and body["strategy"] == "als+transitions", body
    assert body["model_version"] == version
    rec_cats = [categories.get(i["product_id"]) for i in body["items"]]
    assert sum(c == cat for c in rec_cats) >= 8, rec_cats
    assert not {i["product_id"] for i in body["items"]} & set(picks)

    # an unknown user: the popularity fallback, with the active version in the answer
    status, body = get(f"{worker.url}/api/recommendations/never-seen?k=5")
    assert body["strategy"] == "popular" and body["model_version"] == version and len(body["items"]) == 5

    # similar items from the item factors
    status, body = get(f"{worker.url}/api/products/{picks[0]}/similar?k=5")
    assert status == 200 and len(body["items"]) == 5
    assert sum(categories[i["product_id"]] == cat for i in body["items"]) >= 3
    assert get(f"{worker.url}/api/products/no-such-item/similar")[0] == 404


def test_reload_models_requires_the_token(worker):
    status, body = http("POST", f"{worker.url}/api/reload-models")
    assert status == 401 and body["error"] == "unauthorized"
    status, body = http("POST", f"{worker.url}/api/reload-models", headers={"Authorization": "Bearer wrong"})
    assert status == 403 and body["error"] == "forbidden"
    status, body = http("POST", f"{worker.url}/api/reload-models", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 404 and body["error"] == "not_found"  # this worker's models dir is empty
