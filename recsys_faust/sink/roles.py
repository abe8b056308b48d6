"""Database access control: a migration owner and a least-privilege worker role.

``recsys-faust db init`` runs as the owner (the role in DATABASE_URL: it creates the tables, so
it owns them). With ``--worker-role NAME`` it also creates or updates a login role for the
workers that may read and insert rows, update the two entity tables the sink keeps first/last
seen in, and nothing else: no CREATE on the schema, no DROP, no ALTER (only an owner may),
no DELETE (an erasure deletes through the owner's ``recsys_erase_user``, which the role may
call), and no INSERT into the migration record or the erasure audit. Workers then run with that role in DATABASE_URL and ``RECSYS_DB_MIGRATE=false``. With
``--reader-role NAME`` it makes a role that may only SELECT, for the retrainer.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from psycopg import sql

#: Tables the sink updates in place (first_seen/last_seen by least/greatest).
UPDATED_TABLES = ("users", "products")
#: The schema's migration record (sink/schema.py): readable by workers, written by the owner only.
MIGRATIONS_TABLE = "schema_migrations"
#: The erasure audit rows and the owner's function that writes them with the deletes (sink/schema.py).
ERASURES_TABLE = "user_erasures"
ERASE_FUNCTION = "recsys_erase_user"
_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_role_name(name: str) -> str:
    if not _ROLE_NAME.match(name):
        raise ValueError(f"role name {name!r}: use lower-case letters, digits and _ (at most 63)")
    return name


async def _login_role(conn: Any, role: str, password: Optional[str]) -> Any:
    """Create ``role`` (or update its password) with no privilege but to log in; its identifier."""
    ident = sql.Identifier(check_role_name(role))
    cur = await conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,))
    exists = await cur.fetchone() is not None
    verb = sql.SQL("ALTER ROLE") if exists else sql.SQL("CREATE ROLE")
    options = sql.SQL("LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT")
    if password:
        await conn.execute(sql.SQL("{} {} {} PASSWORD {}").format(verb, ident, options, sql.Literal(password)))
    else:
        await conn.execute(sql.SQL("{} {} {}").format(verb, ident, options))
    db = (await (await conn.execute("SELECT current_database()")).fetchone())[0]
    await conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(db), ident))
    await conn.execute(sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(ident))
    await conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(ident))
    return ident


async def ensure_worker_role(conn: Any, role: str, password: Optional[str]) -> None:
    """Create ``role`` (or update its password) and grant it exactly what a worker needs."""
    ident = await _login_role(conn, role, password)
    db = (await (await conn.execute("SELECT current_database()")).fetchone())[0]
    await conn.execute(sql.SQL("GRANT TEMPORARY ON DATABASE {} TO {}").format(sql.Identifier(db), ident))
    await conn.execute(sql.SQL("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {}").format(ident))
    for table in UPDATED_TABLES:
        await conn.execute(sql.SQL("GRANT UPDATE ON {} TO {}").format(sql.Identifier(table), ident))
    # The migration record is the owner's: a worker that could add to it could mark a migration
    # done that never ran.
    await conn.execute(sql.SQL("REVOKE INSERT ON {} FROM {}").format(sql.Identifier(MIGRATIONS_TABLE), ident))
    # Erasure: the owner's function deletes one user's rows and writes the audit row; the role
    # may call it, and may neither delete rows nor forge audit rows itself.
    await conn.execute(sql.SQL("REVOKE INSERT ON {} FROM {}").format(sql.Identifier(ERASURES_TABLE), ident))
    await conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}(text, timestamptz) TO {}").format(
        sql.Identifier(ERASE_FUNCTION), ident))
    await conn.commit()


async def ensure_reader_role(conn: Any, role: str, password: Optional[str]) -> None:
    """Create ``role`` (or update its password) with SELECT on every table and nothing else: the
    retrainer reads the interactions and writes nothing to the database."""
    ident = await _login_role(conn, role, password)
    await conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(ident))
    await conn.commit()
