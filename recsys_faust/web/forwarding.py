"""Requests one worker forwards to the worker that owns the user, authenticated between workers.

A forwarded request skips the owner's rate limit (the forwarding worker counted it already) and
is not forwarded again. Both only for a request that proves it came from a worker: an HMAC-SHA256
with the cluster's ``RECSYS_FORWARD_SECRET`` over the method, the path with its query and the
time, within ``MAX_AGE_S``. Without a secret configured, a forwarded request is counted again by
the owner like any other, and a header alone proves nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Optional

#: Names the forwarding worker (and marks the request as forwarded: never forwarded again).
FORWARDED = "X-Recsys-Forwarded-By"
#: ``<unix seconds>:<hex HMAC>``.
PROOF = "X-Recsys-Forward-Proof"
MAX_AGE_S = 30.0


def _mac(secret: bytes, method: str, path_qs: str, at: int) -> str:
    return hmac.new(secret, f"{method.upper()}\n{path_qs}\n{at}".encode("utf-8"), hashlib.sha256).hexdigest()


def proof(secret: bytes, method: str, path_qs: str, now: Optional[float] = None) -> str:
    at = int(now if now is not None else time.time())
    return f"{at}:{_mac(secret, method, path_qs, at)}"


def verified(secret: Optional[bytes], header: Optional[str], method: str, path_qs: str,
             now: Optional[float] = None) -> bool:
    """Whether ``header`` proves the request came from a worker of this cluster just now."""
    if not secret or not header:
        return False
    at_text, _, mac = header.partition(":")
    try:
        at = int(at_text)
    except ValueError:
        return False
    current = now if now is not None else time.time()
    if abs(current - at) > MAX_AGE_S:
        return False
    return hmac.compare_digest(mac, _mac(secret, method, path_qs, at))
