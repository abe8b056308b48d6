"""Readiness that tells the truth, on a real worker and a real broker whose log survives a crash
(Tansu on a local S3 server): 503 with the reason while starting and while the broker is dead,
200 again once it is back, liveness 200 throughout; the lag metric rises under a backlog and
returns to 0; the worker carries on without a restart and applies what came after the crash."""

from __future__ import annotations

import time

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

import psycopg

from .helpers import Model, get, http, produce_events, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]

DURABLE_BROKER = True
WITH_DATABASE = True
END = 1_750_000_000.0
STARTING_REASONS = ("the consumer has not started", "rebalancing", "recovering", "catching up", "no partition",
                    "broker unreachable")


def answer(url: str, timeout: float = 2.0):
    """(status, body) of GET url, or None while nothing listens there yet."""
    try:
        return http("GET", url, timeout=timeout)
    except OSError:
        return None


def lag_total(url: str) -> tuple[float, bool]:
    """Sum of recsys_consumer_lag_records over the input topics, and whether the family is exported."""
    _, text = http("GET", f"{url}/metrics?name[]=recsys_consumer_lag_records")
    rows = [line for line in text.splitlines() if line.startswith("recsys_consumer_lag_records{")]
    return sum(float(r.split()[-1]) for r in rows if 'topic="amazon-' in r), bool(rows)


def test_readiness_lag_and_a_broker_crash(stack):
    worker = stack.add_worker("w1", wait=False, extra_env={"RECSYS_READY_BROKER_TIMEOUT_S": "3"})
    # 1. Starting: the first answers are 503 with the reason, liveness is 200 meanwhile.
    first = wait_until(lambda: answer(f"{worker.url}/api/health/ready"), 60, interval=0.05, what="a first answer")
    seen_reasons = set(first[1].get("reasons", []))
    assert first[0] == 503 and first[1]["ready"] is False and seen_reasons
    assert get(f"{worker.url}/api/health/live")[0] == 200

    def ready():
        status, body = http("GET", f"{worker.url}/api/health/ready", timeout=2)
        seen_reasons.update(body.get("reasons", []))
        return status == 200
    wait_until(ready, 90, interval=0.1, what="readiness")
    assert any(r.startswith(STARTING_REASONS) for r in seen_reasons), seen_reasons
    status, health = get(f"{worker.url}/api/health")
    assert status == 200 and health["ready"] == {"ready": True, "reasons": []}
    print(f"\nreasons seen while starting: {sorted(seen_reasons)}")

    # 2. A backlog: the lag metric rises, then returns to 0.
    events = synthetic_events(ShopSpec(users=600, items=300, categories=6, events_per_user=20, seed=3), end=END)
    # 4,000 of them: enough for a backlog (the producer is far faster than the S3-backed broker
    # drains), few enough that the drain is not the test's length.
    events = [(k, o) for k, o in events if k != "user-event"][:4_000]
    assert lag_total(worker.url)[1], "the lag family is exported once partitions are assigned"
    t0 = time.monotonic()
    produce_events(stack.broker.bootstrap, events)
    print(f"{len(events)} events produced in {time.monotonic() - t0:.1f} s")
    peak = 0.0
    # The outcome is "rises, then back to 0", not a speed: on this broker's S3 storage (moto, in
    # Python, a core of its own) 12,000 events took 60 s to drain in one run and over 240 s in
    # another on the same machine.
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        total, _ = lag_total(worker.url)
        peak = max(peak, total)
        if peak > 0 and total == 0:
            break
        time.sleep(0.05)
    print(f"lag peak {peak:.0f} records of {len(events)} produced, back to 0 {time.monotonic() - t0:.1f} s after")
    assert peak > 0 and lag_total(worker.url)[0] == 0

    # 3. The broker crashes for 10 s: 503 with the reason, liveness 200; back: 200, no restart.
    pid = worker.proc.pid
    stack.broker.kill()
    killed = time.monotonic()
    status, body = wait_until(lambda: (lambda r: r if r[0] == 503 else None)(
        http("GET", f"{worker.url}/api/health/ready", timeout=5)), 30, what="readiness to notice the dead broker")
    print(f"503 {time.monotonic() - killed:.1f} s after the kill: {body['reasons']}")
    assert any(r.startswith("broker unreachable") for r in body["reasons"])
    assert get(f"{worker.url}/api/health/live")[0] == 200
    status, health = get(f"{worker.url}/api/health")
    assert status == 503 and health["broker"]["status"] == "unreachable"
    time.sleep(max(0.0, 10 - (time.monotonic() - killed)))
    stack.broker.start()
    wait_until(lambda: http("GET", f"{worker.url}/api/health/ready", timeout=5)[0] == 200, 120,
               what="readiness once the broker is back")
    print(f"ready again {time.monotonic() - killed:.1f} s after the kill")
    assert worker.proc.pid == pid and worker.alive()
    # Nothing before the crash was lost, and what comes after it is applied.
    user = events[0][1]["user_id"]
    produce_events(stack.broker.bootstrap, [("view", {"event_id": "after-crash", "user_id": user,
                                                      "product_id": "p-new", "timestamp": END + 10})])
    t0 = time.monotonic()
    # Its own row in the profile, not the view count one up from a first read: a replayed record
    # can land in between, and the count then never equals that first read + 1. This wait still
    # fails if the event itself is not applied, and the exact counts below fail if one is lost.
    wait_until(lambda: any(r["product_id"] == "p-new"
                           for r in get(f"{worker.url}/api/users/{user}/profile")[1]["recent_items"]),
               60, what="the event produced after the crash")
    print(f"the event produced after the crash applied in {time.monotonic() - t0:.1f} s")
    expected_views = sum(1 for k, o in events if k == "view" and o["user_id"] == user) + 1
    # Waited for, not read once: a record fetched before the crash (the lag says 0) may still be
    # on its way through the batch pipeline; what is asserted is that it is not lost.
    wait_until(lambda: get(f"{worker.url}/api/users/{user}/profile")[1]["counts"]["view"] == expected_views, 60,
               what=f"{expected_views} views of {user}, every one produced before and after the crash")
    # Every profile exact, and PostgreSQL holds every event once, across the crash.
    model = Model(events + [("view", {"event_id": "after-crash", "user_id": user, "product_id": "p-new",
                                       "timestamp": END + 10})])
    wrong = lambda: [u for u in sorted(model.by_user)
                     if get(f"{worker.url}/api/users/{u}/profile")[1].get("counts") != model.counts(u)]
    wait_until(lambda: not wrong(), 60, interval=1, what="every profile exact after the crash")
    want = len({o["event_id"] for _, o in model.events})

    def rows() -> int:
        with psycopg.connect(stack.postgres.url) as conn:
            return conn.execute("SELECT count(*) FROM interactions").fetchone()[0]
    wait_until(lambda: rows() == want, 60, what=f"{want} rows in PostgreSQL")
