"""``kafka``, ``dev``, ``health``, ``backup`` and ``restore``: running and keeping a stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import click

from .base import _settings, main


@main.group()
def kafka() -> None:
    """Apache Kafka for the dev stack and the tests (plain JVM processes, no Docker)."""


@kafka.command("fetch")
def kafka_fetch() -> None:
    """Fetch Apache Kafka's jars from Maven Central into the cache, once (needs Java 17+ and Maven)."""
    from ..devstack.kafka_broker import KAFKA_VERSION, KafkaUnavailable, fetch_kafka, fetched, kafka_home

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
    from ..devstack.stack import run_dev

    run_dev(data=data, limit=limit, rate=rate, port=port, partitions=partitions, workdir=workdir, broker=broker)


@main.command()
@click.option("--factor", type=click.IntRange(1, 600), default=20, show_default=True,
              help="Divide the alert rules' windows and Prometheus's intervals by this (1: as shipped).")
@click.option("--workers", type=click.IntRange(1, 20), default=None,
              help="Worker processes (default: the compose file's replicas).")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=Path(".rehearsal"),
              show_default=True, help="Where the rehearsal keeps logs, data and the configs it derived (wiped at start).")
def rehearse(factor: int, workers: Optional[int], workdir: Path) -> None:
    """Run docker/docker-compose.yml's topology as processes on this host: three Apache Kafka
    brokers, PostgreSQL, init, the workers, the retrainer, HAProxy and Prometheus with the
    shipped alert rules, each from the files compose mounts (needs a clone, haproxy and prometheus).

    Prints where to look; Ctrl-C stops everything it started.
    """
    import signal
    import threading

    from ..devstack.rehearsal import Rehearsal

    done = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: done.set())
    try:
        stack = Rehearsal(workdir, factor=factor, workers=workers, say=click.echo)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        stack.start()
    except (RuntimeError, TimeoutError) as exc:
        _stop_quietly(stack)
        raise click.ClickException(f"the rehearsal did not start: {exc} (logs in {stack.workdir})") from None
    click.echo(f"""
  load balancer   {stack.lb_url}   (Authorization: Bearer {stack.read_token})
  HAProxy stats   http://127.0.0.1:{stack.stats_port}/stats
  Prometheus      {stack.prometheus_url}/alerts   (rules' times divided by {factor})
  workers         {", ".join(w.url for w in stack.workers)}
  brokers         {stack.kafka.bootstrap if stack.kafka else ""}
  logs, configs   {stack.workdir}
Ctrl-C stops everything.""")
    while not done.wait(1.0):
        pass
    _stop_quietly(stack)


def _stop_quietly(stack: Any) -> None:
    """Stop every process of the rehearsal; a second Ctrl-C meanwhile must not leave any behind."""
    import signal

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    click.echo("stopping the rehearsal ...")
    stack.stop()


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
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def backup(directory: Path) -> None:
    """Back up the stack into an empty DIRECTORY: every topic of topics.yaml (records in their
    partition and offset order), every database table as CSV when DATABASE_URL is
    set, the model artifacts, and a manifest with counts and checksums.

    Faust's tables are not in it: workers rebuild them from the topics (docs/operations.md).
    """
    from ..ops.backup import BackupError, backup as run_backup

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
    from ..ops.backup import BackupError, restore as run_restore

    try:
        run_restore(_settings(), directory, echo=click.echo)
    except BackupError as exc:
        raise click.ClickException(str(exc))
