"""A token bucket per client on the public routes (``RECSYS_RATE_LIMIT_RPS``, ``_BURST``).

A client is its bearer token when it sends one (a shop's backend behind one address keeps its
own budget per token), else its address. Each bucket holds up to ``burst`` requests and refills
at ``rps``; an empty bucket answers 429 with ``Retry-After``. Buckets are kept for at most
``max_clients`` clients, the least recently seen dropped first (a full bucket is what a new
client gets anyway), so a scan from many addresses cannot grow the worker's memory.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from typing import Callable, Optional

#: Clients whose buckets are remembered; beyond this the least recently seen are forgotten.
MAX_CLIENTS = 100_000


class TokenBuckets:
    def __init__(self, rps: float, burst: int, *, max_clients: int = MAX_CLIENTS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rps <= 0:
            raise ValueError("rps must be > 0 (0 turns rate limits off before any bucket exists)")
        self.rps = rps
        self.burst = max(1, burst)
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str) -> Optional[float]:
        """None when the request may go ahead, else the seconds until the client's next token."""
        now = self.clock()
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rps)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[client] = (tokens, now)
        if len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return None if allowed else (1.0 - tokens) / self.rps

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
