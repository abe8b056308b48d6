"""``users forget`` and ``catalog load|set``: what a shop's back office sends to every worker."""

from __future__ import annotations

import asyncio
import getpass
import json
from pathlib import Path
from typing import Optional

import click

from .base import _settings, main


@main.group()
def users() -> None:
    """Users: erase them everywhere (the right to be forgotten)."""


@users.command("forget")
@click.argument("user_ids", nargs=-1, required=True)
def users_forget(user_ids: tuple[str, ...]) -> None:
    """Erase USER_IDS: their state on every worker, their PostgreSQL rows (an audit row stays),
    and any older record of theirs read later. docs/erasure.md says what remains, and for how long."""
    from ..events.prepare import InvalidEventError
    from ..ops.shop import forget_users

    settings = _settings()
    try:
        sent = asyncio.run(forget_users(settings, user_ids, f"cli:{getpass.getuser()}"))
    except InvalidEventError as exc:
        raise click.UsageError(str(exc.invalid))
    except Exception as exc:  # noqa: BLE001 - a readable error, not a trace
        raise click.ClickException(f"{settings.kafka.broker}: {type(exc).__name__}: {exc}")
    for row in sent:
        click.echo(f"erasure of {row['user_id']} on {row['topic']} (erased_at {row['erased_at']:.3f})")


@main.group()
def catalog() -> None:
    """Catalogue rules (available, hidden_until, category, boost) applied to every answer."""


@catalog.command("load")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_load(path: Path) -> None:
    """Send one rule per row of PATH (CSV: product_id or item_id; optional category, available,
    boost, hidden_until). The shared Amazon data's items.csv loads as it is (its categories)."""
    from ..ops.shop import CatalogueFileError, read_rules, send_rules

    settings = _settings()
    try:
        rules = list(read_rules(path))
    except CatalogueFileError as exc:
        raise click.UsageError(str(exc))
    click.echo(f"sending {len(rules):,} rules to recsys-catalogue ...")
    try:
        n = asyncio.run(send_rules(settings, rules, progress=lambda done: click.echo(f"  {done:,} / {len(rules):,}")))
    except Exception as exc:  # noqa: BLE001 - a readable error, not a trace
        raise click.ClickException(f"{settings.kafka.broker}: {type(exc).__name__}: {exc}")
    click.echo(f"sent {n:,} rules: every worker applies them to its answers as it reads them")


@catalog.command("set")
@click.argument("product_id")
@click.option("--available/--unavailable", default=True, show_default=True, help="Whether the item may be recommended.")
@click.option("--category", default=None, help="The item's category (wins over the events').")
@click.option("--boost", type=float, default=1.0, show_default=True, help="Score factor, within [0.25, 4].")
@click.option("--hidden-until", type=float, default=None, help="Hidden until this unix time.")
def catalog_set(product_id: str, available: bool, category: Optional[str], boost: float,
                hidden_until: Optional[float]) -> None:
    """Set PRODUCT_ID's rule (what `PUT /api/products/{id}` does)."""
    from ..catalogue.rules import parse_rule
    from ..events.model import Invalid
    from ..ops.shop import send_rules

    rule = parse_rule({"product_id": product_id, "available": available, "category": category, "boost": boost,
                       "hidden_until": hidden_until})
    if isinstance(rule, Invalid):
        raise click.UsageError(rule.detail)
    settings = _settings()
    try:
        asyncio.run(send_rules(settings, [rule]))
    except Exception as exc:  # noqa: BLE001 - a readable error, not a trace
        raise click.ClickException(f"{settings.kafka.broker}: {type(exc).__name__}: {exc}")
    click.echo(json.dumps(rule.as_record()))
