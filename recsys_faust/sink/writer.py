"""Batched, idempotent writes to PostgreSQL through an async psycopg pool, retried through outages.

A batch is one transaction: COPY into a per-connection staging table, then INSERT ... SELECT ...
ON CONFLICT DO NOTHING on the natural key, so a replayed batch changes nothing. While the
database is down the caller is held in ``write()`` (retrying with capped exponential backoff),
which holds the stream back: Faust does not ack, so does not commit, what is not yet durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Optional, Sequence

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .. import metrics
from .rows import INTERACTION_COLUMNS, RESPONSE_COLUMNS, USER_EVENT_COLUMNS, ts
from .schema import LATEST_VERSION, migrate, schema_version

log = logging.getLogger(__name__)

TABLES: dict[str, tuple[tuple[str, ...], str]] = {
    "interactions": (INTERACTION_COLUMNS, "event_id"),
    "user_events": (USER_EVENT_COLUMNS, "event_id"),
    "recommendation_responses": (RESPONSE_COLUMNS, "request_id"),
    "model_versions": (("model_version", "created_at", "manifest"), "model_version"),
    "drift_alerts": (("feature", "statistic", "window_start", "window_end", "value", "threshold", "ts", "details"),
                     "feature, statistic, window_start, window_end"),
    "metric_snapshots": (("metric", "source", "ts", "value", "labels"), "metric, source, ts, labels"),
}
#: Tables holding a user's rows (by ``user_id``, timed by ``ts``): an erased user's rows from
#: before their erasure are never written again (``_copy_upsert``).
ERASABLE = ("interactions", "user_events", "recommendation_responses")
#: The advisory lock an erasure takes exclusive (``recsys_erase_user``, sink/schema.py) and every
#: batch of ``ERASABLE`` rows shared: a batch either lands before the deletes or sees the erasure.
ERASURE_LOCK = 744412
#: Failures that end by themselves (server down, restarting, unreachable): retried forever.
TRANSIENT = (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout, asyncio.TimeoutError, OSError)
#: Failures that are the rows' own (a value PostgreSQL refuses): raised, so the caller
#: dead-letters the batch. Anything else (a missing table, a privilege, a schema being created
#: by another worker) is the deployment's and is retried like an outage: rows wait, never lost.
ROW_FAULTS = (psycopg.DataError, psycopg.IntegrityError)


class SchemaNotReady(Exception):
    """The workers may not migrate (RECSYS_DB_MIGRATE=false) and the schema is older than the code:
    waited for like an outage (rows held back, health says why) until ``db init`` has run."""


class PostgresSink:
    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 4, max_backoff_s: float = 5.0,
                 migrate: bool = True) -> None:
        self.dsn = dsn
        self.migrate = migrate
        self.pool = AsyncConnectionPool(dsn, min_size=min_size, max_size=max_size, open=False, timeout=5.0,
                                        kwargs={"connect_timeout": 3})
        self.max_backoff_s = max_backoff_s
        self.up: Optional[bool] = None
        self.last_error: Optional[str] = None
        self.rows_written = 0
        self._migrated = False
        self._opened: Optional[asyncio.Event] = None

    def _opened_event(self) -> asyncio.Event:
        if self._opened is None:
            self._opened = asyncio.Event()
        return self._opened

    async def open(self) -> None:
        await self.pool.open(wait=False)
        self._opened_event().set()

    async def close(self) -> None:
        await self.pool.close()

    async def ensure_schema(self) -> list[int]:
        """Migrate (the owner's way), or with ``migrate=False`` only check the schema's version.

        A failure here is never the rows' fault: anything but an outage is ``SchemaNotReady``,
        which ``write`` waits out like one.
        """
        try:
            async with self.pool.connection() as conn:
                if self.migrate:
                    applied = await migrate(conn)
                else:
                    have = await schema_version(conn)
                    if have < LATEST_VERSION:
                        raise SchemaNotReady(f"the schema is at version {have}, this worker needs "
                                             f"{LATEST_VERSION}: run `recsys-faust db init` as the database owner")
                    applied = []
        except psycopg.Error as exc:
            if isinstance(exc, TRANSIENT):
                raise
            raise SchemaNotReady(f"schema check or migration failed: {type(exc).__name__}: {exc}") from exc
        self._migrated = True
        return applied

    async def write(self, batches: dict[str, Sequence[tuple]], *, stop: Callable[[], bool] = lambda: False) -> int:
        """Write every table's rows in one transaction; retry transient failures until it lands."""
        n = await self._until_landed(lambda: self._write_once(batches), stop, "an unwritten batch")
        self.rows_written += n
        metrics.SINK_ROWS.inc(n)
        return n

    async def erase(self, erasures: Sequence[tuple[str, float]], *,
                    stop: Callable[[], bool] = lambda: False) -> list[dict[str, int]]:
        """Each ``(user_id, erased_at)``'s rows from before ``erased_at`` deleted, with an audit row
        (``recsys_erase_user``, sink/schema.py), in one transaction; retried like ``write``.
        Returns what was deleted per erasure (one read again deletes nothing more)."""
        out = await self._until_landed(lambda: self._erase_once(erasures), stop, "an unapplied erasure")
        metrics.SINK_ERASURES.inc(len(erasures))
        return out

    async def _until_landed(self, once: Callable[[], Any], stop: Callable[[], bool], what: str) -> Any:
        """``once()`` retried through transient failures (capped exponential backoff) until it lands."""
        delay = 0.2
        # The agents may hand a batch over before the worker's services opened the pool: wait for
        # it rather than count a closed pool as an outage.
        await self._opened_event().wait()
        while True:
            try:
                if not self._migrated:
                    await self.ensure_schema()
                result = await once()
                if self.up is False:
                    log.warning("PostgreSQL is back: sink resumed")
                self.up, self.last_error = True, None
                return result
            except (*TRANSIENT, SchemaNotReady) as exc:
                self._down(exc)
            except psycopg.Error as exc:
                if isinstance(exc, ROW_FAULTS):
                    raise
                self._down(exc)  # not the rows' fault: held back and retried
                log.error("PostgreSQL refused the sink's batch for a reason that is not the rows' "
                          "(%s: %s); retrying", type(exc).__name__, str(exc)[:200])
            if stop():
                raise asyncio.CancelledError(f"sink stopping with {what} (it will be replayed)")
            metrics.SINK_RETRIES.inc()
            await asyncio.sleep(delay)
            delay = min(self.max_backoff_s, delay * 2)

    def _down(self, exc: BaseException) -> None:
        if self.up is not False:
            log.warning("PostgreSQL unavailable (%s): holding the stream back and retrying", type(exc).__name__)
        self.up = False
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    async def _write_once(self, batches: dict[str, Sequence[tuple]]) -> int:
        total = 0
        async with self.pool.connection() as conn:
            async with conn.transaction():
                if any(batches.get(table) for table in ERASABLE):
                    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (ERASURE_LOCK,))
                for table, rows in batches.items():
                    if rows:
                        total += await self._copy_upsert(conn, table, rows)
                if batches.get("interactions"):
                    await self._touch_entities(conn, batches["interactions"])
        return total

    async def _copy_upsert(self, conn: psycopg.AsyncConnection, table: str, rows: Sequence[tuple]) -> int:
        columns, key = TABLES[table]
        stage = f"stage_{table}"
        cols = ", ".join(columns)
        await conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        async with conn.cursor() as cur:
            async with cur.copy(f"COPY {stage} ({cols}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
            if table in ERASABLE:
                # an erased user's rows from before the erasure (a replay, a restore, a producer
                # sending them again) are dropped here, counted
                await cur.execute(f"DELETE FROM {stage} s USING user_erasures e WHERE e.user_hash = "
                                  f"encode(sha256(convert_to(s.user_id, 'UTF8')), 'hex') AND s.ts < e.erased_at")
                if cur.rowcount:
                    metrics.SINK_ERASED_DROPPED.inc(cur.rowcount)
            await cur.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) DO NOTHING")
            return cur.rowcount

    async def _touch_entities(self, conn: psycopg.AsyncConnection, rows: Sequence[tuple]) -> None:
        """users and products: first/last seen kept with least/greatest, so replays are no-ops."""
        await conn.execute("""
            INSERT INTO users (user_id, first_seen, last_seen)
            SELECT user_id, min(ts), max(ts) FROM stage_interactions GROUP BY user_id
            ON CONFLICT (user_id) DO UPDATE SET first_seen = least(users.first_seen, excluded.first_seen),
                                                last_seen = greatest(users.last_seen, excluded.last_seen)""")
        await conn.execute("""
            INSERT INTO products (product_id, category, first_seen, last_seen)
            SELECT product_id, max(category), min(ts), max(ts) FROM stage_interactions GROUP BY product_id
            ON CONFLICT (product_id) DO UPDATE SET category = coalesce(excluded.category, products.category),
                first_seen = least(products.first_seen, excluded.first_seen),
                last_seen = greatest(products.last_seen, excluded.last_seen)""")


    async def _erase_once(self, erasures: Sequence[tuple[str, float]]) -> list[dict[str, int]]:
        out = []
        async with self.pool.connection() as conn:
            async with conn.transaction():
                for user_id, erased_at in erasures:
                    cur = await conn.execute("SELECT recsys_erase_user(%s, %s)", (user_id, ts(erased_at)))
                    out.append((await cur.fetchone())[0])
        return out


async def insert_row_by_row(dsn: str, rows: Sequence[tuple]) -> float:
    """The baseline the benchmark compares against: one INSERT and commit per row."""
    cols = ", ".join(INTERACTION_COLUMNS)
    marks = ", ".join(["%s"] * len(INTERACTION_COLUMNS))
    started = time.perf_counter()
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        for row in rows:
            await conn.execute(f"INSERT INTO interactions ({cols}) VALUES ({marks}) ON CONFLICT (event_id) DO NOTHING", row)
    return time.perf_counter() - started


def summarize(sink: Any) -> dict[str, Any]:
    return {"status": "up" if sink.up else ("down" if sink.up is False else "unknown"),
            "rows_written": sink.rows_written, **({"detail": sink.last_error} if sink.last_error else {})}
