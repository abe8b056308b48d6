"""HTTP load from a separate process, closed or open loop.

``python -m benchmarks.load URL_TEMPLATE USERS SECONDS CONC [TOKEN] [RATE]``

Prints one JSON line: requests, errors, rps, p50_ms, p99_ms (and, open loop, the client's own
p99 start lag). The user in the URL rotates over USERS (a comma-separated list or an integer
count of ``u<N>`` ids); TOKEN, when given (``-`` for none), goes in ``Authorization: Bearer``.

Closed loop (no RATE): CONC clients each send their next request when the last is answered.
That measures throughput: by Little's law its latency is CONC over the rate reached, so it
tells how much work a request costs, not how long a caller waits at a given load.

Open loop (RATE requests/s): requests start on a fixed schedule whatever the answers do, up to
CONC in flight, and each latency runs from the request's scheduled start. A slow answer then
delays no later request's clock (no coordinated omission), and the figure is what a caller
waits at that load. ``lag_p99_ms`` is how late this client itself started requests: when it is
not small against the latencies, the client, not the server, is what was measured.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Optional

import aiohttp


def _summary(lat: list[float], errors: int, elapsed: float) -> dict:
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / elapsed, "p50_ms": pick(0.5),
            "p99_ms": pick(0.99)}


async def _get(session: aiohttp.ClientSession, url: str) -> bool:
    """One request; True when it was answered 200."""
    try:
        async with session.get(url) as resp:
            await resp.read()
            return resp.status == 200
    except aiohttp.ClientError:
        return False


async def run(template: str, users: list[str], seconds: float, concurrency: int, token: str = "") -> dict:
    """Closed loop: ``concurrency`` clients, each waiting for its answer before the next request."""
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = {"i": 0}

    async def client(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            counter["i"] += 1
            url = template.format(user=users[counter["i"] % len(users)])
            t0 = time.perf_counter()
            if not await _get(session, url):
                errors += 1
            lat.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return _summary(lat, errors, elapsed)


async def run_at_rate(template: str, users: list[str], seconds: float, rate: float, max_in_flight: int,
                      token: str = "") -> dict:
    """Open loop: request i starts at ``i / rate`` s, latency measured from that time."""
    lat: list[float] = []
    lags: list[float] = []
    errors = 0
    n = int(seconds * rate)
    slots = asyncio.Semaphore(max_in_flight)
    connector = aiohttp.TCPConnector(limit=max_in_flight)
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def one(session: aiohttp.ClientSession, i: int, scheduled: float) -> None:
        nonlocal errors
        async with slots:
            lags.append(time.perf_counter() - scheduled)
            if not await _get(session, template.format(user=users[i % len(users)])):
                errors += 1
            lat.append(time.perf_counter() - scheduled)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        # a short warm-up opens the connections before the clock starts
        await asyncio.gather(*(_get(session, template.format(user=users[i % len(users)]))
                               for i in range(min(max_in_flight, 32))))
        tasks: list[asyncio.Task] = []
        started = time.perf_counter()
        i = 0
        while i < n:
            now = time.perf_counter()
            while i < n and started + i / rate <= now:
                tasks.append(asyncio.ensure_future(one(session, i, started + i / rate)))
                i += 1
            await asyncio.sleep(max(0.0, started + i / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    out = _summary(lat, errors, elapsed)
    lags.sort()
    out["rate"] = rate
    out["lag_p99_ms"] = lags[int(0.99 * (len(lags) - 1))] * 1000 if lags else float("nan")
    return out


def main(argv: list[str]) -> dict:
    template, users_arg, seconds, conc = argv[0], argv[1], float(argv[2]), int(argv[3])
    token = argv[4] if len(argv) > 4 and argv[4] != "-" else ""
    rate: Optional[float] = float(argv[5]) if len(argv) > 5 else None
    users = [f"u{i}" for i in range(int(users_arg))] if users_arg.isdigit() else users_arg.split(",")
    if rate is None:
        return asyncio.run(run(template, users, seconds, conc, token))
    return asyncio.run(run_at_rate(template, users, seconds, rate, conc, token))


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
