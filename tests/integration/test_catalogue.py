"""Catalogue rules on two real workers with an ALS model: the item first for the most users,
hidden by `PUT /api/products/{id}`, leaves every answer on every worker (ready lists, live
lists, similar items, trending, the responses topic) and comes back when made available again;
boosts reorder answers exactly as an independent ranking of the unboosted answer says; the
catalogue's category wins in category filters; `catalog load` reads the Amazon items file's
layout. Each change is waited for (its time is printed), never slept on."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from recsys_faust.catalogue.rules import MAX_BOOST
from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, cli, get, http, produce, produce_events, read_topic, wait_until, write_shop_csv

pytestmark = pytest.mark.integration
END = time.time() - 3600
TOKEN = "catalogue-admin"
ENV = {"RECSYS_API_TOKEN": TOKEN}
AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def put_rule(worker, product_id: str, rule: dict) -> float:
    status, body = http("PUT", f"{worker.url}/api/products/{product_id}", json.dumps(rule).encode(), AUTH)
    assert status == 202, body
    return time.monotonic()


def answers(worker, users: list[str], k: int = 10, **query: str) -> dict[str, list[str]]:
    extra = "".join(f"&{k_}={v}" for k_, v in query.items())
    return {u: [it["product_id"] for it in get(f"{worker.url}/api/recommendations/{u}?k={k}{extra}")[1]["items"]]
            for u in users}


def everywhere(workers, users, item: str) -> list[str]:
    """Where ``item`` still appears: answers (ready and live), trending and similar, per worker."""
    seen = []
    for w in workers:
        for u, items in answers(w, users).items():
            if item in items:
                seen.append(f"{w.name}: {u}")
        for u, items in answers(w, users[:5], category="cat0").items():   # computed live
            if item in items:
                seen.append(f"{w.name}: {u} (live, cat0)")
        if item in [it["product_id"] for it in get(f"{w.url}/api/trending?k=20")[1]["items"]]:
            seen.append(f"{w.name}: trending")
        for other in ("p00001", "p00002", "p00005"):
            for kind in ("factors", "next"):
                status, body = get(f"{w.url}/api/products/{other}/similar?k=20&kind={kind}")
                if status == 200 and item in [it["product_id"] for it in body["items"]]:
                    seen.append(f"{w.name}: similar to {other} ({kind})")
    return seen


def test_hidden_items_leave_every_answer_and_boosts_reorder_as_an_independent_ranking_says(stack, tmp_path):
    events = synthetic_events(ShopSpec(users=60, items=40, categories=4, events_per_user=12, seed=5), end=END)
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    csv = write_shop_csv(tmp_path / "shop.csv", events)
    workers = [stack.add_worker(n, extra_env={**ENV, "RECSYS_MODELS_DIR": str(models_dir)}) for n in ("w1", "w2")]
    out = cli(stack, "train", "--data", str(csv), "--factors", "16", "--publish", "--no-eval", models_dir=models_dir)
    assert out.returncode == 0, out.stderr + out.stdout
    wait_until(lambda: all(get(f"{w.url}/api/health")[1]["model_version"].startswith("als-") for w in workers), 60,
               what="both workers on the model")
    produce_events(stack.broker.bootstrap, events)
    model = Model(events)
    users = sorted(model.by_user)
    # every event folded (so no list changes underneath what follows), every list from the model
    wait_until(lambda: all(get(f"{workers[0].url}/api/users/{u}/profile")[1].get("counts") == model.counts(u)
                           for u in users), 90, what="every profile as the model says")
    wait_until(lambda: all(get(f"{workers[0].url}/api/recommendations/{u}")[1]["strategy"].startswith("als")
                           for u in users), 90, what="every user's list from the model")
    before = answers(workers[0], users)
    top, n_first = Counter(items[0] for items in before.values() if items).most_common(1)[0]
    assert n_first >= 3, f"{top} first for only {n_first} users"
    assert everywhere(workers, users, top), "the item was nowhere to begin with"

    put = put_rule(workers[1], top, {"available": False})
    wait_until(lambda: not everywhere(workers, users, top), 30, what=f"{top} gone from every answer",
               interval=0.05)
    print(f"hidden everywhere {time.monotonic() - put:.2f} s after the PUT was acknowledged")
    # the responses topic: answers to requests made now
    produce(stack.broker.bootstrap, [("amazon-recommendation-requests", u.encode(),
                                      json.dumps({"request_id": f"hidden-{u}", "user_id": u, "k": 10}).encode())
                                     for u in users])
    responses = wait_until(lambda: (lambda got: got if len(got) == len(users) else None)(
        [json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-recommendation-responses")
         if json.loads(r.value)["request_id"].startswith("hidden-")]), 60, what="an answer to every request")
    assert all(top not in [it["product_id"] for it in r["items"]] and r["items"] for r in responses)
    for w in workers:
        assert get(f"{w.url}/api/products/{top}", {"Authorization": f"Bearer {TOKEN}"})[1]["available"] is False

    put_rule(workers[0], top, {"available": True})
    wait_until(lambda: answers(workers[1], users) == before, 60, what=f"{top} back in every answer")

    # boosts: the answer with boosts is the unboosted list (scores included) re-ranked by hand
    user = max(users, key=lambda u: len(before[u]))
    full = get(f"{workers[0].url}/api/recommendations/{user}?k=50")[1]["items"]
    boosts = {full[i]["product_id"]: b for i, b in ((9, MAX_BOOST), (12, 2.0), (0, 0.25), (3, 0.5))}
    for pid, b in boosts.items():
        put_rule(workers[0], pid, {"boost": b})

    def boosted(item: dict) -> float:
        s, b = item["score"], boosts.get(item["product_id"], 1.0)
        return s * b if s >= 0 else s / b

    expected = [it["product_id"] for it in sorted(full, key=lambda it: -boosted(it))][:10]
    for w in workers:
        wait_until(lambda: answers(w, [user])[user] == expected, 30, what=f"the boosted ranking on {w.name}")

    # the catalogue's category wins in a category filter
    moved = before[users[0]][1]
    put_rule(workers[1], moved, {"category": "on-sale"})
    wait_until(lambda: [it["product_id"] for it in get(f"{workers[0].url}/api/trending?k=5&category=on-sale")[1]
                        ["items"]] == [moved], 30, what="the recategorised item alone in its category")


def test_catalog_load_reads_the_amazon_items_layout(stack, tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("item_id,category,n_also_bought\n9001,0,3\n9002,17,1\n")
    worker = next((w for w in stack.workers if w.alive()), None) or stack.add_worker("w3", extra_env=ENV)
    out = cli(stack, "catalog", "load", str(items), models_dir=tmp_path)
    assert out.returncode == 0 and "sent 2 rules" in out.stdout, out.stderr + out.stdout
    auth = {"Authorization": f"Bearer {TOKEN}"}
    rule = wait_until(lambda: (lambda r: r[1] if r[0] == 200 else None)(get(f"{worker.url}/api/products/9002", auth)),
                      30, what="the loaded rule on the worker")
    assert rule["category"] == "17" and rule["available"] is True
    assert get(f"{worker.url}/api/products/9001", auth)[1]["category"] is None   # 0: no category
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,boost\n9003,99\n")
    out = cli(stack, "catalog", "load", str(bad), models_dir=tmp_path)
    assert out.returncode != 0 and "bad.csv:2" in out.stderr and "boost" in out.stderr
