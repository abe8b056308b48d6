"""``GET /api/health``: what this worker is connected to, what its state holds, and whether it is
ready (``readiness.py`` decides; this gathers the facts)."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, Optional

from ..version import __version__
from ..app import RecsysApp
from ..events.model import INPUT_TOPICS
from ..kafka.lag import PROGRESS, consumer_lags
from ..kafka.replicated import ReplicatedChangelog
from ..settings import Settings
from ..sink.writer import PostgresSink, summarize
from ..web.auth import modes as auth_modes
from .readiness import BrokerProbe, Facts, decide

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
        if not self.settings.sink.database_url:
            return {"status": "disabled", "detail": "DATABASE_URL unset: persistence is off"}
        if self.sink is not None and self.sink.up is not None:
            return summarize(self.sink)
        if time.monotonic() - self._checked > DB_CHECK_TTL_S:
            import psycopg

            try:
                conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(self.settings.sink.dsn), 2.0)
                await conn.close()
                self._ok, self._error = True, None
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                self._ok, self._error = False, f"{type(exc).__name__}: {exc}"[:300]
            self._checked = time.monotonic()
        return {"status": "up"} if self._ok else {"status": "down", "detail": self._error}


def _tail(tail: ReplicatedChangelog) -> dict[str, Any]:
    return {"caught_up": tail.caught_up.is_set(), "changelog_records_applied": tail.records_seen,
            "own_records_skipped": tail.records_skipped}


def readiness_facts(app: RecsysApp, probe: BrokerProbe, replicas: Any, sink: Optional[PostgresSink] = None) -> Facts:
    consumer = app.consumer
    try:
        assignment = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started yet
        assignment = set()
    recovered = app.tables.recovery.completed.is_set()  # set once per process, after the first recovery
    sink_waiting = sink is not None and sink.up is False
    if not probe.reachable or sink_waiting:
        PROGRESS.excuse()  # partitions cannot move meanwhile: no stall is counted through the wait
    return Facts(
        consumer_started=bool(assignment) or recovered,
        rebalancing=bool(app.rebalancing),
        recovering=bool(getattr(app, "in_recovery", False)) or not recovered,
        assigned_inputs=sum(1 for tp in assignment if tp.topic in INPUT_TOPICS),
        tails_caught_up={"popularity": replicas.popularity_tail.caught_up.is_set(),
                         "transitions": replicas.transitions_tail.caught_up.is_set(),
                         # a hidden item must never be served: not ready before every rule is read
                         "catalogue": replicas.catalogue.tail.caught_up.is_set()},
        broker_reachable=probe.reachable,
        broker_detail=probe.detail,
        lags=consumer_lags(consumer),
        sink_waiting=sink_waiting,
        served_before=recovered,
    )


def readiness_reasons(app: RecsysApp, settings: Settings, probe: BrokerProbe, replicas: Any,
                      sink: Optional[PostgresSink] = None) -> list[str]:
    return decide(readiness_facts(app, probe, replicas, sink), stall_s=settings.web.ready_stall_s)


def health_document(app: RecsysApp, settings: Settings, *, database: DatabaseProbe, recommender: Any,
                    replicas: Any, drift: Any, scorer: Any, probe: BrokerProbe,
                    ) -> Callable[[], Awaitable[dict[str, Any]]]:
    """The health view's document, as a coroutine function over the worker's parts."""

    async def health() -> dict[str, Any]:
        assigned = sorted({tp.partition for tp in app.consumer.assignment() if tp.topic in INPUT_TOPICS}) \
            if app.consumer else []
        reasons = readiness_reasons(app, settings, probe, replicas, database.sink)
        broker = {
            "status": "up" if app.consumer and not app.rebalancing and probe.reachable
            else ("unreachable" if not probe.reachable else "rebalancing"),
            "assigned_partitions": assigned,
            "url": settings.kafka.broker,
            "probe": probe.status(),
        }
        db = await database.status()
        status = "ok" if not reasons and db["status"] != "down" else ("down" if reasons else "degraded")
        return {
            "status": status,
            "ready": {"ready": not reasons, "reasons": reasons},
            "worker": settings.process.worker_name,
            "version": __version__,
            "broker": broker,
            "database": db,
            "persistence": "on" if settings.sink.persistence_enabled else "off",
            "auth": auth_modes(settings),
            "model_version": recommender.model_version,
            "models": {"announced": sorted(replicas.registry.versions),
                       "pinned": replicas.registry.pin["model_version"] if replicas.registry.pin else None,
                       "refused": dict(replicas.registry.refused),
                       "verified": replicas.registry.verifier is not None},
            "cache_epoch": recommender.cache_epoch,
            "drift": drift.status(),
            "scoring": scorer.status(),
            "popularity": {"items": replicas.popularity.n_items(), **_tail(replicas.popularity_tail)},
            "transitions": {"entries": len(replicas.transitions), "pairs": replicas.transitions.pairs,
                            **_tail(replicas.transitions_tail)},
        }

    return health
