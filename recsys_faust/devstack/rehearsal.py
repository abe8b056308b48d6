"""The production topology of ``docker/docker-compose.yml`` run as processes on one host: three
Apache Kafka brokers, PostgreSQL, the one-shot ``init``, the workers (as the worker role), the
retrainer (as the reader role), HAProxy and Prometheus, each from the files compose mounts.

Why processes: the machines this project is tested on have no Docker engine, and an operator's
first question about a deployment (does the load balancer drop a frozen worker, does an alert
ever fire) needs the real programs, not a config checker. ``recsys-faust rehearse`` starts it
for a person; ``tests/rehearsal`` drives every alert rule with it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Callable, Optional

from ..ops.secrets import fresh_secrets
from . import rehearsal_plan as plan
from .kafka_broker import KafkaCluster
from .ports import free_port
from .postgres import DevPostgres
from .workers import WorkerProcess

#: The rehearsal's own .env lines beside the fresh secrets: the drift monitor judges windows of
#: seconds, not minutes, so that a shifted stream raises its alert while one watches.
REHEARSAL_DOTENV = {"RECSYS_DRIFT_WINDOW_S": "2", "RECSYS_DRIFT_MIN_EVENTS": "60"}


#: Prometheus's alert states, least to most (an alert with several label sets reports its highest).
ALERT_STATES = "inactive pending firing".split()


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed (Debian: apt-get install "
                           f"{'prometheus' if name == 'prometheus' else name}): the rehearsal runs the real one")
    return path


class Rehearsal:
    """Start with ``start()``, stop with ``stop()``; ``factor`` divides the alert rules' times and
    Prometheus's intervals (``rehearsal_plan.scale_rules``)."""

    def __init__(self, workdir: Path, *, factor: int = 20, workers: Optional[int] = None,
                 say: Callable[[str], None] = print) -> None:
        self.workdir = workdir.resolve()
        self.factor = factor
        self.say = say
        if not (plan.DOCKER_DIR / "docker-compose.yml").exists():
            raise RuntimeError(f"the rehearsal runs docker/'s files from a clone of the repository; "
                               f"{plan.DOCKER_DIR} has none (an installed wheel does not carry them)")
        self.compose = plan.load_compose()
        self.n_workers = workers   # None: the compose file's replicas
        self.secrets = fresh_secrets()
        self.dotenv = {**self.secrets, **REHEARSAL_DOTENV}
        self.kafka: Optional[KafkaCluster] = None
        self.postgres: Optional[DevPostgres] = None
        self.workers: list[WorkerProcess] = []
        self.retrainer: Optional[subprocess.Popen] = None
        self.haproxy: Optional[subprocess.Popen] = None
        self.prometheus: Optional[subprocess.Popen] = None
        self.lb_port = free_port()
        self.stats_port = free_port()
        self.prometheus_port = free_port()
        self._exit = ExitStack()

    # --- the services -------------------------------------------------------------------------

    def _service(self, name: str) -> plan.Service:
        return plan.service(self.compose, name, self.secrets, self.dotenv)

    def _env(self, name: str) -> dict[str, str]:
        assert self.kafka is not None and self.postgres is not None
        env = plan.localise(self._service(name).env, kafka_url=self.kafka.url,
                            replication_factor=self.kafka.replication_factor, postgres_port=self.postgres.port)
        env["RECSYS_MODELS_DIR"] = str(self.workdir / "models")
        return env

    def _path_env(self) -> dict[str, str]:
        """The programs' PATH with this interpreter's scripts first (``recsys-faust``, ``faust``)."""
        return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}

    def start(self) -> "Rehearsal":
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        (self.workdir / "models").mkdir()
        worker_svc = self._service("worker")
        self.n_workers = self.n_workers or worker_svc.replicas
        self.say("rehearsal: three Apache Kafka brokers ...")
        self.kafka = KafkaCluster(self.workdir / "kafka", nodes=3, log_path=self.workdir / "kafka.log").start()
        self._exit.callback(self.kafka.stop)
        self.say("rehearsal: PostgreSQL ...")
        self.postgres = DevPostgres(self.workdir / "pgdata", log_path=self.workdir / "postgres.log").start()
        self._exit.callback(self.postgres.stop)
        self._postgres_service()
        self.say("rehearsal: init (" + " ".join(self._service("init").command or []) + ") ...")
        self._init()
        command = plan.image_command()
        for i in range(self.n_workers):
            name = f"worker-{i + 1}"
            env = self._env("worker")
            worker = WorkerProcess(name, env, self.workdir / name / "data", log_path=self.workdir / f"{name}.log",
                                   loglevel=command[command.index("-l") + 1])
            self.say(f"rehearsal: {name} on {worker.url} ...")
            worker.start()
            self.workers.append(worker)
            self._exit.callback(worker.stop)
        for worker in self.workers:
            worker.wait_ready(180)
        self._retrainer()
        self._haproxy()
        self._prometheus()
        return self

    def _postgres_service(self) -> None:
        """What the postgres image does with POSTGRES_USER/PASSWORD/DB: a superuser owning the
        database (the embedded server trusts loopback, so passwords are given, not checked)."""
        import psycopg
        from psycopg import sql

        env = self._service("postgres").env
        assert self.postgres is not None
        admin = f"postgresql://postgres@127.0.0.1:{self.postgres.port}/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            user = sql.Identifier(env["POSTGRES_USER"])
            conn.execute(sql.SQL("CREATE ROLE {} SUPERUSER LOGIN PASSWORD {}").format(
                user, sql.Literal(env["POSTGRES_PASSWORD"])))
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(env["POSTGRES_DB"]), user))

    def _init(self) -> None:
        svc = self._service("init")
        assert svc.command is not None
        done = subprocess.run(svc.command, env={**self._path_env(), **self._env("init")}, cwd=self.workdir,
                              capture_output=True, text=True, timeout=300)
        (self.workdir / "init.log").write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            raise RuntimeError(f"init failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")

    def _retrainer(self) -> None:
        svc = self._service("retrainer")
        assert svc.command is not None
        command = [str(self.workdir / "retrain.alive") if part == "/tmp/recsys-retrain.alive" else part
                   for part in svc.command]
        log = open(self.workdir / "retrainer.log", "ab")
        self.retrainer = subprocess.Popen(command, env={**self._path_env(), **self._env("retrainer")},
                                          cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True)
        self._exit.callback(_terminate, self.retrainer)

    def _haproxy(self) -> None:
        mounted = self._service("lb").mounts["/usr/local/etc/haproxy/haproxy.cfg"]
        config = self.workdir / "haproxy.cfg"
        config.write_text(plan.haproxy_config(mounted.read_text(), [("127.0.0.1", w.port) for w in self.workers],
                                              port=self.lb_port, stats_port=self.stats_port))
        log = open(self.workdir / "haproxy.log", "ab")
        self.haproxy = subprocess.Popen([_tool("haproxy"), "-db", "-f", str(config)], stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        self._exit.callback(_terminate, self.haproxy)
        _wait(lambda: len(self.pool()) == len(self.workers), 60, "every worker in HAProxy's pool")

    def _prometheus(self) -> None:
        svc = self._service("prometheus")
        rules = self.workdir / "alerts.yml"
        rules.write_text(plan.scale_rules(svc.mounts["/etc/prometheus/alerts.yml"].read_text(), self.factor))
        token = self.workdir / "metrics_token"
        token.touch(mode=0o600)
        token.write_text(svc.env["RECSYS_METRICS_TOKEN"])
        config = self.workdir / "prometheus.yml"
        config.write_text(plan.prometheus_config(
            svc.mounts["/etc/prometheus/prometheus.yml"].read_text(), [f"127.0.0.1:{w.port}" for w in self.workers],
            rules=rules, token_file=token, port=self.prometheus_port, factor=self.factor))
        log = open(self.workdir / "prometheus.log", "ab")
        self.prometheus = subprocess.Popen(
            [_tool("prometheus"), f"--config.file={config}", f"--storage.tsdb.path={self.workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.prometheus_port}"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self._exit.callback(_terminate, self.prometheus)
        _wait(lambda: self.query('up{job="recsys-worker"} == 1') and len(
            self.query('up{job="recsys-worker"} == 1')) == len(self.workers), 60, "Prometheus scraping every worker")

    def stop(self) -> None:
        self._exit.close()

    # --- what an operator (or a test) looks at --------------------------------------------------

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}"

    @property
    def prometheus_url(self) -> str:
        return f"http://127.0.0.1:{self.prometheus_port}"

    @property
    def read_token(self) -> str:
        return self.secrets["RECSYS_READ_TOKENS"].split(",")[0]

    @property
    def ingest_token(self) -> str:
        return self.secrets["RECSYS_INGEST_TOKENS"].split(",")[0]

    def servers(self) -> list[dict[str, str]]:
        """HAProxy's rows for the workers (its stats page, CSV: ``status``, ``hrsp_2xx``, ...)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5) as resp:
            lines = resp.read().decode().splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","))) for line in lines[1:] if line]
        return [r for r in rows if r["pxname"] == "workers" and r["svname"].startswith("worker-")]

    def pool(self) -> list[str]:
        """The workers HAProxy sends traffic to: UP, or UP and failing checks ("UP 1/2") but not
        yet out; DOWN, or DOWN and passing checks ("DOWN 1/2"), are out."""
        return [r["svname"] for r in self.servers() if r["status"].startswith("UP")]

    def _api(self, path: str, params: Optional[dict[str, str]] = None) -> Any:
        url = self.prometheus_url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = json.loads(resp.read())
        if body.get("status") != "success":
            raise RuntimeError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector (raises on a query Prometheus refuses)."""
        return self._api("/api/v1/query", {"query": expr})["result"]

    def alerts(self) -> list[dict]:
        return self._api("/api/v1/alerts")["alerts"]

    def alert_state(self, name: str) -> Optional[str]:
        """``firing``, ``pending`` or None for the alert rule ``name`` (any of its label sets)."""
        states = {a["state"] for a in self.alerts() if a["labels"].get("alertname") == name}
        return max(states, key=ALERT_STATES.index) if states else None


def _terminate(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _wait(check: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            got = check()
            if got:
                return got
        except (OSError, ValueError, RuntimeError) as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"rehearsal: no {what} after {timeout_s:.0f}s (last error: {last})")
