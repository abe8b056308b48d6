"""The database part of a backup: every table of the schema as CSV through COPY, and back.

Why not ``pg_dump``: a dump written by one major version does not restore into an older server
(``pg_dump`` 18 emits ``SET transaction_timeout``, which PostgreSQL 15 refuses), the client tools
must match the server, and the password reaches their command line (visible in ``ps``). The
schema is the project's own (``sink/schema.py``, numbered migrations), so a backup is its rows:
``COPY ... TO STDOUT (FORMAT csv)`` per table, and a restore runs the migrations on the target
and ``COPY ... FROM STDIN`` in one transaction. Any PostgreSQL 14+ server to any other; only the
connection the sink already uses.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable

import psycopg

from .schema import LATEST_VERSION, migrate, schema_version

#: Every table of the schema, parents of nothing first (none has a foreign key today).
TABLES = ("users", "products", "interactions", "user_events", "recommendation_responses", "model_versions",
          "drift_alerts", "metric_snapshots", "user_erasures")
CHUNK = 1 << 20


class DatabaseRestoreError(RuntimeError):
    """The database cannot take the backup; the message says why."""


async def dump_tables(dsn: str, folder: Path, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Each table as ``folder/<table>.csv``; returns the manifest's database entry."""
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"tables": {}}
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        out["server_version"] = conn.info.server_version
        async with conn.transaction():
            await conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot for every table
            out["schema_version"] = await schema_version(conn)
            for table in TABLES:
                path = folder / f"{table}.csv"
                digest = hashlib.sha256()
                with path.open("wb") as fh:
                    async with conn.cursor().copy(f"COPY {table} TO STDOUT (FORMAT csv, HEADER true)") as copy:
                        async for chunk in copy:
                            fh.write(chunk)
                            digest.update(chunk)
                rows = max(0, sum(1 for _ in path.open("rb")) - 1) if path.stat().st_size else 0
                out["tables"][table] = {"file": f"database/{table}.csv", "rows": rows, "sha256": digest.hexdigest()}
                echo(f"  {table}: {rows:,} rows")
    return out


async def load_tables(dsn: str, root: Path, entry: dict[str, Any], echo: Callable[[str], None] = print) -> None:
    """The tables of ``entry`` (a manifest's database entry) into an empty database at ``dsn``."""
    if entry.get("schema_version", 0) > LATEST_VERSION:
        raise DatabaseRestoreError(f"the backup's schema is version {entry['schema_version']}, this release "
                                   f"knows up to {LATEST_VERSION}: restore with a newer recsys-faust")
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await migrate(conn)
        busy = []
        for table in TABLES:
            cur = await conn.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
            if (await cur.fetchone())[0]:
                busy.append(table)
        if busy:
            raise DatabaseRestoreError(f"tables already hold rows: {', '.join(busy)}; restore into an empty database")
        async with conn.transaction():
            for table in TABLES:
                meta = entry["tables"].get(table)
                if meta is None:
                    continue
                path = root / "database" / f"{table}.csv"   # the name is ours, never the manifest's
                with path.open("rb") as fh:
                    async with conn.cursor().copy(f"COPY {table} FROM STDIN (FORMAT csv, HEADER true)") as copy:
                        while chunk := fh.read(CHUNK):
                            await copy.write(chunk)
                echo(f"  {table}: {meta['rows']:,} rows")
