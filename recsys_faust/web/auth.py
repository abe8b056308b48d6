"""Bearer tokens per kind of route, compared in constant time.

Scopes: ``read`` (profile, recommendations, similar, trending: RECSYS_READ_TOKENS), ``ingest``
(``POST /api/events/*``: RECSYS_INGEST_TOKENS), ``admin`` (reload, clear-cache:
RECSYS_API_TOKEN) and ``metrics`` (``/metrics``: RECSYS_METRICS_TOKEN). A list is comma-separated,
so a token is rotated by adding the new one, moving the clients, then removing the old one.
An unset read, ingest or metrics list leaves its routes open (the dev stack), said once in the
log and in ``/api/health``; admin routes refuse while RECSYS_API_TOKEN is unset. No token is
ever logged or echoed.
"""

from __future__ import annotations

import hmac
from typing import Any

from ..settings import Settings

#: scope -> the setting holding its token(s)
SCOPES = {"read": "read_tokens", "ingest": "ingest_tokens", "admin": "api_token", "metrics": "metrics_token"}


class AuthError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def tokens(settings: Settings, scope: str) -> tuple[bytes, ...]:
    raw = settings.secret(SCOPES[scope]) or ""
    return tuple(t.strip().encode("utf-8") for t in raw.split(",") if t.strip())


def modes(settings: Settings) -> dict[str, str]:
    """Per scope: ``token`` or ``open`` (admin: ``disabled`` without a token)."""
    out = {scope: ("token" if tokens(settings, scope) else "open") for scope in SCOPES}
    if out["admin"] == "open":
        out["admin"] = "disabled"
    return out


def check(settings: Settings, headers: Any, scope: str) -> None:
    """Raise AuthError unless ``headers`` carry a token of ``scope`` (or the scope is open):
    401 without a bearer token, 403 with a wrong one."""
    allowed = tokens(settings, scope)
    if not allowed:
        if scope == "admin":
            raise AuthError(401, "unauthorized", "admin routes are disabled: RECSYS_API_TOKEN is not set")
        return
    header = headers.get("Authorization", "")
    if not header.startswith("Bearer ") or not header[7:].strip():
        raise AuthError(401, "unauthorized", f"this route needs 'Authorization: Bearer <token>' ({scope} token)")
    given = header[7:].strip().encode("utf-8")
    # Every candidate compared, each in constant time: neither the match nor its position leaks.
    matched = False
    for token in allowed:
        matched |= hmac.compare_digest(given, token)
    if not matched:
        raise AuthError(403, "forbidden", f"the bearer token is not a valid {scope} token")
