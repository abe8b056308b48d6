"""``GET /api/health``: what this worker is connected to and what its state holds."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional

from .. import __version__
from ..app import RecsysApp
from ..events.model import INPUT_TOPICS
from ..kafka.replicated import ReplicatedChangelog
from ..settings import Settings
from ..sink.writer import PostgresSink, summarize
from ..web.auth import modes as auth_modes

#: A worker without a sink of its own (no agent writes) probes the database at most this often.
DB_CHECK_TTL_S = 5.0


class DatabaseProbe:
    """The database's state for health: the sink's own view when it runs, else a cached probe."""

    def __init__(self, settings: Settings, sink: Optional[PostgresSink]) -> None:
        self.settings = settings
        self.sink = sink
        self._checked = 0.0
        self._ok: Optional[bool] = None
        self._error: Optional[str] = None

    async def status(self) -> dict[str, Any]:
        if not self.settings.database_url:
            return {"status": "disabled", "detail": "DATABASE_URL unset: persistence is off"}
        if self.sink is not None and self.sink.up is not None:
            return summarize(self.sink)
        if time.monotonic() - self._checked > DB_CHECK_TTL_S:
            import psycopg

            try:
                conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(self.settings.database_url), 2.0)
                await conn.close()
                self._ok, self._error = True, None
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                self._ok, self._error = False, f"{type(exc).__name__}: {exc}"[:300]
            self._checked = time.monotonic()
        return {"status": "up"} if self._ok else {"status": "down", "detail": self._error}


def _tail(tail: ReplicatedChangelog) -> dict[str, Any]:
    return {"caught_up": tail.caught_up.is_set(), "changelog_records_applied": tail.records_seen,
            "own_records_skipped": tail.records_skipped}


def health_document(app: RecsysApp, settings: Settings, *, database: DatabaseProbe, recommender: Any,
                    replicas: Any, drift: Any, scorer: Any) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The health view's document, as a coroutine function over the worker's parts."""

    async def health() -> dict[str, Any]:
        assigned = sorted({tp.partition for tp in app.consumer.assignment() if tp.topic in INPUT_TOPICS}) \
            if app.consumer else []
        broker = {
            "status": "up" if app.consumer and not app.rebalancing else "rebalancing",
            "assigned_partitions": assigned,
            "url": settings.broker,
        }
        db = await database.status()
        status = "degraded" if broker["status"] != "up" or db["status"] == "down" else "ok"
        return {
            "status": status,
            "worker": settings.worker_name,
            "version": __version__,
            "broker": broker,
            "database": db,
            "persistence": "on" if settings.persistence_enabled else "off",
            "auth": auth_modes(settings),
            "model_version": recommender.model_version,
            "cache_epoch": recommender.cache_epoch,
            "drift": drift.status(),
            "scoring": scorer.status(),
            "popularity": {"items": replicas.popularity.n_items(), **_tail(replicas.popularity_tail)},
            "transitions": {"entries": len(replicas.transitions), "pairs": replicas.transitions.pairs,
                            **_tail(replicas.transitions_tail)},
        }

    return health
