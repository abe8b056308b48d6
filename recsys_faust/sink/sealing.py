"""Stored rows and the field keys: re-seal every row with the newest key (``keys rotate``), and
read a user's events with their sealed fields opened (``db events``)."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Callable, Optional

from cryptography.fernet import InvalidToken

from ..events.protect import FieldCipher

#: (table, key column, kind expression): where payloads with sensitive fields are stored.
_TABLES = (("interactions", "event_id", "kind"), ("user_events", "event_id", "'user-event'"))
BATCH_ROWS = 1_000


def _kinds_sql(cipher: FieldCipher, table: str) -> Optional[str]:
    """The WHERE clause limiting ``table`` to kinds that have sensitive fields (None: skip it)."""
    kinds = set(cipher.fields)
    if table == "user_events":
        return "true" if "user-event" in kinds else None
    wanted = sorted(kinds & {"view", "purchase", "review"})
    return "kind IN (" + ", ".join(f"'{k}'" for k in wanted) + ")" if wanted else None


async def count_rows(conn: Any, cipher: FieldCipher) -> int:
    total = 0
    for table, _key, _kind in _TABLES:
        where = _kinds_sql(cipher, table)
        if where:
            total += (await (await conn.execute(f"SELECT count(*) FROM {table} WHERE {where}")).fetchone())[0]
    return total


async def reseal_rows(conn: Any, cipher: FieldCipher, *, on_batch: Callable[[int], None] = lambda n: None,
                      unopened: Optional[list[tuple[str, str]]] = None) -> int:
    """Seal every stored sensitive field with the newest key (plaintext ones too); rows changed.

    Keyset pagination by the primary key, one transaction per batch: safe to stop and run again
    (a row already sealed with the newest key is sealed again, which changes nothing a reader sees).
    A row holding a value no key opens (an old key missing from the list, or a client that sent
    text shaped like a sealed value) is left as it is and named in ``unopened`` as (table, key),
    so one such row never stops the others from being re-sealed.
    """
    changed = 0
    for table, key, kind_sql in _TABLES:
        where = _kinds_sql(cipher, table)
        if where is None:
            continue
        last = ""
        while True:
            cur = await conn.execute(
                f"SELECT {key}, {kind_sql}, payload FROM {table} WHERE {where} AND {key} > %s "
                f"ORDER BY {key} LIMIT {BATCH_ROWS}", (last,))
            rows = await cur.fetchall()
            if not rows:
                break
            updates = []
            for row_key, kind, payload in rows:
                try:
                    resealed, was_changed = cipher.reseal(kind, payload)
                except InvalidToken:
                    if unopened is not None:
                        unopened.append((table, row_key))
                    continue
                if was_changed:
                    updates.append((json.dumps(resealed, separators=(",", ":")), row_key))
            async with conn.transaction():
                async with conn.cursor() as c:
                    await c.executemany(f"UPDATE {table} SET payload = %s::jsonb WHERE {key} = %s", updates)
            changed += len(updates)
            last = rows[-1][0]
            on_batch(len(rows))
    return changed


async def user_events(conn: Any, cipher: Optional[FieldCipher], user_id: str, limit: int) -> AsyncIterator[dict]:
    """A user's stored events, newest first, sealed fields opened when keys are given."""
    cur = await conn.execute(
        "SELECT kind, ts, payload FROM interactions WHERE user_id = %s "
        "UNION ALL SELECT 'user-event', ts, payload FROM user_events WHERE user_id = %s "
        "ORDER BY ts DESC LIMIT %s", (user_id, user_id, limit))
    for kind, _ts, payload in await cur.fetchall():
        yield {"kind": kind, **(cipher.open(kind, payload) if cipher is not None else payload)}
