"""``keys``: the field keys of the sealed fields, the model signing pair, fresh secrets."""

from __future__ import annotations

import asyncio
import sys

import click

from .base import _database_and_keys, _without_password, main


@main.group()
def keys() -> None:
    """Keys: the field keys of the sealed sensitive fields (RECSYS_FIELD_KEYS, newest first) and the
    model signing pair (RECSYS_MODEL_SIGNING_KEY / RECSYS_MODEL_VERIFY_KEY)."""


@keys.command("secrets")
def keys_secrets() -> None:
    """Print fresh values for every secret .env.example leaves empty (tokens, passwords, the
    forward secret, the model signing pair): `recsys-faust keys secrets >> .env`."""
    from ..ops.secrets import fresh_secrets

    for name, value in fresh_secrets().items():
        click.echo(f"{name}={value}")


@keys.command("models")
def keys_models() -> None:
    """Print a new Ed25519 pair for model announcements: the signing key goes only where
    `train --publish`, `retrain` and `models activate` run, the verify key on every worker."""
    from ..ranking.model.announcement import generate_pair

    private, public = generate_pair()
    click.echo(f"RECSYS_MODEL_SIGNING_KEY={private}")
    click.echo(f"RECSYS_MODEL_VERIFY_KEY={public}")


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key. To rotate: put it first in RECSYS_FIELD_KEYS, restart the workers
    and producers, run `keys rotate`, then drop the old key."""
    from ..events.protect import generate_key

    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-seal every stored sensitive field in PostgreSQL with the newest key (and seal any stored
    in plaintext), so that the older keys can be removed. Safe to interrupt and run again."""
    import psycopg
    from cryptography.fernet import InvalidToken

    from ..sink.sealing import count_rows, reseal_rows

    settings, cipher = _database_and_keys()
    if cipher is None:
        raise click.UsageError("RECSYS_FIELD_KEYS is not set: nothing to rotate to")

    unopened: list[tuple[str, str]] = []

    async def run() -> tuple[int, int]:
        async with await psycopg.AsyncConnection.connect(settings.sink.dsn) as conn:
            total = await count_rows(conn, cipher)
            with click.progressbar(length=total, label="re-sealing stored rows", file=sys.stderr) as bar:
                changed = await reseal_rows(conn, cipher, on_batch=bar.update, unopened=unopened)
            return total, changed

    try:
        total, changed = asyncio.run(run())
    except InvalidToken:  # a row read outside reseal_rows' guard: never expected
        raise click.ClickException("a stored field does not open with any key of RECSYS_FIELD_KEYS")
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot rotate in {_without_password(settings.sink.dsn)}: {exc}")
    if unopened:
        first = ", ".join(f"{table} {key}" for table, key in unopened[:5])
        raise click.ClickException(
            f"{changed} of {total} rows re-sealed; {len(unopened)} hold a value no key of RECSYS_FIELD_KEYS opens "
            f"(first: {first}), left as they are. If an old key was removed too early, put it back after the new "
            f"one and run again; otherwise they hold text a client sent shaped like a sealed value")
    click.echo(f"{changed} of {total} rows re-sealed with the newest key; the older keys can now be removed")
