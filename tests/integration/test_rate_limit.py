"""Per-client rate limits on a real worker: 429 with Retry-After past the burst, per client."""

from __future__ import annotations

import pytest

from .helpers import get, http

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(stack):
    # one token every 5 s and a burst of 3: a fourth quick request is over, however slow the machine
    return stack.add_worker("w1", extra_env={"RECSYS_RATE_LIMIT_RPS": "0.2", "RECSYS_RATE_LIMIT_BURST": "3",
                                             "RECSYS_READ_TOKENS": "client-a,client-b"})


def test_past_the_burst_a_client_gets_429_with_retry_after_and_other_clients_do_not(worker):
    a = {"Authorization": "Bearer client-a"}
    statuses = [http("GET", f"{worker.url}/api/trending?k=3", headers=a)[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    status, body = http("GET", f"{worker.url}/api/trending?k=3", headers=a)
    assert status == 429 and body["error"] == "rate_limited" and "requests/s" in body["detail"]
    b = {"Authorization": "Bearer client-b"}
    assert http("GET", f"{worker.url}/api/trending?k=3", headers=b)[0] == 200
    # health and ping are not limited
    assert all(get(f"{worker.url}/api/ping")[0] == 200 for _ in range(6))
    status, text = http("GET", f"{worker.url}/metrics")
    assert 'recsys_rate_limited_total{scope="read"} 1.0' in text


def test_the_429_carries_retry_after(worker):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{worker.url}/api/trending", headers={"Authorization": "Bearer client-a"})
    with pytest.raises(urllib.error.HTTPError) as err:
        for _ in range(5):
            urllib.request.urlopen(req, timeout=10).read()
    assert err.value.code == 429 and int(err.value.headers["Retry-After"]) >= 1
