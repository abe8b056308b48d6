"""``replay``, ``evaluate``, ``train`` and ``retrain``: data in, models out."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Optional

import click

from .base import _settings, main


@main.command()
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV user_id,item_id,rating,timestamp[,category]. Default: the synthetic demo shop.")
@click.option("--rate", type=float, default=None, help="Events per second (default: as fast as possible).")
@click.option("--kind", type=click.Choice(["purchase", "review", "view"]), default="purchase",
              show_default=True, help="Event kind for dataset rows (review sends the rating).")
@click.option("--limit", type=int, default=None, help="Send only the first N rows.")
@click.option("--users", type=int, default=300, show_default=True, help="Synthetic shop: users.")
@click.option("--seed", type=int, default=7, show_default=True, help="Synthetic shop: random seed.")
def replay(data: Optional[Path], rate: Optional[float], kind: str, limit: Optional[int], users: int, seed: int) -> None:
    """Send a dataset (or the synthetic demo shop) to the topics as events."""
    from ..client.replay import replay_events
    from ..client.datasets import ShopSpec, count_rows, dataset_events, synthetic_events

    settings = _settings()
    if data is not None:
        total = min(count_rows(data), limit) if limit else count_rows(data)
        events = dataset_events(data, kind=kind, limit=limit)
    else:
        evs = synthetic_events(ShopSpec(users=users, seed=seed))
        events, total = iter(evs[:limit] if limit else evs), (min(len(evs), limit) if limit else len(evs))
    with click.progressbar(length=total, label=f"replaying to {settings.kafka.broker}") as bar:
        sent = asyncio.run(replay_events(settings, events, rate=rate, on_progress=bar.update))
    click.echo(f"sent {sent} events")


def _als_options(fn=None, *, kind: bool = True):
    if fn is None:
        return lambda f: _als_options(f, kind=kind)
    options = [
        click.option("--factors", type=int, default=None, help="ALS factors (RECSYS_ALS_FACTORS, default 128)."),
        click.option("--regularization", type=float, default=None, help="ALS regularization (default 1.0)."),
        click.option("--alpha", type=float, default=None, help="ALS confidence scale (default 10)."),
        click.option("--iterations", type=int, default=None, help="ALS iterations (default 15)."),
        click.option("--seed", type=int, default=None, help="Random seed (default 42)."),
    ]
    if kind:
        options.append(click.option("--kind", type=click.Choice(["purchase", "review", "view"]), default="purchase",
                                    show_default=True, help="What a dataset row is (sets its weight; review uses the rating)."))
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _quality_table(quality) -> None:
    click.echo(f"{'model':<18} {'NDCG@10':>8} {'HR@10':>8} {'coverage':>9} {'users':>7}")
    for q in quality:
        click.echo(f"{q.name:<18} {q.ndcg:>8.4f} {q.hr:>8.4f} {q.coverage:>9.4f} {q.users:>7}")


@main.command()
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="CSV user_id,item_id,rating,timestamp[,category].")
@_als_options
def evaluate(data: Path, factors, regularization, alpha, iterations, seed, kind) -> None:
    """Offline quality: leave-last-out NDCG@10, HR@10 and coverage of ALS, item transitions,
    their blend and two popularity baselines."""
    from ..training.evaluate import evaluate as run_eval
    from ..training.train import eval_options, load_dataset, params_from_settings

    settings = _settings()
    params = params_from_settings(settings, factors=factors, regularization=regularization, alpha=alpha,
                                  iterations=iterations, seed=seed)
    dataset = load_dataset(data, settings, kind)
    click.echo(f"{data}: {len(dataset)} interactions, {dataset.n_users} users, {dataset.n_items} items")
    quality, seconds = run_eval(dataset, params, progress=click.echo, **eval_options(settings))
    click.echo(f"ALS {params.as_dict()} fitted in {seconds:.2f}s")
    _quality_table(quality)


@main.command()
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="CSV user_id,item_id,rating,timestamp[,category]. Default: the interactions in DATABASE_URL.")
@click.option("--publish", is_flag=True, help="Announce the model on amazon-model-updates (workers switch to it).")
@click.option("--no-eval", is_flag=True, help="Skip the holdout evaluation recorded in the manifest.")
@_als_options
def train(data: Optional[Path], publish: bool, no_eval: bool, factors, regularization, alpha, iterations, seed,
          kind) -> None:
    """Train ALS, write models/<version> (npz + manifest), optionally publish it."""
    from ..training.train import load_database, load_dataset, params_from_settings, publish as publish_model, train_dataset

    settings = _settings()
    params = params_from_settings(settings, factors=factors, regularization=regularization, alpha=alpha,
                                  iterations=iterations, seed=seed)
    if data is not None:
        dataset, source = load_dataset(data, settings, kind), str(data)
    elif settings.sink.database_url:
        try:
            dataset, source = load_database(settings.sink.dsn, settings), "postgresql:interactions"
        except Exception as exc:  # noqa: BLE001
            raise click.ClickException(f"cannot read interactions from the database: {exc}")
    else:
        raise click.UsageError("give --data PATH, or set DATABASE_URL to train from the persisted interactions")
    click.echo(f"{source}: {len(dataset)} interactions, {dataset.n_users} users, {dataset.n_items} items")
    result = train_dataset(dataset, settings, params, source=source, evaluate_first=not no_eval,
                           say=click.echo, show_progress=True)
    if result.quality:
        _quality_table(result.quality)
    click.echo(f"model {result.artifact.version} written to {result.path} "
               f"(fit {result.fit_seconds:.2f}s, total {result.total_seconds:.2f}s)")
    if publish:
        try:
            size = asyncio.run(publish_model(settings, result.artifact))
        except Exception as exc:  # noqa: BLE001
            raise click.ClickException(f"publishing to {settings.kafka.broker} failed: {type(exc).__name__}: {exc}")
        click.echo(f"published {result.artifact.version} on amazon-model-updates ({size / 1e6:.1f} MB)")


@main.command()
@click.option("--watch", is_flag=True, help="Keep running: retrain whenever a drift alert on the served model or its "
              "online hit rate says it went stale (docs/architecture.md, \"Retraining on its own\"). Without it: retrain once, now.")
@click.option("--on-drift", "on_drift", default=None, metavar="FEATURES",
              help="Drift alerts on these comma-separated features trigger (RECSYS_RETRAIN_DRIFT_FEATURES, default "
                   "catalogue: traffic on items the model does not know). Empty: none.")
@click.option("--min-hit-rate", type=click.FloatRange(0, 1), default=None,
              help="Retrain when the served model's hit rate across the cluster is below this (RECSYS_RETRAIN_MIN_HIT_RATE; 0: off).")
@click.option("--min-answers", type=click.IntRange(1), default=None,
              help="... judged once it has served this many answers (RECSYS_RETRAIN_MIN_ANSWERS, default 1000).")
@click.option("--cooldown", type=click.FloatRange(0), default=None,
              help="Seconds between two retrains at least (RECSYS_RETRAIN_COOLDOWN_S, default 3600).")
@click.option("--gate", type=click.FloatRange(0), default=None,
              help="Publish only if the new model's offline NDCG@10 is at least this times the served model's "
                   "(RECSYS_RETRAIN_GATE, default 0.8; 0: always publish, and skip the evaluation).")
@click.option("--max-retrains", type=click.IntRange(1), default=None, help="With --watch: stop after this many retrains.")
@click.option("--heartbeat", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --watch: touch this file every 10 s while running (for a container health check).")
@_als_options(kind=False)
def retrain(watch: bool, on_drift: Optional[str], min_hit_rate: Optional[float], min_answers: Optional[int],
            cooldown: Optional[float], gate: Optional[float], max_retrains: Optional[int], heartbeat: Optional[Path],
            factors, regularization, alpha, iterations, seed) -> None:
    """Train on the interactions persisted in DATABASE_URL and publish the model if it passes the
    quality gate; with --watch, whenever the cluster says the served model went stale."""
    from ..ops.retrain import RetrainError, retrain_once, watch as run_watch
    from ..training.train import params_from_settings
    from ..settings import drift_features
    from ..training.watch import RetrainPolicy, RetrainWatch

    if on_drift is not None:
        try:
            drift_features(on_drift)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--on-drift")
    settings = _settings(retrain_drift_features=on_drift, retrain_min_hit_rate=min_hit_rate,
                         retrain_min_answers=min_answers, retrain_cooldown_s=cooldown, retrain_gate=gate)
    if not settings.sink.database_url:
        raise click.UsageError("retrain trains on the persisted interactions: set DATABASE_URL")
    params = params_from_settings(settings, factors=factors, regularization=regularization, alpha=alpha,
                                  iterations=iterations, seed=seed)
    policy = RetrainPolicy.from_settings(settings.retrain)

    def say(text: str) -> None:
        click.echo(f"{time.strftime('%H:%M:%S')} {text}")

    async def once() -> Optional[str]:
        from ..ops.models import read_registry

        state = RetrainWatch(policy)
        state.registry = await read_registry(settings)
        return await retrain_once(settings, params, state, say)

    try:
        if watch:
            asyncio.run(run_watch(settings, params, policy, say, max_retrains=max_retrains, heartbeat=heartbeat))
        elif asyncio.run(once()) is None:
            sys.exit(3)
    except RetrainError as exc:
        raise click.ClickException(str(exc))
    except KeyboardInterrupt:
        say("stopped")
