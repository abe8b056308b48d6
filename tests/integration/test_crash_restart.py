"""Crash and restart: nothing acknowledged is lost, nothing is applied twice, no partition stalls.

One worker with PostgreSQL, both the event processor and the sink running. Per round, 880 events
of 40 users on the four input topics: the first half produced (every record acknowledged by
the broker), the worker SIGKILLed while it works on them, the second half produced while it
is down, the worker started again on the same data dir. Then every event must have its row
in PostgreSQL (by event_id, exactly once), every user's profile must count exactly the
events sent of each kind, and readiness must never report a stalled partition (the stall
threshold is lowered to 5 s so that a stall shows within the round).

With the stock flow control, which clears the agents' buffers at the end of recovery after the
seek (kafka/flow.py), 5 rounds of 6 lost between 111 and 546 of the 920 events. ``RECSYS_TEST_ROUNDS=20``
runs twenty rounds in a row (the reliability loop; docs/testing.md).
"""

from __future__ import annotations

import os
import time
from collections import Counter

import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, get, produce_events

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
WITH_DATABASE = True
ROUNDS = int(os.environ.get("RECSYS_TEST_ROUNDS", "2"))
# Plenty processed-but-uncommitted at the kill; a 25 ms fetch wait widens the window in which
# records are fetched between the seek and the end of recovery (with Kafka's 500 ms it is rarer).
ENV = {"RECSYS_READY_STALL_S": "5", "RECSYS_BROKER_COMMIT_INTERVAL": "3", "RECSYS_FETCH_MAX_WAIT_MS": "25"}


def round_events(n: int) -> list[tuple[str, dict]]:
    evs = synthetic_events(ShopSpec(users=40, items=60, categories=4, events_per_user=22, seed=100 + n),
                           end=time.time() - 120)
    return [(k, {**o, "event_id": f"c{n}-{o['event_id']}", "user_id": f"c{n}{o['user_id']}"}) for k, o in evs]


def stored_ids(stack, prefix: str) -> Counter:
    with psycopg.connect(stack.postgres.url, connect_timeout=3) as conn:
        if conn.execute("SELECT to_regclass('user_events')").fetchone()[0] is None:
            return Counter()   # the worker's sink has not created the schema yet
        rows = conn.execute("SELECT event_id FROM interactions WHERE event_id LIKE %s "
                            "UNION ALL SELECT event_id FROM user_events WHERE event_id LIKE %s",
                            (prefix + "%", prefix + "%")).fetchall()
    return Counter(r[0] for r in rows)


def stalls(worker) -> list[str]:
    try:
        _, body = get(f"{worker.url}/api/health/ready")
    except OSError:
        return []
    return [r for r in (body.get("reasons") or []) if "stalled" in r] if isinstance(body, dict) else []


def wrong_profiles(worker, model: Model) -> list[tuple[str, dict, dict]]:
    out = []
    for user in sorted(model.by_user):
        status, body = get(f"{worker.url}/api/users/{user}/profile")
        counts = body.get("counts") if status == 200 else None
        if counts != model.counts(user):
            out.append((user, counts, model.counts(user)))
    return out


@pytest.mark.parametrize("n", range(ROUNDS))
def test_sigkill_produce_while_down_restart_applies_every_event_once(stack, n):
    worker = stack.workers[-1] if stack.workers and stack.workers[-1].alive() else \
        stack.add_worker("w1", extra_env=ENV)
    events = round_events(n)
    model = Model(events)
    prefix = f"c{n}-"
    half = len(events) // 2
    produce_events(stack.broker.bootstrap, events[:half])
    # Killed while it works on them: as soon as the sink has stored some of the first half.
    deadline = time.monotonic() + 60
    while sum(stored_ids(stack, prefix).values()) < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    worker.kill()
    produce_events(stack.broker.bootstrap, events[half:])
    worker = stack.add_worker("w1", extra_env=ENV)   # the same data dir

    want = {o["event_id"] for _, o in events}
    seen_stalls: list[str] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen_stalls += stalls(worker)
        have = stored_ids(stack, prefix)
        if set(have) == want and not wrong_profiles(worker, model):
            break
        time.sleep(0.5)
    have = stored_ids(stack, prefix)
    missing = sorted(want - set(have))
    assert not missing, f"{len(missing)} of {len(want)} events not in PostgreSQL, e.g. {missing[:8]}"
    assert all(c == 1 for c in have.values()), [e for e, c in have.items() if c != 1][:8]
    wrong = wrong_profiles(worker, model)
    assert not wrong, f"{len(wrong)} profiles miscounted, e.g. {wrong[:3]}"
    # Past the stall threshold with everything applied: a stalled partition would show now.
    settled = time.monotonic() + 6
    while time.monotonic() < settled:
        seen_stalls += stalls(worker)
        time.sleep(0.5)
    assert not seen_stalls, seen_stalls[:4]
