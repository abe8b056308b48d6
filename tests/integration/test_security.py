"""Tokens per kind of route and request limits on a real worker over real HTTP."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from .helpers import get, http, read_topic, wait_until

pytestmark = pytest.mark.integration
READ = ("read-old", "read-new")   # two read tokens at once: a rotation in progress
INGEST = "ingest-secret"
ADMIN = "admin-secret"
METRICS = "metrics-secret"


@pytest.fixture(scope="module")
def worker(stack):
    return stack.add_worker("w1", extra_env={
        "RECSYS_READ_TOKENS": ",".join(READ), "RECSYS_INGEST_TOKENS": INGEST,
        "RECSYS_API_TOKEN": ADMIN, "RECSYS_METRICS_TOKEN": METRICS})


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def test_each_scope_needs_its_own_token(worker):
    user = f"sec-{uuid.uuid4().hex[:6]}"
    event = json.dumps({"user_id": user, "product_id": "p1", "category": "c1"}).encode()
    # ingest: 401 without, 403 with another scope's token, 202 with its own
    assert http("POST", f"{worker.url}/api/events/view", event)[0] == 401
    assert http("POST", f"{worker.url}/api/events/view", event, bearer(READ[0]))[0] == 403
    status, body = http("POST", f"{worker.url}/api/events/view", event, bearer(INGEST))
    assert status == 202 and body["accepted"]
    # read: either token of the rotation works; none and a wrong one do not
    routes = [f"/api/recommendations/{user}?k=3", "/api/trending?k=3", f"/api/users/{user}/profile",
              "/api/products/p1/similar?kind=next"]
    for route in routes:
        status, body = get(f"{worker.url}{route}")
        assert status == 401 and body["error"] == "unauthorized", route
        status, body = http("GET", f"{worker.url}{route}", headers=bearer("guess"))
        assert status == 403 and body["error"] == "forbidden", route
    wait_until(lambda: http("GET", f"{worker.url}/api/users/{user}/profile", headers=bearer(READ[1]))[0] == 200,
               30, what="the ingested event in the profile")
    for token in READ:
        assert http("GET", f"{worker.url}/api/recommendations/{user}?k=3", headers=bearer(token))[0] == 200
    # admin and metrics have theirs; ping and health stay open
    assert http("POST", f"{worker.url}/api/clear-cache", headers=bearer(INGEST))[0] == 403
    assert http("POST", f"{worker.url}/api/clear-cache", headers=bearer(ADMIN))[0] == 200
    assert http("GET", f"{worker.url}/metrics")[0] == 401
    status, text = http("GET", f"{worker.url}/metrics", headers=bearer(METRICS))
    assert status == 200 and 'recsys_auth_refused_total{scope="read",status="403"} 4.0' in text
    assert get(f"{worker.url}/api/ping") == (200, {"ok": True})
    status, health = get(f"{worker.url}/api/health")   # without a token: the status alone
    assert status == 200 and health["ready"] is True and "auth" not in health and "broker" not in health
    status, health = get(f"{worker.url}/api/health", headers=bearer(METRICS))
    assert status == 200 and health["auth"] == {"read": "token", "ingest": "token", "admin": "token",
                                                "metrics": "token"}


def test_oversized_and_malformed_bodies_get_clear_errors(stack, worker):
    big = b'{"user_id": "u", "product_id": "p", "blob": "' + b"x" * 5_000_000 + b'"}'
    status, body = http("POST", f"{worker.url}/api/events/view", big, bearer(INGEST))
    assert status == 413 and body["error"] == "too_large"
    status, body = http("POST", f"{worker.url}/api/events/view", b"[1, 2]", bearer(INGEST))
    assert status == 400 and body["error"] == "not_object"
    status, body = http("POST", f"{worker.url}/api/events/view", b"{nope", bearer(INGEST))
    assert status == 400 and body["error"] == "not_json"
    assert worker.alive()
    # None of the refused bodies reached the topic.
    assert [r for r in read_topic(stack.broker.bootstrap, "amazon-product-views", timeout_s=5)
            if b"blob" in (r.value or b"") or r.value in (b"[1, 2]", b"{nope")] == []


def test_no_token_reaches_the_log(worker):
    time.sleep(0.5)
    log = worker.log_path.read_text(errors="replace")
    for token in (*READ, INGEST, ADMIN, METRICS):
        assert token not in log
