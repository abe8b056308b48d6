"""Online metrics on a real worker: answers served over HTTP are recorded on recsys-served,
folded into the users' profiles, and the purchases that follow are attributed to them. Users
who buy an item of their answer give a hit rate of 1, users who buy something else give 0;
the figures reach /metrics, amazon-model-metrics (through MetricsProducer) and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import defaultdict

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.training.als import ALSParams
from recsys_faust.training.train import publish, train_events

from .helpers import get, http, metric, produce_events, read_topic, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
TAKERS = 40
OTHERS = 40


def online(worker) -> dict[str, float]:
    """Sum over keys of each recsys_online_* count, and the hit rate per key."""
    _, text = http("GET", f"{worker.url}/metrics")
    out: dict[str, float] = defaultdict(float)
    for line in text.splitlines():
        m = re.match(r"recsys_online_(\w+)\{(.*)\} (\S+)$", line)
        if m:
            name, labels, value = m.groups()
            if name in ("answers", "hits", "interactions", "from_recommendation"):
                out[name] += float(value)
            elif name == "hit_rate":
                out[f"hit_rate {labels}"] = float(value)
    return out


def purchase(user: str, item: str, tag: str) -> tuple[str, dict]:
    return ("purchase", {"event_id": f"{tag}-{user}", "user_id": user, "product_id": item, "quantity": 1,
                         "timestamp": time.time()})


def test_takers_give_a_hit_rate_of_one_and_others_zero_on_metrics_topic_and_database(stack, tmp_path):
    worker = stack.add_worker("w1", extra_env={"RECSYS_ONLINE_METRICS_S": "1"})
    events = [e for e in synthetic_events(ShopSpec(users=120, items=80, categories=4, events_per_user=8, seed=4),
                                          end=time.time() - 600) if e[0] != "user-event"]
    settings = stack.settings.with_overrides(models_dir=tmp_path / "models")
    trained = train_events(settings, events, ALSParams(factors=8, iterations=3), "online shop")
    version = trained.artifact.version
    asyncio.run(publish(settings, trained.artifact))
    produce_events(stack.broker.bootstrap, events)
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60, what="the model")
    wait_until(lambda: metric(worker, "recsys_events_total", 'outcome="applied"') >= len(events), 90,
               what="every event applied")
    catalogue = sorted({o["product_id"] for _, o in events})
    users = sorted({o["user_id"] for _, o in events})
    assert len(users) >= TAKERS + OTHERS

    def serve(user: str) -> list[str]:
        status, body = get(f"{worker.url}/api/recommendations/{user}?k=10")
        assert status == 200 and body["model_version"] == version, body
        return [it["product_id"] for it in body["items"]]

    # Takers buy the third item of what they were served. An interaction counts against the
    # answers its user's profile already holds: the purchases go once the worker has folded the
    # answers' records (sent within milliseconds of each answer; a shop's user takes seconds).
    takes = [purchase(u, serve(u)[2], "take") for u in users[:TAKERS]]
    wait_until(lambda: online(worker).get("answers", 0) >= TAKERS, 60, what="the takers' answers recorded")
    produce_events(stack.broker.bootstrap, takes)
    first = wait_until(lambda: (lambda o: o if o["hits"] >= TAKERS else None)(online(worker)), 60,
                       what="every taker's answer hit")
    assert (first["answers"], first["hits"], first["interactions"], first["from_recommendation"]) == (
        TAKERS, TAKERS, TAKERS, TAKERS)
    rates = {k: v for k, v in first.items() if k.startswith("hit_rate")}
    assert rates and all(v == 1.0 for v in rates.values()) and all(version in k for k in rates), rates

    # The others buy an item they were not served.
    bought = []
    for u in users[TAKERS:TAKERS + OTHERS]:
        served = set(serve(u))
        bought.append(purchase(u, next(i for i in catalogue if i not in served), "other"))
    wait_until(lambda: online(worker).get("answers", 0) >= TAKERS + OTHERS, 60, what="the others' answers recorded")
    produce_events(stack.broker.bootstrap, bought)
    both = wait_until(lambda: (lambda o: o if o["interactions"] >= TAKERS + OTHERS else None)(online(worker)), 60,
                      what="the others' purchases attributed")
    assert (both["answers"], both["hits"], both["from_recommendation"]) == (TAKERS + OTHERS, TAKERS, TAKERS)
    # so the others' own hit rate, (hits after - hits before) / (answers after - answers before), is 0

    # amazon-model-metrics: the newest post per strategy adds up to the same counts
    def posted() -> dict:
        newest: dict = {}
        for r in read_topic(stack.broker.bootstrap, "amazon-model-metrics", 5):
            obj = json.loads(r.value)
            if obj["metric"] == "online_hit_rate" and obj.get("model_version") == version:
                key = (obj["labels"]["strategy"], obj["labels"]["variant"])
                if key not in newest or obj["timestamp"] >= newest[key]["timestamp"]:
                    newest[key] = obj
        answers = sum(o["labels"]["answers"] for o in newest.values())
        return newest if answers == TAKERS + OTHERS else None

    newest = wait_until(posted, 30, what="online_hit_rate on amazon-model-metrics")
    assert sum(o["labels"]["hits"] for o in newest.values()) == TAKERS
    for o in newest.values():
        assert o["value"] == pytest.approx(o["labels"]["hits"] / o["labels"]["answers"])
        assert o["labels"]["window_s"] == 86_400 and o["labels"]["worker"] == "w1"

    # PostgreSQL: every post read from the topic is a row, with its value, exactly once.
    def posts() -> dict:
        out = {}
        for r in read_topic(stack.broker.bootstrap, "amazon-model-metrics", 5):
            obj = json.loads(r.value)
            if obj["metric"] == "online_hit_rate" and obj.get("model_version") == version:
                out[(round(float(obj["timestamp"]), 3), obj["labels"]["strategy"], obj["labels"]["variant"])] = obj["value"]
        return out

    def stored() -> dict:
        with psycopg.connect(stack.postgres.url) as conn:
            rows = conn.execute("SELECT extract(epoch FROM ts), labels, value FROM metric_snapshots "
                                "WHERE metric = 'online_hit_rate' AND source = %s", (version,)).fetchall()
        return {(round(float(ts), 3), labels["strategy"], labels["variant"]): v for ts, labels, v in rows}

    on_topic = posts()
    assert len(on_topic) >= len(newest)
    wait_until(lambda: on_topic.items() <= stored().items(), 30, what="every online_hit_rate post in PostgreSQL")
    assert all(0.0 <= v <= 1.0 for v in stored().values())
