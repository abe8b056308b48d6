"""HTTP load from a separate process: ``python -m benchmarks.load URL_TEMPLATE USERS SECONDS CONC [TOKEN]``.

Prints one JSON line: requests, errors, rps, p50_ms, p99_ms. The user in the URL rotates over
USERS (a comma-separated list or an integer count of ``u<N>`` ids); TOKEN, when given, goes in
``Authorization: Bearer``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import aiohttp


async def run(template: str, users: list[str], seconds: float, concurrency: int, token: str = "") -> dict:
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    counter = {"i": 0}

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            counter["i"] += 1
            url = template.format(user=users[counter["i"] % len(users)])
            t0 = time.perf_counter()
            try:
                async with session.get(url) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
            except aiohttp.ClientError:
                errors += 1
            lat.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        started = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    lat.sort()
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 if lat else float("nan")
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / elapsed, "p50_ms": pick(0.5), "p99_ms": pick(0.99)}


if __name__ == "__main__":
    template, users_arg, seconds, conc = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    token = sys.argv[5] if len(sys.argv) > 5 else ""
    users = [f"u{i}" for i in range(int(users_arg))] if users_arg.isdigit() else users_arg.split(",")
    print(json.dumps(asyncio.run(run(template, users, seconds, conc, token))))
