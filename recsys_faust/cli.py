"""``recsys-faust``: the operator's commands. Every one has ``--help``."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import sys
from pathlib import Path
from typing import Any, Optional

import click

from .version import __version__
from .settings import Settings, SettingsError


def _settings(**overrides: object) -> Settings:
    try:
        base = Settings.from_env()
    except SettingsError as exc:
        raise click.UsageError(str(exc))
    changes = {k: v for k, v in overrides.items() if v is not None}
    return base.with_overrides(**changes) if changes else base


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="recsys-faust")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """recsys-faust: Kafka-native, real-time product recommendations.

    Workers run with `faust -A recsys_faust worker -l info`; these commands set up, feed and
    inspect a deployment. Configuration comes from the environment and a .env file
    (KAFKA_BROKER, DATABASE_URL, WEB_PORT, RECSYS_*).
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


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
    from .kafka.topics import TopicsRefused, apply_topics, plan_from_settings

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

    from .sink.roles import ensure_reader_role, ensure_worker_role
    from .sink.schema import LATEST_VERSION, migrate

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


def _without_password(dsn: str) -> str:
    """A DSN fit for an error message."""
    import re

    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


def _database_and_keys() -> tuple[Settings, Any]:
    """The settings of a command that needs the database, and the field cipher (None without keys)."""
    from .events.protect import FieldCipher

    settings = _settings()
    if not settings.sink.database_url:
        raise click.UsageError("DATABASE_URL is not set")
    try:
        return settings, FieldCipher.from_settings(settings)
    except ValueError as exc:
        raise click.UsageError(str(exc))


@db.command("events")
@click.option("--user", "user_id", required=True, help="The user whose stored events to show.")
@click.option("--limit", type=int, default=20, show_default=True, help="Newest events shown.")
def db_events(user_id: str, limit: int) -> None:
    """A user's stored events as JSON lines, newest first, sealed fields opened with RECSYS_FIELD_KEYS."""

    import psycopg
    from cryptography.fernet import InvalidToken

    from .sink.sealing import user_events

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


@main.group()
def keys() -> None:
    """Keys: the field keys of the sealed sensitive fields (RECSYS_FIELD_KEYS, newest first) and the
    model signing pair (RECSYS_MODEL_SIGNING_KEY / RECSYS_MODEL_VERIFY_KEY)."""


@keys.command("secrets")
def keys_secrets() -> None:
    """Print fresh values for every secret .env.example leaves empty (tokens, passwords, the
    forward secret, the model signing pair): `recsys-faust keys secrets >> .env`."""
    import secrets

    from .ranking.model.announcement import generate_pair

    for name in ("POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "RECSYS_API_TOKEN", "RECSYS_READ_TOKENS",
                 "RECSYS_INGEST_TOKENS", "RECSYS_METRICS_TOKEN", "RECSYS_DB_WORKER_PASSWORD", "RECSYS_DB_READER_PASSWORD",
                 "RECSYS_FORWARD_SECRET"):
        click.echo(f"{name}={secrets.token_urlsafe(32)}")
    private, public = generate_pair()
    click.echo(f"RECSYS_MODEL_SIGNING_KEY={private}")
    click.echo(f"RECSYS_MODEL_VERIFY_KEY={public}")


@keys.command("models")
def keys_models() -> None:
    """Print a new Ed25519 pair for model announcements: the signing key goes only where
    `train --publish`, `retrain` and `models activate` run, the verify key on every worker."""
    from .ranking.model.announcement import generate_pair

    private, public = generate_pair()
    click.echo(f"RECSYS_MODEL_SIGNING_KEY={private}")
    click.echo(f"RECSYS_MODEL_VERIFY_KEY={public}")


@keys.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key. To rotate: put it first in RECSYS_FIELD_KEYS, restart the workers
    and producers, run `keys rotate`, then drop the old key."""
    from .events.protect import generate_key

    click.echo(generate_key())


@keys.command("rotate")
def keys_rotate() -> None:
    """Re-seal every stored sensitive field in PostgreSQL with the newest key (and seal any stored
    in plaintext), so that the older keys can be removed. Safe to interrupt and run again."""
    import psycopg
    from cryptography.fernet import InvalidToken

    from .sink.sealing import count_rows, reseal_rows

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
    from .client.replay import replay_events
    from .client.datasets import ShopSpec, count_rows, dataset_events, synthetic_events

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
    from .training.evaluate import evaluate as run_eval
    from .training.train import eval_options, load_dataset, params_from_settings

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
    from .training.train import load_database, load_dataset, params_from_settings, publish as publish_model, train_dataset

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
    from .ops.retrain import RetrainError, retrain_once, watch as run_watch
    from .training.train import params_from_settings
    from .settings import drift_features
    from .training.watch import RetrainPolicy, RetrainWatch

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
        from .ops.models import read_registry

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


@main.group()
def models() -> None:
    """The model lifecycle on amazon-model-updates: list, activate (roll back), prune.

    Every worker follows that topic, so each command acts on the whole cluster at once, and a
    worker restarted later comes back on the same version.
    """


def _run_models(coro_fn, *args):
    from .kafka.read_all import TopicMissing
    from .ops.models import ModelsError

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
    from .ops.models import read_registry

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
    from .ops.models import activate

    pin = _run_models(activate, version)
    click.echo(f"activated {pin['model_version']}: every worker switches to it (and comes back on it after a restart)")


@models.command("prune")
@click.option("--keep", type=int, default=3, show_default=True, help="Newest publications kept (the served one always is).")
def models_prune(keep: int) -> None:
    """Remove older versions from the topic (tombstones; compaction then drops them), so start-up reads less."""
    from .ops.models import prune

    doomed = _run_models(prune, keep)
    click.echo(f"pruned {len(doomed)} version(s){': ' + ', '.join(doomed) if doomed else ''}")


@main.group()
def kafka() -> None:
    """Apache Kafka for the dev stack and the tests (plain JVM processes, no Docker)."""


@kafka.command("fetch")
def kafka_fetch() -> None:
    """Fetch Apache Kafka's jars from Maven Central into the cache, once (needs Java 17+ and Maven)."""
    from .devstack.kafka_broker import KAFKA_VERSION, KafkaUnavailable, fetch_kafka, fetched, kafka_home

    if fetched():
        click.echo(f"Apache Kafka {KAFKA_VERSION} is in {kafka_home()}")
        return
    try:
        home = fetch_kafka(say=click.echo)
    except KafkaUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Apache Kafka {KAFKA_VERSION} fetched into {home}")


@main.command()
@click.option("--data", "data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Stream this dataset (e.g. ../shared/data/amazon-grocery/interactions.csv) "
                   "instead of the synthetic demo shop.")
@click.option("--limit", type=int, default=20_000, show_default=True, help="Dataset rows to stream.")
@click.option("--rate", type=float, default=None, help="Events per second for the demo stream.")
@click.option("--port", type=int, default=6066, show_default=True, help="Web port of the worker.")
@click.option("--partitions", type=int, default=4, show_default=True, help="Partitions of the per-user topics.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path(".dev"),
              show_default=True, help="Where the dev stack keeps logs and data (wiped at start).")
@click.option("--broker", type=click.Choice(["auto", "kafka", "tansu"]), default="auto", show_default=True,
              help="Apache Kafka (needs Java 17+; its jars are fetched once with Maven) or the Tansu dev broker "
                   "(pip only); auto: Kafka where Java 17+ is present, else Tansu.")
def dev(data: Optional[Path], limit: int, rate: Optional[float], port: int, partitions: int, workdir: Path,
        broker: str) -> None:
    """Run the embedded stack: a broker, PostgreSQL, topics, a worker and demo data.

    Prints where to look; Ctrl-C stops everything it started.
    """
    from .devstack.stack import run_dev

    run_dev(data=data, limit=limit, rate=rate, port=port, partitions=partitions, workdir=workdir, broker=broker)


@main.command()
@click.option("--url", default=None, help="The worker's base URL (default: http://127.0.0.1:$WEB_PORT).")
@click.option("--live", is_flag=True, help="Only ask whether the process answers (GET /api/health/live).")
@click.option("--timeout", type=float, default=3.0, show_default=True, help="Seconds to wait for the answer.")
def health(url: Optional[str], live: bool, timeout: float) -> None:
    """Ask a worker whether it is ready (exit 0) or not (exit 1, with the reasons).

    What the Docker image's HEALTHCHECK runs; handy on a host too.
    """
    import os
    import urllib.error
    import urllib.request

    base = url or f"http://127.0.0.1:{os.environ.get('WEB_PORT') or os.environ.get('RECSYS_WEB_PORT') or 6066}"
    path = "/api/health/live" if live else "/api/health/ready"
    try:
        with urllib.request.urlopen(base.rstrip("/") + path, timeout=timeout) as resp:
            body = json.loads(resp.read())
    except urllib.error.HTTPError as err:
        body = json.loads(err.read() or b"{}")
        click.echo(f"not ready: {'; '.join(body.get('reasons') or [str(err.code)])}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as exc:
        click.echo(f"no answer from {base}{path}: {exc}", err=True)
        sys.exit(1)
    click.echo("live" if live else f"ready ({body.get('worker', '?')})")


@main.command()
@click.option("--quick", is_flag=True, help="Smaller sizes (about one minute; with --scale, about four: 10k and "
              "100k items trained, 1M items on planted factors, table state at 100k users).")
@click.option("--scale", is_flag=True, help="The growth benchmark instead: ranking cost, HNSW recall, a worker's "
              "events/s and memory at 10k, 100k and 1M items, and table state at up to 1M users (benchmarks/scale.py), "
              "with a plot (about ten minutes).")
@click.option("--data", "data", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Dataset CSV (default: ../shared/data/amazon-grocery/interactions.csv when present).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path(".bench"),
              show_default=True, help="Scratch directory for the bench's broker, database and workers.")
@click.option("--broker", type=click.Choice(["kafka", "tansu"]), default="kafka", show_default=True,
              help="The broker every row and its baseline run on.")
def bench(quick: bool, scale: bool, data: Optional[Path], workdir: Path, broker: str) -> None:
    """Benchmarks, each printed with a baseline measured in the same run and the ratio."""
    started = time.monotonic()
    if scale:
        run_scale = _benchmarks("scale").run_scale
        run_scale(quick, workdir)
        click.echo(f"\n(bench --scale {'--quick ' if quick else ''}took {time.monotonic() - started:.0f}s)")
        return
    run_suite = _benchmarks("suite").run_suite
    report = run_suite(quick=quick, data=data, workdir=workdir, broker=broker)
    click.echo("")
    click.echo(report.table())
    click.echo(f"\n(bench {'--quick ' if quick else ''}took {time.monotonic() - started:.0f}s)")


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def backup(directory: Path) -> None:
    """Back up the stack into an empty DIRECTORY: every topic of topics.yaml (records in their
    partition and offset order), every database table as CSV when DATABASE_URL is
    set, the model artifacts, and a manifest with counts and checksums.

    Faust's tables are not in it: workers rebuild them from the topics (docs/operations.md).
    """
    from .ops.backup import BackupError, backup as run_backup

    try:
        run_backup(_settings(), directory, echo=click.echo)
    except BackupError as exc:
        raise click.ClickException(str(exc))


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def restore(directory: Path) -> None:
    """Bring an empty stack back from a backup DIRECTORY: checksums checked first, topics
    created and their records produced again in order, the database restored, the models
    copied into RECSYS_MODELS_DIR. Refuses a broker whose topics already hold records.

    Then start the workers on empty data dirs: they rebuild every table from the topics.
    """
    from .ops.backup import BackupError, restore as run_restore

    try:
        run_restore(_settings(), directory, echo=click.echo)
    except BackupError as exc:
        raise click.ClickException(str(exc))


@main.command()
@click.option("--minutes", type=float, default=10.0, show_default=True, help="How long the load runs.")
@click.option("--rate", type=float, default=200.0, show_default=True, help="Events per second produced.")
@click.option("--users", type=int, default=2_000, show_default=True, help="Users of the synthetic shop.")
@click.option("--requests-per-s", "http_per_s", type=float, default=20.0, show_default=True,
              help="Recommendation requests per second (one client thread).")
@click.option("--sample-s", type=float, default=5.0, show_default=True, help="Seconds between samples.")
@click.option("--warm-per-user", type=int, default=50, show_default=True,
              help="Events per user applied before the clock starts (full profiles); 0: start empty.")
@click.option("--broker", type=click.Choice(["kafka", "tansu"]), default="kafka", show_default=True,
              help="The broker the soak runs on.")
@click.option("--durable-broker", is_flag=True,
              help="Tansu only: the dev broker keeps its log on a local S3 server (moto) rather than in memory.")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), default=Path(".soak"),
              show_default=True, help="Work dir: the stack, soak.png and soak.json.")
def soak(minutes: float, rate: float, users: int, http_per_s: float, sample_s: float, warm_per_user: int,
         broker: str, durable_broker: bool, out: Path) -> None:
    """Run a dev stack under a steady event rate and HTTP load; print RSS, lag and serving p99
    over time, write OUT/soak.png and OUT/soak.json. Exit 1 on any error, a dead worker, dead
    letters, or events not all applied after the load stops."""
    import shutil

    soak_module = _benchmarks("soak")
    plot, run_soak, summary = soak_module.plot, soak_module.run_soak, soak_module.summary

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    result = run_soak(out / "stack", minutes=minutes, rate=rate, users=users, sample_s=sample_s,
                      http_per_s=http_per_s, warm_per_user=warm_per_user, durable_broker=durable_broker, broker=broker,
                      echo=click.echo)
    plot(result, out / "soak.png")
    figures = summary(result)
    (out / "soak.json").write_text(__import__("json").dumps({**figures, "samples": [
        s.__dict__ for s in result.samples]}, indent=1))
    click.echo(__import__("json").dumps(figures))
    click.echo(f"plot: {out / 'soak.png'}")
    if not result.ok:
        raise click.ClickException("; ".join(result.problems))


def _benchmarks(name: str) -> Any:
    """``benchmarks/<name>.py`` of the source tree: the benchmarks and the soak ship with the
    repository, not in the wheel (a clone with ``pip install -e '.[test]'`` has them)."""
    import importlib

    root = Path(__file__).resolve().parent.parent
    if (root / "benchmarks" / f"{name}.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module(f"benchmarks.{name}")
    except ModuleNotFoundError as exc:
        if exc.name not in ("benchmarks", f"benchmarks.{name}"):
            raise
        raise click.ClickException(
            "the benchmarks and the soak live in the source repository, not in the installed package: "
            "run this command from a clone (git clone ...; pip install -e '.[test]')") from None


if __name__ == "__main__":  # pragma: no cover
    main()
