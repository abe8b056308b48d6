"""A token bucket per client on the public routes (``RECSYS_RATE_LIMIT_RPS``, ``_BURST``), and
one per address for failed authentication (``RECSYS_AUTH_FAILURE_RPS``, ``_BURST``).

A client is its bearer token as auth reads it, hashed (a shop's backend behind one address
keeps its own budget per token, and spelling the token with other spacing is the same client),
else its address: the peer's, or the first one a configured proxy (``RECSYS_TRUSTED_PROXIES``)
forwarded for. Each bucket holds up to ``burst`` requests and refills at ``rps``; an empty
bucket answers 429 with ``Retry-After``. Buckets are kept for at most ``max_clients`` clients,
the least recently seen dropped first (a full bucket is what a new client gets anyway); keys
are fixed-size digests or addresses, so memory is bounded in bytes too (about 200 bytes a
client).
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
import time
from collections import OrderedDict
from typing import Callable, Optional, Union

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

    def waiting(self, client: str) -> Optional[float]:
        """Like ``take`` without taking: None while the client has a token left."""
        entry = self._buckets.get(client)
        if entry is None:
            return None
        tokens = min(float(self.burst), entry[0] + (self.clock() - entry[1]) * self.rps)
        return None if tokens >= 1.0 else (1.0 - tokens) / self.rps

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def client_key(token: Optional[str], address: str) -> str:
    """The bucket of a request: its token's digest, else its address."""
    if token:
        return "t:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:32]
    return "a:" + address


Networks = tuple[Union[ipaddress.IPv4Network, ipaddress.IPv6Network], ...]


def trusted_networks(spec: str) -> Networks:
    """``RECSYS_TRUSTED_PROXIES``: addresses or networks (``10.0.0.5,172.16.0.0/12``)."""
    try:
        return tuple(ipaddress.ip_network(p.strip(), strict=False) for p in spec.split(",") if p.strip())
    except ValueError as exc:
        raise ValueError(f"RECSYS_TRUSTED_PROXIES: {exc}") from None


def _trusted(address: str, trusted: Networks) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(peer: Optional[str], forwarded_for: str, trusted: Networks) -> str:
    """The client's address: the peer's, unless the peer is a trusted proxy; then the nearest
    address in ``X-Forwarded-For`` that is not one (a client cannot choose its address by
    writing the header itself: what it writes comes before what the proxy appends)."""
    address = peer or "?"
    if not trusted or not _trusted(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not _trusted(hop, trusted):
            return hop
    return address
