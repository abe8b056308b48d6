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
