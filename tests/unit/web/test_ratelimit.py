"""web/ratelimit.py: per-client token buckets, on an injected clock."""

import pytest

from recsys_faust.web.ratelimit import TokenBuckets, retry_after_header


def test_a_client_gets_its_burst_then_waits_for_the_refill_and_others_are_unaffected():
    now = [100.0]
    buckets = TokenBuckets(rps=2.0, burst=3, clock=lambda: now[0])
    assert [buckets.take("a") for _ in range(3)] == [None, None, None]
    wait = buckets.take("a")
    assert wait == pytest.approx(0.5)          # one token every 0.5 s
    assert retry_after_header(wait) == "1"
    assert buckets.take("b") is None           # another client has its own bucket
    now[0] += 0.5
    assert buckets.take("a") is None and buckets.take("a") is not None
    now[0] += 60
    assert [buckets.take("a") for _ in range(4)].count(None) == 3  # refilled to the burst, no more


def test_memory_is_bounded_by_the_clients_remembered():
    buckets = TokenBuckets(rps=1.0, burst=1, max_clients=100, clock=lambda: 0.0)
    for n in range(1_000):
        buckets.take(f"10.0.{n // 256}.{n % 256}")
    assert len(buckets) == 100
    with pytest.raises(ValueError):
        TokenBuckets(rps=0, burst=1)


def test_a_client_is_its_token_whatever_its_spacing_else_its_address():
    from recsys_faust.web.auth import bearer
    from recsys_faust.web.ratelimit import client_key

    keys = {client_key(bearer({"Authorization": h}), "10.0.0.1") for h in ("Bearer tok", "Bearer  tok", "Bearer tok  ")}
    assert len(keys) == 1 and "tok" not in keys.pop()   # one bucket, and the token itself is not kept
    assert client_key(None, "10.0.0.1") == "a:10.0.0.1"


def test_the_client_address_comes_from_a_trusted_proxy_only_and_cannot_be_chosen_by_the_client():
    from recsys_faust.web.ratelimit import client_address, trusted_networks

    lb = trusted_networks("172.16.0.0/12")
    # from the load balancer: the address it appended, not the one the client wrote before it
    assert client_address("172.18.0.5", "1.2.3.4, 203.0.113.9", lb) == "203.0.113.9"
    # a client talking to the worker directly: its own address, whatever header it sends
    assert client_address("203.0.113.9", "1.2.3.4", lb) == "203.0.113.9"
    assert client_address("172.18.0.5", "1.2.3.4", ()) == "172.18.0.5"   # no proxy trusted
    with pytest.raises(ValueError, match="RECSYS_TRUSTED_PROXIES"):
        trusted_networks("not-an-address")


def test_waiting_says_when_a_bucket_is_empty_without_taking():
    now = [0.0]
    buckets = TokenBuckets(rps=1.0, burst=2, clock=lambda: now[0])
    assert buckets.waiting("x") is None
    buckets.take("x"), buckets.take("x")
    assert buckets.waiting("x") == pytest.approx(1.0) and buckets.waiting("x") == pytest.approx(1.0)
    now[0] += 1.0
    assert buckets.waiting("x") is None


def test_a_forwarding_proof_holds_only_for_its_request_its_secret_and_a_short_while():
    from recsys_faust.web.forwarding import MAX_AGE_S, proof, verified

    secret = b"s" * 32
    header = proof(secret, "GET", "/api/recommendations/u1?k=5", now=1000.0)
    assert verified(secret, header, "GET", "/api/recommendations/u1?k=5", now=1001.0)
    assert not verified(secret, header, "GET", "/api/recommendations/u2?k=5", now=1001.0)
    assert not verified(b"t" * 32, header, "GET", "/api/recommendations/u1?k=5", now=1001.0)
    assert not verified(secret, header, "GET", "/api/recommendations/u1?k=5", now=1000.0 + MAX_AGE_S + 1)
    assert not verified(None, header, "GET", "/api/recommendations/u1?k=5", now=1001.0)
    assert not verified(secret, "x", "GET", "/", now=1001.0) and not verified(secret, None, "GET", "/")
