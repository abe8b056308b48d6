"""Bearer tokens per kind of route, compared in constant time.

Scopes: ``read`` (profile, recommendations, similar, trending: RECSYS_READ_TOKENS), ``ingest``
(``POST /api/events/*``: RECSYS_INGEST_TOKENS), ``admin`` (reload, clear-cache:
RECSYS_API_TOKEN) and ``metrics`` (``/metrics``: RECSYS_METRICS_TOKEN). A list is comma-separated,
so a token is rotated by adding the new one, moving the clients, then removing the old one.
An unset read, ingest or metrics list leaves its routes open (the dev stack), said once in the
log and in ``/api/health``; admin routes refuse while RECSYS_API_TOKEN is unset. No token is
ever logged or echoed.

Rotation without a restart: with ``RECSYS_TOKENS_FILE`` set, the lists in that file
(``RECSYS_READ_TOKENS=a,b`` lines, the same names as the variables) are the only tokens, and the
file is read again within a second of changing, so a token is added or removed on every worker
by editing one mounted file. Once a file is configured it fails closed: a scope it lists no
token for (its line missing or empty), or every scope while the file is missing or unreadable,
refuses every request; the variables' tokens never come back, since they may be the ones the
file revoked.
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
                if mtime is None:
                    log.error("tokens file %s is missing: every scope refuses until it is back", self.path)
                self._lists = self._read() if mtime is not None else {}
        return self._lists

    def _read(self) -> dict[str, str]:
        names = {name: field for field in SCOPES.values() for name in env_names(field)}
        out: dict[str, str] = {}
        try:
            text = self.path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            log.error("tokens file %s unreadable (%s): every scope refuses until it is", self.path, type(exc).__name__)
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
    """The tokens ``scope`` accepts: the tokens file's, once one is configured, else the setting's."""
    field = SCOPES[scope]
    if settings.security.tokens_file is not None:
        raw = _file_lists(settings).get(field, "")
    else:
        raw = settings.secret(field) or ""
    return tuple(t.strip().encode("utf-8") for t in raw.split(",") if t.strip())


def closed_without_token(settings: Settings, scope: str) -> bool:
    """Whether ``scope`` refuses everyone while it has no token: admin always, and every scope
    once a tokens file is configured (fail closed)."""
    return scope == "admin" or settings.security.tokens_file is not None


def modes(settings: Settings) -> dict[str, str]:
    """Per scope: ``token``, ``open``, or ``disabled`` (no token where none means refusal)."""
    return {scope: "token" if tokens(settings, scope) else
            ("disabled" if closed_without_token(settings, scope) else "open") for scope in SCOPES}


def bearer(headers: Any) -> Optional[str]:
    """The request's bearer token as auth reads it (spacing around it dropped), or None."""
    header = headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    return header[7:].strip() or None


def check(settings: Settings, headers: Any, scope: str) -> None:
    """Raise AuthError unless ``headers`` carry a token of ``scope`` (or the scope is open):
    401 without a bearer token, 403 with a wrong one."""
    allowed = tokens(settings, scope)
    if not allowed:
        if scope == "admin" and settings.security.tokens_file is None:
            raise AuthError(401, "unauthorized", "admin routes are disabled: RECSYS_API_TOKEN is not set")
        if closed_without_token(settings, scope):
            raise AuthError(401, "unauthorized", f"the {scope} routes are closed: the tokens file lists no "
                                                 f"{env_names(SCOPES[scope])[0]} token (or is missing)")
        return
    given_text = bearer(headers)
    if given_text is None:
        raise AuthError(401, "unauthorized", f"this route needs 'Authorization: Bearer <token>' ({scope} token)")
    given = given_text.encode("utf-8")
    # Every candidate compared, each in constant time: neither the match nor its position leaks.
    matched = False
    for token in allowed:
        matched |= hmac.compare_digest(given, token)
    if not matched:
        raise AuthError(403, "forbidden", f"the bearer token is not a valid {scope} token")
