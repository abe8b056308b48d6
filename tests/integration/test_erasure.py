"""Erasure on two real workers, Apache Kafka and PostgreSQL: after `DELETE /api/users/{id}` the
user is in no table of either worker (their RocksDB stores read after they stopped), nor in a
worker that rebuilt every table from the changelogs; in no PostgreSQL row (an audit row keeps the
id's hash); the transition counts equal the independent model's on the other users' events
alone; an old record of theirs produced again is dropped by the workers and by the sink; and a
new event after the erasure starts a new profile."""

from __future__ import annotations

import hashlib
import json
import time

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, across_midnight, get, http, metric, produce, produce_events, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
END = across_midnight()
TOKEN = "erasure-admin"
VICTIM = "erase-me-now"
ENV = {"RECSYS_API_TOKEN": TOKEN}
USER_TABLES = ("interactions", "user_events", "recommendation_responses", "users")


def shop() -> list[tuple[str, dict]]:
    """The synthetic shop with one user renamed: an id no other key or value can contain."""
    events = synthetic_events(ShopSpec(users=40, items=30, categories=4, events_per_user=8, seed=21), end=END)
    out = []
    for kind, obj in events:
        if obj["user_id"] == "u00007":
            obj = {**obj, "user_id": VICTIM, "event_id": obj["event_id"].replace("u00007", VICTIM)}
        out.append((kind, obj))
    return out


def rows_of(stack, user: str) -> dict[str, int]:
    with psycopg.connect(stack.postgres.url) as conn:
        return {t: conn.execute(f"SELECT count(*) FROM {t} WHERE user_id = %s", (user,)).fetchone()[0]
                for t in USER_TABLES}


def streamed_next(worker, items: list[str]) -> dict[str, dict[str, int]]:
    out = {}
    for pid in items:
        status, body = get(f"{worker.url}/api/products/{pid}/similar?kind=next&k=100")
        out[pid] = {it["product_id"]: int(it["score"]) for it in body["items"]} if status == 200 else {}
    return {k: v for k, v in out.items() if v}


def scan_stores(data_dir, needle: bytes) -> list[str]:
    """Every key or value holding ``needle`` in any RocksDB store of a stopped worker."""
    from rocksdict import AccessType, Options, Rdict

    found = []
    paths = list(data_dir.glob("**/*.db"))
    assert paths, f"no stores under {data_dir}"
    for path in paths:
        db = Rdict(str(path), options=Options(raw_mode=True), access_type=AccessType.read_only())
        try:
            for key, value in db.items():
                if needle in key or (value is not None and needle in value):
                    found.append(f"{path.name}: {key[:80]!r}")
        finally:
            db.close()
    return found


def test_an_erased_user_is_gone_everywhere_and_stays_gone(stack):
    events = shop()
    interactions = [(k, o) for k, o in events if k != "user-event"]
    workers = [stack.add_worker("w1", extra_env=ENV), stack.add_worker("w2", extra_env=ENV)]
    produce_events(stack.broker.bootstrap, events)
    # an answer of theirs, on the responses topic and so in PostgreSQL
    produce(stack.broker.bootstrap, [("amazon-recommendation-requests", VICTIM.encode(),
                                      json.dumps({"request_id": "erase-req-1", "user_id": VICTIM, "k": 5}).encode())])
    everyone = Model(events)
    wait_until(lambda: all(get(f"{workers[0].url}/api/users/{u}/profile")[1].get("counts") == everyone.counts(u)
                           for u in everyone.by_user), 90, what="every profile as the model says")
    wait_until(lambda: all(rows_of(stack, VICTIM)[t] > 0 for t in USER_TABLES), 60,
               what="the user's rows in every PostgreSQL table")
    items = sorted({o["product_id"] for _, o in interactions})
    assert streamed_next(workers[0], items) != {}, "no transitions to compare"

    status, body = http("DELETE", f"{workers[1].url}/api/users/{VICTIM}",
                        headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 202 and body["user_id"] == VICTIM, body
    erased_at = body["erased_at"]

    others = Model([(k, o) for k, o in events if o["user_id"] != VICTIM])
    expected = {p: dict(c) for p, c in others.successors().items() if c}
    for w in workers:
        wait_until(lambda: get(f"{w.url}/api/users/{VICTIM}/profile")[0] == 404, 60,
                   what=f"the profile gone on {w.name}")
        wait_until(lambda: streamed_next(w, items) == expected, 60,
                   what=f"{w.name}'s transitions as the other users' events alone make them")
    wait_until(lambda: rows_of(stack, VICTIM) == dict.fromkeys(USER_TABLES, 0), 60,
               what="no PostgreSQL row of the user")
    with psycopg.connect(stack.postgres.url) as conn:
        audit = conn.execute("SELECT user_hash, extract(epoch FROM erased_at), deleted FROM user_erasures").fetchall()
    (user_hash, at, deleted), = audit
    assert user_hash == hashlib.sha256(VICTIM.encode()).hexdigest() and abs(float(at) - erased_at) < 1e-3
    assert deleted["interactions"] == len(everyone.by_user[VICTIM]) - 1 and deleted["users"] == 1
    answer = get(f"{workers[0].url}/api/recommendations/{VICTIM}")[1]
    assert answer["strategy"] == "popular", answer

    # an old record of theirs produced again: dropped by the workers and by the sink, counted
    dropped_before = sum(metric(w, "recsys_erased_records_dropped_total") for w in workers)
    sink_before = sum(metric(w, "recsys_sink_erased_rows_dropped_total") for w in workers)
    produce_events(stack.broker.bootstrap, [e for e in events if e[1]["user_id"] == VICTIM][:3])
    wait_until(lambda: sum(metric(w, "recsys_erased_records_dropped_total") for w in workers) >= dropped_before + 3,
               60, what="the three old records dropped by the user's owner")
    wait_until(lambda: sum(metric(w, "recsys_sink_erased_rows_dropped_total") for w in workers) >= sink_before + 3,
               60, what="the three old records dropped by the sink")
    assert get(f"{workers[0].url}/api/users/{VICTIM}/profile")[0] == 404
    assert rows_of(stack, VICTIM) == dict.fromkeys(USER_TABLES, 0)

    # no store of either worker holds the id, nor does one rebuilt from the changelogs alone
    for w in workers:
        w.stop()
    for w in workers:
        assert scan_stores(w.data_dir, VICTIM.encode()) == [], w.name
    rebuilt = stack.add_worker("w3", extra_env=ENV)
    wait_until(lambda: get(f"{rebuilt.url}/api/health/ready")[0] == 200, 90, what="the rebuilt worker ready")
    wait_until(lambda: streamed_next(rebuilt, items) == expected, 60, what="the rebuilt worker's transitions")
    assert get(f"{rebuilt.url}/api/users/{VICTIM}/profile")[0] == 404
    # a new event after the erasure starts a new profile
    produce_events(stack.broker.bootstrap, [("view", {"event_id": "after-erasure", "user_id": VICTIM,
                                                      "product_id": items[0], "timestamp": time.time()})])
    got = wait_until(lambda: (lambda r: r[1] if r[0] == 200 else None)(
        get(f"{rebuilt.url}/api/users/{VICTIM}/profile")), 60, what="a new profile")
    assert got["counts"] == {"view": 1}
