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
    (2, "user erasures", """
CREATE TABLE IF NOT EXISTS user_erasures (
    user_hash   text NOT NULL,
    erased_at   timestamptz NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    deleted     jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (user_hash, erased_at)
);
CREATE INDEX IF NOT EXISTS recommendation_responses_user ON recommendation_responses (user_id);
CREATE INDEX IF NOT EXISTS user_events_user ON user_events (user_id);
-- The one way a worker deletes: a user's rows from before their erasure, with the audit row.
-- SECURITY DEFINER (runs as the owner): the worker role gets EXECUTE on it, never DELETE.
-- Exclusive on lock 744412, which every event batch takes shared (sink/writer.py): a batch in
-- flight is written before the rows are deleted, one after it sees the audit row and drops
-- the user's older rows.
CREATE OR REPLACE FUNCTION recsys_erase_user(p_user_id text, p_erased_at timestamptz)
RETURNS jsonb LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    n_interactions bigint; n_user_events bigint; n_responses bigint; n_users bigint;
    deleted jsonb;
BEGIN
    PERFORM pg_advisory_xact_lock(744412);
    DELETE FROM interactions WHERE user_id = p_user_id AND ts < p_erased_at;
    GET DIAGNOSTICS n_interactions = ROW_COUNT;
    DELETE FROM user_events WHERE user_id = p_user_id AND ts < p_erased_at;
    GET DIAGNOSTICS n_user_events = ROW_COUNT;
    DELETE FROM recommendation_responses WHERE user_id = p_user_id AND ts < p_erased_at;
    GET DIAGNOSTICS n_responses = ROW_COUNT;
    DELETE FROM users WHERE user_id = p_user_id;
    GET DIAGNOSTICS n_users = ROW_COUNT;
    -- what the user did after the erasure stays, and so does their row for it
    INSERT INTO users (user_id, first_seen, last_seen)
        SELECT user_id, min(ts), max(ts) FROM interactions WHERE user_id = p_user_id GROUP BY user_id;
    deleted := jsonb_build_object('interactions', n_interactions, 'user_events', n_user_events,
                                  'recommendation_responses', n_responses, 'users', n_users);
    INSERT INTO user_erasures (user_hash, erased_at, deleted)
        VALUES (encode(sha256(convert_to(p_user_id, 'UTF8')), 'hex'), p_erased_at, deleted)
        ON CONFLICT (user_hash, erased_at) DO NOTHING;
    RETURN deleted;
END $$;
REVOKE ALL ON FUNCTION recsys_erase_user(text, timestamptz) FROM PUBLIC;
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
