"""Apache Kafka on loopback, without Docker: one combined broker/controller or three, in KRaft mode.

The jars come from Maven Central through the committed ``kafka/pom.xml`` (``fetch_kafka``, run
by the test command and by ``recsys-faust dev`` on first use) into a cache directory, then each
node is a plain ``java kafka.Kafka server.properties`` process. Node ``n`` of a cluster listens
for clients on ``ports[n]`` and for the controller quorum on ``controller_ports[n]``; every node
is a voter, so a three-node cluster keeps its quorum with one node down (and, with
``min.insync.replicas=2``, refuses ``acks=all`` writes with two down).

Group timeouts: the broker accepts session timeouts from 1 s (``group.min.session.timeout.ms``),
so the tests may run their workers with fast failure detection; production brokers keep Kafka's
6 s minimum and the workers' defaults fit it (docs/configuration.md).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from .ports import free_ports, wait_for_port

#: Keep equal to kafka/pom.xml and docker/docker-compose.yml's image (a unit test checks).
KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("kafka") / "pom.xml"
MIN_JAVA = 17
#: A node's heap: three nodes, workers and PostgreSQL share a 2-core, few-GB test machine.
NODE_HEAP = "-Xmx640m"

LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.kafka.name = kafka.Kafka
logger.kafka.level = info
logger.server.name = kafka.server.BrokerServer
logger.server.level = info
"""


class KafkaUnavailable(RuntimeError):
    """Java 17+ or Maven is missing, or the jars could not be fetched: the message says which."""


def kafka_home() -> Path:
    """Where the jars live: ``$RECSYS_KAFKA_HOME`` or ``~/.cache/recsys-faust/kafka-VERSION``."""
    env = os.environ.get("RECSYS_KAFKA_HOME")
    if env:
        return Path(env)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "recsys-faust" / f"kafka-{KAFKA_VERSION}"


def java_version(java: str = "java") -> Optional[int]:
    """The major version of ``java`` on the PATH, or None when there is none."""
    exe = shutil.which(java)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not found:
        return None
    major = int(found.group(1))
    return int(found.group(2) or 0) if major == 1 else major


def java_ok() -> bool:
    return (java_version() or 0) >= MIN_JAVA


def fetched(home: Optional[Path] = None) -> bool:
    libs = (home or kafka_home()) / "libs"
    return libs.is_dir() and any(libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar"))


def fetch_kafka(home: Optional[Path] = None, *, say: Callable[[str], None] = print) -> Path:
    """The jars in ``home/libs``, fetched with Maven once; returns ``home``."""
    home = home or kafka_home()
    if fetched(home):
        return home
    if not java_ok():
        raise KafkaUnavailable(f"Apache Kafka {KAFKA_VERSION} needs Java {MIN_JAVA}+ on the PATH "
                               f"(found: {java_version() or 'none'}); use --broker tansu without it")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise KafkaUnavailable("fetching Apache Kafka's jars needs Maven (mvn) on the PATH, once; "
                               "or set RECSYS_KAFKA_HOME to a folder whose libs/ holds them")
    home.mkdir(parents=True, exist_ok=True)
    staging = home / "libs.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copy(POM, home / "pom.xml")
    say(f"fetching Apache Kafka {KAFKA_VERSION}'s jars from Maven Central into {home} (once) ...")
    run = subprocess.run([mvn, "-q", "-B", "-f", str(home / "pom.xml"), "dependency:copy-dependencies",
                          f"-DoutputDirectory={staging}", "-DincludeScope=runtime"],
                         capture_output=True, text=True, timeout=900)
    if run.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(f"mvn could not fetch Apache Kafka {KAFKA_VERSION}:\n{(run.stdout + run.stderr)[-2000:]}")
    shutil.rmtree(home / "libs", ignore_errors=True)
    staging.rename(home / "libs")  # complete or absent: an interrupted fetch is started again
    return home


class KafkaNode:
    """One KRaft node (broker and controller) of a ``KafkaCluster``."""

    def __init__(self, node_id: int, port: int, controller_port: int, dir_: Path) -> None:
        self.node_id = node_id
        self.port = port
        self.controller_port = controller_port
        self.dir = dir_
        self.proc: Optional[subprocess.Popen] = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(frozen=True)
class KafkaSecurity:
    """Kafka's own TLS, SASL/SCRAM and ACLs on the client listener.

    ``keystore``: a PEM file holding the broker's private key (PKCS#8) and certificate chain;
    ``truststore``: the CA's PEM. ``users``: SCRAM-SHA-512 name -> password, created when the
    storage is formatted; ``admin`` is the super user the brokers talk to each other as.
    """

    keystore: Path
    truststore: Path
    users: dict[str, str]
    admin: str = "admin"

    def config(self) -> dict[str, str]:
        password = self.users[self.admin]
        return {
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required "
                f'username="{self.admin}" password="{password}";',
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.truststore),
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            # ANONYMOUS: the controller listener on loopback (the brokers' own metadata traffic).
            "super.users": f"User:{self.admin};User:ANONYMOUS",
            "allow.everyone.if.no.acl.found": "false",
        }


class KafkaCluster:
    """``nodes`` Apache Kafka nodes on loopback, formatted and started together.

    The same interface as the Tansu ``DevBroker`` (``url``, ``bootstrap``, ``start``, ``stop``,
    ``kill``), plus per-node ``kill_node``/``start_node`` for broker failover tests.
    """

    kind = "kafka"

    def __init__(self, workdir: Path, *, nodes: int = 1, log_path: Optional[Path] = None,
                 extra_config: Optional[dict[str, str]] = None, home: Optional[Path] = None,
                 security: Optional[KafkaSecurity] = None) -> None:
        if nodes < 1:
            raise ValueError("a cluster needs at least one node")
        self.workdir = Path(workdir)
        self.home = home
        self.log_path = log_path or self.workdir / "kafka.log"
        self.extra_config = dict(extra_config or {})
        self.security = security
        ports = free_ports(2 * nodes)   # distinct: a client and a controller port per node
        self.nodes = [KafkaNode(i + 1, ports[2 * i], ports[2 * i + 1], self.workdir / f"node-{i + 1}")
                      for i in range(nodes)]
        self.cluster_id: Optional[str] = None

    @property
    def bootstrap(self) -> str:
        return ",".join(n.bootstrap for n in self.nodes)

    @property
    def url(self) -> str:
        return ",".join(f"kafka://{n.bootstrap}" for n in self.nodes)

    @property
    def pid(self) -> Optional[int]:
        """The first node's JVM (what a one-node stack's memory and CPU are read from)."""
        proc = self.nodes[0].proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def protocol(self) -> str:
        return "SASL_SSL" if self.security is not None else "PLAINTEXT"

    def client_env(self, user: Optional[str] = None) -> dict[str, str]:
        """The settings (environment) a client of this cluster needs, as ``user`` if secured."""
        if self.security is None:
            return {}
        name = user or self.security.admin
        return {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                "KAFKA_SASL_USERNAME": name, "KAFKA_SASL_PASSWORD": self.security.users[name],
                "KAFKA_SSL_CAFILE": str(self.security.truststore)}

    def client_kwargs(self, user: Optional[str] = None) -> dict[str, object]:
        """aiokafka keyword arguments for a client of this cluster, as ``user`` if secured."""
        if self.security is None:
            return {}
        import ssl

        name = user or self.security.admin
        return {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512", "sasl_plain_username": name,
                "sasl_plain_password": self.security.users[name],
                "ssl_context": ssl.create_default_context(cafile=str(self.security.truststore))}

    @property
    def replication_factor(self) -> int:
        return min(3, len(self.nodes))

    def config(self, node: KafkaNode) -> dict[str, str]:
        n = len(self.nodes)
        voters = ",".join(f"{m.node_id}@127.0.0.1:{m.controller_port}" for m in self.nodes)
        conf = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": f"{self.protocol}://127.0.0.1:{node.port},CONTROLLER://127.0.0.1:{node.controller_port}",
            "advertised.listeners": f"{self.protocol}://127.0.0.1:{node.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": self.protocol,
            "listener.security.protocol.map": f"{self.protocol}:{self.protocol},CONTROLLER:PLAINTEXT",
            "log.dirs": str(node.dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(self.replication_factor),
            "min.insync.replicas": "2" if n >= 3 else "1",
            "offsets.topic.replication.factor": str(self.replication_factor),
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": str(self.replication_factor),
            "transaction.state.log.min.isr": "2" if n >= 3 else "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(self.replication_factor),
            "share.coordinator.state.topic.min.isr": "2" if n >= 3 else "1",
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "auto.create.topics.enable": "false",
            "log.retention.check.interval.ms": "5000",
            "log.cleaner.backoff.ms": "1000",
            "unclean.leader.election.enable": "false",
            # A dead follower leaves the in-sync replicas after 5 s (Kafka: 30 s), so acks=all
            # writes wait that long at most in the broker failover tests.
            "replica.lag.time.max.ms": "5000",
        }
        if self.security is not None:
            conf.update(self.security.config())
        conf.update(self.extra_config)
        return conf

    def _java(self, main: str, *args: str) -> list[str]:
        home = fetch_kafka(self.home)
        return ["java", NODE_HEAP, "-Xms128m", "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
                "-cp", str(home / "libs" / "*"), main, *args]

    def start(self) -> "KafkaCluster":
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "log4j2.properties").write_text(LOG4J2)
        self.cluster_id = self.cluster_id or _cluster_id()
        for node in self.nodes:
            self._format(node)
        for node in self.nodes:
            self._spawn(node)
        self.wait_ready()
        return self

    def _format(self, node: KafkaNode) -> None:
        node.dir.mkdir(parents=True, exist_ok=True)
        props = node.dir / "server.properties"
        props.write_text("".join(f"{k}={v}\n" for k, v in self.config(node).items()))
        if (node.dir / "data" / "meta.properties").exists():
            return  # formatted before: a restart keeps its log
        scram = [f"--add-scram=SCRAM-SHA-512=[name={name},password={password}]"
                 for name, password in (self.security.users.items() if self.security is not None else ())]
        out = subprocess.run(self._java("kafka.tools.StorageTool", "format", f"--cluster-id={self.cluster_id}",
                                        f"--config={props}", "--ignore-formatted", *scram),
                             capture_output=True, text=True, timeout=120)
        if out.returncode != 0:
            raise RuntimeError(f"formatting Kafka node {node.node_id} failed:\n{out.stdout}{out.stderr}")

    def _spawn(self, node: KafkaNode) -> None:
        log = open(self.log_path, "ab")
        node.proc = subprocess.Popen(self._java("kafka.Kafka", str(node.dir / "server.properties")),
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def wait_ready(self, timeout_s: float = 90.0, nodes: Optional[Sequence[KafkaNode]] = None) -> None:
        """Until every live node answers Metadata listing every live node as a broker."""
        live = [n for n in (nodes or self.nodes) if n.alive()]
        deadline = time.monotonic() + timeout_s
        for node in live:
            wait_for_port(node.port, timeout_s=max(1.0, deadline - time.monotonic()))
        want = {n.node_id for n in self.nodes if n.alive()}
        last: object = None
        while time.monotonic() < deadline:
            for node in live:
                if not node.alive():
                    raise RuntimeError(f"Kafka node {node.node_id} exited; log: {self.log_path}\n{self.tail()}")
            try:
                seen = _brokers(live[0].bootstrap, self.client_kwargs())
                if want <= seen:
                    return
                last = seen
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"Kafka not ready after {timeout_s:.0f}s (last: {last!r}); log: {self.log_path}\n{self.tail()}")

    def kill_node(self, node: KafkaNode) -> None:
        """SIGKILL one node: a crash, nothing flushed."""
        if node.alive():
            assert node.proc is not None
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
        node.proc = None

    def start_node(self, node: KafkaNode, *, wait: bool = True) -> None:
        self._spawn(node)
        if wait:
            self.wait_ready()

    def kill(self) -> None:
        for node in self.nodes:
            self.kill_node(node)

    def stop(self) -> None:
        for node in self.nodes:
            if node.alive():
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.kill_node(node)
            node.proc = None

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> "KafkaCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Uuid.randomUuid)."""
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _brokers(bootstrap: str, client_kwargs: Optional[dict] = None) -> set[int]:
    """The broker ids a Metadata request lists (a blocking probe)."""
    import asyncio

    from aiokafka.admin import AIOKafkaAdminClient

    async def probe() -> set[int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000, **(client_kwargs or {}))
        await admin.start()
        try:
            described = await admin.describe_cluster()
            return {b["node_id"] for b in described["brokers"]}
        finally:
            await admin.close()

    return asyncio.run(asyncio.wait_for(probe(), 5))
