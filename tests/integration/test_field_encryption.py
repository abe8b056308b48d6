"""Encrypted sensitive fields on a real stack: with RECSYS_FIELD_KEYS set, review text and
user-event properties are nowhere in plain text in the database (a full pg_dump is searched)
nor in dead-letter copies; they read back through `db events`; after `keys rotate` the new key
alone opens every row (and the old key alone no longer does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import psycopg
import pytest

from recsys_faust.devstack.postgres import _bin_dir
from recsys_faust.events.protect import generate_key

from .helpers import http, produce, read_topic, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
NOW = int(time.time()) - 60
SECRETS = {"http": "SECRET-HTTP-review-words", "plain": "SECRET-PLAIN-review-words",
           "props": "secret-props@example.com", "dead": "SECRET-DEAD-LETTER-words"}


def cli(stack, keys: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **stack.env, "RECSYS_FIELD_KEYS": keys}
    return subprocess.run([sys.executable, "-m", "recsys_faust", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def dump(stack) -> str:
    out = subprocess.run([str(_bin_dir() / "pg_dump"), "--data-only", stack.postgres.url], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_sealed_at_rest_readable_with_the_keys_and_rotated(stack):
    k1 = generate_key()
    worker = stack.add_worker("w1", extra_env={"RECSYS_FIELD_KEYS": k1})
    review = {"user_id": "enc-user", "product_id": "p1", "rating": 5, "text": SECRETS["http"], "timestamp": NOW}
    status, _ = http("POST", f"{worker.url}/api/events/review", body=json.dumps(review).encode(),
                     headers={"Content-Type": "application/json"})
    assert status == 202
    plain = {"event_id": "plain-1", "user_id": "enc-user", "product_id": "p2", "rating": 3,
             "text": SECRETS["plain"], "timestamp": NOW + 1}
    login = {"event_id": "login-1", "user_id": "enc-user", "event_type": "login", "timestamp": NOW + 2,
             "properties": {"email": SECRETS["props"]}}
    bad = {"event_id": "bad-1", "user_id": "enc-user", "product_id": "p3", "rating": 9,
           "text": SECRETS["dead"], "timestamp": NOW}
    produce(stack.broker.bootstrap, [
        ("amazon-reviews", b"enc-user", json.dumps(plain).encode()),   # a producer without the keys
        ("amazon-user-events", b"enc-user", json.dumps(login).encode()),
        ("amazon-reviews", b"enc-user", json.dumps(bad).encode()),
    ])

    def stored() -> tuple[int, int]:
        try:
            with psycopg.connect(stack.postgres.url) as conn:
                return (conn.execute("SELECT count(*) FROM interactions WHERE user_id = 'enc-user'").fetchone()[0],
                        conn.execute("SELECT count(*) FROM user_events WHERE user_id = 'enc-user'").fetchone()[0])
        except psycopg.errors.UndefinedTable:
            return (-1, -1)   # the sink creates the schema with its first batch
    wait_until(lambda: stored() == (2, 1), 60, what="two reviews and a login stored")

    text = dump(stack)
    assert "enc-user" in text                                  # the dump does hold the rows
    assert [s for s in SECRETS.values() if s in text] == []    # and none of the sensitive values
    dead = wait_until(lambda: [json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-dead-letters")
                               if b"bad-1" in r.value] or None, 30, what="the dead letter")
    assert dead[0]["reason"] == "out_of_range" and dead[0]["payload_sealed"] == "fields"
    assert SECRETS["dead"] not in json.dumps(dead)
    reviews_topic = b"".join(r.value for r in read_topic(stack.broker.bootstrap, "amazon-reviews"))
    assert SECRETS["http"].encode() not in reviews_topic        # sealed at the source by the HTTP ingest
    assert SECRETS["plain"].encode() in reviews_topic           # what a keyless producer sent stays on its topic

    shown = cli(stack, k1, "db", "events", "--user", "enc-user")
    assert shown.returncode == 0, shown.stderr
    events = [json.loads(line) for line in shown.stdout.splitlines()]
    assert {e.get("text") for e in events if e["kind"] == "review"} == {SECRETS["http"], SECRETS["plain"]}
    assert [e["properties"] for e in events if e["kind"] == "user-event"] == [{"email": SECRETS["props"]}]

    k2 = generate_key()
    rotated = cli(stack, f"{k2},{k1}", "keys", "rotate")
    assert rotated.returncode == 0 and "3 of 3 rows re-sealed" in rotated.stdout, rotated.stdout + rotated.stderr
    with_new = cli(stack, k2, "db", "events", "--user", "enc-user")
    assert with_new.returncode == 0, with_new.stderr
    assert sorted(json.loads(line).get("text") or "" for line in with_new.stdout.splitlines()) == \
        sorted(e.get("text") or "" for e in events)
    with_old = cli(stack, k1, "db", "events", "--user", "enc-user")
    assert with_old.returncode != 0 and "does not open" in with_old.stderr
    assert [s for s in SECRETS.values() if s in dump(stack)] == []

    # A client that sends text shaped like a sealed value: stored as it came (no key opens it), and
    # a later rotate re-seals every other row and names that one instead of stopping at it.
    forged = {"event_id": "forged-1", "user_id": "enc-user", "product_id": "p4", "rating": 4,
              "text": "enc:v1:not-a-fernet-token", "timestamp": NOW - 10}
    produce(stack.broker.bootstrap, [("amazon-reviews", b"enc-user", json.dumps(forged).encode())])
    wait_until(lambda: stored() == (3, 1), 60, what="the forged review stored")
    k3 = generate_key()
    again = cli(stack, f"{k3},{k2}", "keys", "rotate")
    assert again.returncode != 0 and "3 of 4 rows re-sealed" in again.stderr, again.stdout + again.stderr
    assert "interactions forged-1" in again.stderr
    with_k3 = cli(stack, k3, "db", "events", "--user", "enc-user", "--limit", "3")
    assert with_k3.returncode == 0, with_k3.stderr   # the three newest (not the forged one) open with k3 alone
