"""Bearer tokens per kind of route, compared in constant time.

Scopes: ``read`` (profile, recommendations, similar, trending: RECSYS_READ_TOKENS), ``ingest``
(``POST /api/events/*``: RECSYS_INGEST_TOKENS), ``admin`` (reload, clear-cache:
RECSYS_API_TOKEN) and ``metrics`` (``/metrics``: RECSYS_METRICS_TOKEN). A list is comma-separated,
so a token is rotated by adding the new one, moving the clients, then removing the old one.
An unset read, ingest or metrics list leaves its routes open (the dev stack), said once in the
log and in ``/api/health``; admin routes refuse while RECSYS_API_TOKEN is unset. No token is
ever logged or echoed.

Rotation without a restart: with ``RECSYS_TOKENS_FILE`` set, the lists in that file
(``RECSYS_READ_TOKENS=a,b`` lines, the same names as the variables) replace the variables'
for the scopes it names, and the file is read again within a second of changing, so a token is
added or removed on every worker by editing one mounted file.
"""

from __future__ import annotations

import hmac
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..settings import Settings, env_names

log = logging.getLogger(__name__)

#: scope -> the setting holding its token(s)
SCOPES = {"read": "read_tokens", "ingest": "ingest_tokens", "admin": "api_token", "metrics": "metrics_token"}


class AuthError(Exception):
    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


#: How often a tokens file is looked at (its mtime), at most.
FILE_CHECK_S = 1.0


class TokensFile:
    """The lists of a tokens file, re-read when it changes (looked at once per ``FILE_CHECK_S``)."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.clock = clock
        self._checked = float("-inf")
        self._mtime: Optional[int] = None
        self._lists: dict[str, str] = {}

    def lists(self) -> dict[str, str]:
        """setting name (``read_tokens`` ...) -> its raw comma-separated list, for those the file sets."""
        now = self.clock()
        if now - self._checked >= FILE_CHECK_S:
            self._checked = now
            try:
                mtime = os.stat(self.path).st_mtime_ns
            except OSError:
                mtime = None
            if mtime != self._mtime:
                self._mtime = mtime
                self._lists = self._read() if mtime is not None else {}
        return self._lists

    def _read(self) -> dict[str, str]:
        names = {name: field for field in SCOPES.values() for name in env_names(field)}
        out: dict[str, str] = {}
        try:
            text = self.path.read_text("utf-8")
        except OSError as exc:
            log.warning("tokens file %s unreadable (%s): keeping the settings' tokens", self.path, type(exc).__name__)
            return {}
        for line in text.splitlines():
            name, eq, value = line.strip().partition("=")
            if eq and name.strip() in names:
                out[names[name.strip()]] = value.strip()
        log.info("tokens file %s read: lists for %s", self.path, ", ".join(sorted(out)) or "nothing")
        return out


_FILES: dict[Path, TokensFile] = {}


def _file_lists(settings: Settings) -> dict[str, str]:
    if settings.security.tokens_file is None:
        return {}
    source = _FILES.get(settings.security.tokens_file)
    if source is None:
        source = _FILES[settings.security.tokens_file] = TokensFile(settings.security.tokens_file)
    return source.lists()


def tokens(settings: Settings, scope: str) -> tuple[bytes, ...]:
    field = SCOPES[scope]
    from_file = _file_lists(settings)
    raw = from_file[field] if field in from_file else (settings.secret(field) or "")
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
