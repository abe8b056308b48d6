"""The PostgreSQL schema, as numbered migrations applied once each (``recsys-faust db init``).

Natural keys (event_id, request_id, model_version, ...) are primary keys, so every write is an
idempotent upsert: replays after a rebalance or crash change nothing.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "core tables", """
CREATE TABLE IF NOT EXISTS users (
    user_id     text PRIMARY KEY,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    product_id  text PRIMARY KEY,
    category    text,
    first_seen  timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS interactions (
    event_id         text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('view', 'purchase', 'review')),
    user_id          text NOT NULL,
    product_id       text NOT NULL,
    ts               timestamptz NOT NULL,
    category         text,
    rating           real,
    quantity         integer,
    price            double precision,
    payload          jsonb NOT NULL,
    source_topic     text,
    source_partition integer,
    source_offset    bigint,
    ingested_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS interactions_user_ts ON interactions (user_id, ts);
CREATE INDEX IF NOT EXISTS interactions_ts ON interactions (ts);
CREATE TABLE IF NOT EXISTS user_events (
    event_id         text PRIMARY KEY,
    user_id          text NOT NULL,
    event_type       text NOT NULL,
    ts               timestamptz NOT NULL,
    payload          jsonb NOT NULL,
    source_topic     text,
    source_partition integer,
    source_offset    bigint,
    ingested_at      timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS recommendation_responses (
    request_id    text PRIMARY KEY,
    user_id       text NOT NULL,
    items         jsonb NOT NULL,
    model_version text NOT NULL,
    strategy      text NOT NULL,
    ts            timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model_version text PRIMARY KEY,
    created_at    timestamptz NOT NULL,
    manifest      jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS drift_alerts (
    feature      text NOT NULL,
    statistic    text NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    value        double precision NOT NULL,
    threshold    double precision NOT NULL,
    ts           timestamptz NOT NULL,
    details      jsonb,
    PRIMARY KEY (feature, statistic, window_start, window_end)
);
CREATE TABLE IF NOT EXISTS metric_snapshots (
    metric  text NOT NULL,
    source  text NOT NULL,
    ts      timestamptz NOT NULL,
    labels  jsonb NOT NULL DEFAULT '{}',
    value   double precision NOT NULL,
    PRIMARY KEY (metric, source, ts, labels)
);
"""),
]


LATEST_VERSION = MIGRATIONS[-1][0]


async def schema_version(conn) -> int:
    """The newest migration applied (0 for an empty database); needs only SELECT."""
    cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not (await cur.fetchone())[0]:
        return 0
    cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations")
    return int((await cur.fetchone())[0])


async def migrate(conn) -> list[int]:
    """Apply missing migrations in order, each in its own transaction; returns those applied.

    Everything, the bookkeeping table included, runs under one advisory lock: two workers
    starting together both ran ``CREATE TABLE IF NOT EXISTS schema_migrations``, and PostgreSQL
    answers the loser of that race with a unique violation on its catalogue, not a no-op
    (found by the failover test: the loser's first sink batch was refused).
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(744411)")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    applied: list[int] = []
    for version, name, sql in MIGRATIONS:
        async with conn.transaction():
            # one migrator at a time, even with several workers starting together
            await conn.execute("SELECT pg_advisory_xact_lock(744411)")
            cur = await conn.execute("SELECT 1 FROM schema_migrations WHERE version = %s", (version,))
            if await cur.fetchone():
                continue
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name))
            applied.append(version)
    return applied
