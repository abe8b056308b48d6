"""``models list|activate|prune``: the model registry on amazon-model-updates."""

from __future__ import annotations

import asyncio
import json
import time

import click

from .base import _settings, main


@main.group()
def models() -> None:
    """The model lifecycle on amazon-model-updates: list, activate (roll back), prune.

    Every worker follows that topic, so each command acts on the whole cluster at once, and a
    worker restarted later comes back on the same version.
    """


def _run_models(coro_fn, *args):
    from ..kafka.read_all import TopicMissing
    from ..ops.models import ModelsError

    settings = _settings()
    try:
        return asyncio.run(coro_fn(settings, *args))
    except (ModelsError, TopicMissing) as exc:
        raise click.ClickException(str(exc))
    except Exception as exc:  # noqa: BLE001 - a readable error, not a trace
        raise click.ClickException(f"{settings.kafka.broker}: {type(exc).__name__}: {exc}")


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models_list(as_json: bool) -> None:
    """Every version on the topic, newest first: which one is served, which is pinned, offline NDCG@10."""
    from ..ops.models import read_registry

    rows = _run_models(read_registry).summary()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no model on amazon-model-updates (the workers serve popularity)")
        return
    click.echo(f"{'':2}{'version':24}{'published (UTC)':22}{'factors':>8}{'items':>8}{'NDCG@10':>9}{'MB':>7}")
    for r in rows:
        figures = r["offline_metrics"]
        ndcg = (figures.get("als+transitions") or figures.get("als") or {}).get("ndcg@10")  # what is served
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["published_at"]))
        mark = ("*" if r["active"] else " ") + ("p" if r["pinned"] else " ")
        click.echo(f"{mark}{r['model_version']:24}{when:22}{r['factors'] or '':>8}{r['items'] or '':>8}"
                   f"{'' if ndcg is None else f'{ndcg:.4f}':>9}{r['bytes'] / 1e6:>7.1f}")
    click.echo("* served by every worker   p pinned by `models activate`")


@models.command("activate")
@click.argument("version")
def models_activate(version: str) -> None:
    """Serve VERSION on every worker (a rollback, or a chosen roll-forward); a later publication wins again."""
    from ..ops.models import activate

    pin = _run_models(activate, version)
    click.echo(f"activated {pin['model_version']}: every worker switches to it (and comes back on it after a restart)")


@models.command("prune")
@click.option("--keep", type=int, default=3, show_default=True, help="Newest publications kept (the served one always is).")
def models_prune(keep: int) -> None:
    """Remove older versions from the topic (tombstones; compaction then drops them), so start-up reads less."""
    from ..ops.models import prune

    doomed = _run_models(prune, keep)
    click.echo(f"pruned {len(doomed)} version(s){': ' + ', '.join(doomed) if doomed else ''}")
