"""``topics`` and ``db``: the topics of topics.yaml and the PostgreSQL schema, roles and rows."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Optional

import click

from .base import _database_and_keys, _settings, _without_password, main


@main.group()
def topics() -> None:
    """Manage the Kafka topics declared in topics.yaml."""


@topics.command("apply")
@click.option("--dry-run", is_flag=True, help="Only report what would be created.")
@click.option("--replication-factor", type=int, default=None,
              help="Override every topic's replication factor (1 on a single dev broker).")
@click.option("--partitions", type=int, default=None, help="Override the per-user topics' partition count.")
def topics_apply(dry_run: bool, replication_factor: Optional[int], partitions: Optional[int]) -> None:
    """Create missing topics from topics.yaml and report any mismatch (idempotent)."""
    from ..kafka.topics import TopicsRefused, apply_topics, plan_from_settings

    settings = _settings(replication_factor=replication_factor, user_partitions=partitions)
    plan = plan_from_settings(settings)
    try:
        report = asyncio.run(apply_topics(settings, plan, dry_run=dry_run))
    except TopicsRefused as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a readable line instead of a trace
        raise click.ClickException(f"cannot reach the broker at {settings.kafka.broker}: {type(exc).__name__}: {exc}")
    for line in report.lines():
        click.echo(line)
    if report.mismatches or report.unchecked:
        sys.exit(1)


@main.group()
def db() -> None:
    """Manage the PostgreSQL schema."""


@db.command("init")
@click.option("--worker-role", default=None, metavar="NAME",
              help="Also create (or update) a least-privilege login role for the workers: read and insert "
                   "rows, no DDL. Its password: RECSYS_DB_WORKER_PASSWORD.")
@click.option("--reader-role", default=None, metavar="NAME",
              help="Also create (or update) a login role that may only SELECT (the retrainer). Its password: "
                   "RECSYS_DB_READER_PASSWORD.")
def db_init(worker_role: Optional[str], reader_role: Optional[str]) -> None:
    """Create or migrate the database schema (idempotent), as the role in DATABASE_URL (its owner)."""
    import psycopg

    from ..sink.roles import ensure_reader_role, ensure_worker_role
    from ..sink.schema import LATEST_VERSION, migrate

    settings = _settings()
    if not settings.sink.database_url:
        raise click.UsageError("DATABASE_URL is not set")

    async def run() -> list[int]:
        async with await psycopg.AsyncConnection.connect(settings.sink.dsn) as conn:
            applied = await migrate(conn)
            if worker_role:
                await ensure_worker_role(conn, worker_role, settings.secret("db_worker_password"))
            if reader_role:
                await ensure_reader_role(conn, reader_role, settings.secret("db_reader_password"))
            return applied

    try:
        applied = asyncio.run(run())
    except ValueError as exc:
        raise click.UsageError(str(exc))
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot migrate {_without_password(settings.sink.dsn)}: {exc}")
    click.echo(f"applied migrations {applied}; schema at version {LATEST_VERSION}" if applied
               else f"schema already at version {LATEST_VERSION}")
    if worker_role:
        click.echo(f"worker role {worker_role}: SELECT and INSERT on every table, UPDATE on users and products, "
                   "no DDL; run workers with it in DATABASE_URL and RECSYS_DB_MIGRATE=false")
    if reader_role:
        click.echo(f"reader role {reader_role}: SELECT on every table, nothing else (the retrainer)")



@db.command("events")
@click.option("--user", "user_id", required=True, help="The user whose stored events to show.")
@click.option("--limit", type=int, default=20, show_default=True, help="Newest events shown.")
def db_events(user_id: str, limit: int) -> None:
    """A user's stored events as JSON lines, newest first, sealed fields opened with RECSYS_FIELD_KEYS."""

    import psycopg
    from cryptography.fernet import InvalidToken

    from ..sink.sealing import user_events

    settings, cipher = _database_and_keys()

    async def run() -> None:
        async with await psycopg.AsyncConnection.connect(settings.sink.dsn) as conn:
            async for event in user_events(conn, cipher, user_id, limit):
                click.echo(json.dumps(event, sort_keys=True))

    try:
        asyncio.run(run())
    except InvalidToken:
        raise click.ClickException("a sealed field does not open with any key of RECSYS_FIELD_KEYS "
                                   "(was a key removed before `keys rotate` ran?)")
    except psycopg.Error as exc:
        raise click.ClickException(f"cannot read {_without_password(settings.sink.dsn)}: {exc}")
