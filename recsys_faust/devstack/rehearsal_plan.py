"""What the production rehearsal runs, derived from ``docker/`` itself: pure functions of the
compose file, the HAProxy and Prometheus files, and the few facts a host without Docker must
substitute (loopback ports for the compose DNS names, local paths for the volumes).

Why derived, not written again: the rehearsal exists to prove the files an operator deploys. A
second copy of the topology would drift from them, and prove itself. Every substitution is named
here (``LOCAL_SETTINGS``, the HAProxy and Prometheus rewrites), and ``tests/deploy`` checks that
nothing else differs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import yaml

#: Where the compose file and its mounted files live in a clone.
DOCKER_DIR = Path(__file__).resolve().parents[2] / "docker"

#: Settings a one-host rehearsal must give differently from the compose file, and why.
LOCAL_SETTINGS = {
    "KAFKA_BROKER": "the three brokers on loopback ports (compose: the DNS name kafka)",
    "RECSYS_REPLICATION_FACTOR": "3: the rehearsal runs three brokers (compose: one)",
    "DATABASE_URL": "host postgres:5432 becomes the local server's loopback port",
    "RECSYS_DATA_DIR": "each worker's own directory (the image's volume)",
    "RECSYS_MODELS_DIR": "the shared models directory (the image's models volume)",
}

#: Every service of the compose file, and how the rehearsal runs it.
SERVICES = {
    "kafka": "three Apache Kafka brokers (KRaft, devstack/kafka_broker.py), the image's version",
    "postgres": "the embedded PostgreSQL, with the service's superuser and database",
    "init": "its command, with its environment",
    "worker": "the image's CMD, one process per replica, with the service's environment and .env",
    "retrainer": "its command, with its environment and .env",
    "lb": "Debian's HAProxy with the mounted haproxy.cfg (haproxy_config)",
    "prometheus": "Debian's Prometheus with the mounted prometheus.yml and alerts.yml (prometheus_config, scale_rules)",
    "grafana": "not run: every panel query of its mounted dashboard is evaluated by the Prometheus instead",
}

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


class MissingVariable(ValueError):
    """A ``${VAR:?message}`` with VAR unset or empty: compose refuses to start, and so do we."""


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation: ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}`` and ``$$`` for a literal dollar."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        have = env.get(name)
        unset = have is None or (have == "" and op is not None and op.startswith(":"))
        if op in (":?", "?") and unset:
            raise MissingVariable(f"{name}: {arg or 'required'}")
        if op in (":-", "-") and unset:
            return arg
        return have or ""

    return _VAR.sub(one, value)


def read_dotenv(text: str) -> dict[str, str]:
    """``NAME=value`` lines (comments and blank lines skipped), as compose reads ``env_file``."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, value = line.split("=", 1)
        out[name.strip()] = value.strip()
    return out


@dataclass(frozen=True)
class Service:
    """One compose service as a host process would run it."""

    name: str
    env: dict[str, str]
    command: Optional[list[str]]
    replicas: int = 1
    mounts: dict[str, Path] = field(default_factory=dict)   # container path -> file in docker/


def load_compose(path: Path = DOCKER_DIR / "docker-compose.yml") -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def service(compose: Mapping[str, Any], name: str, env: Mapping[str, str], dotenv: Mapping[str, str],
            docker_dir: Path = DOCKER_DIR) -> Service:
    """The service's environment as its container would see it: the ``env_file`` (the operator's
    .env) under the service's own ``environment``, every value interpolated from ``env``."""
    svc = compose["services"][name]
    out: dict[str, str] = {}
    if svc.get("env_file"):
        out.update(dotenv)
    for key, value in (svc.get("environment") or {}).items():
        out[key] = interpolate(str(value), env)
    command = svc.get("command")
    if isinstance(command, str):
        command = ["sh", "-c", command]
    mounts: dict[str, Path] = {}
    for volume in svc.get("volumes") or []:
        parts = str(volume).split(":")
        if len(parts) >= 2 and parts[0].startswith("./"):
            mounts[parts[1]] = (docker_dir / parts[0]).resolve()
    replicas = int((svc.get("deploy") or {}).get("replicas", 1))
    return Service(name, out, [interpolate(str(c), env) for c in command] if command else None, replicas, mounts)


def localise(env: Mapping[str, str], *, kafka_url: str, replication_factor: int, postgres_port: int) -> dict[str, str]:
    """The compose environment with ``LOCAL_SETTINGS`` given their one-host values (the data and
    models dirs are the process launcher's)."""
    out = dict(env)
    if "KAFKA_BROKER" in out:
        out["KAFKA_BROKER"] = kafka_url
    if "RECSYS_REPLICATION_FACTOR" in out:
        out["RECSYS_REPLICATION_FACTOR"] = str(replication_factor)
    if "DATABASE_URL" in out:
        out["DATABASE_URL"] = out["DATABASE_URL"].replace("@postgres:5432/", f"@127.0.0.1:{postgres_port}/")
    return out


def image_command(dockerfile: Path = DOCKER_DIR / "Dockerfile") -> list[str]:
    """The image's CMD (exec form): what a worker container runs."""
    for line in dockerfile.read_text().splitlines():
        if line.startswith("CMD "):
            return json.loads(line[4:])
    raise ValueError(f"{dockerfile}: no CMD")


def haproxy_config(text: str, servers: Sequence[tuple[str, int]], *, port: int, stats_port: int) -> str:
    """HAProxy's shipped config with compose's DNS discovery replaced by the workers' loopback
    addresses, and its listeners on loopback ports; every other line as shipped."""
    out: list[str] = []
    in_resolvers = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("resolvers "):
            in_resolvers = True
            continue
        if in_resolvers:
            if line and not line[0].isspace():
                in_resolvers = False
            else:
                continue
        if stripped.startswith("default-server "):
            line = re.sub(r" resolvers \S+| init-addr \S+| resolve-prefer \S+", "", line)
        elif stripped.startswith("server-template "):
            indent = line[: len(line) - len(line.lstrip())]
            out.extend(f"{indent}server worker-{i + 1} {host}:{p}" for i, (host, p) in enumerate(servers))
            continue
        elif stripped == "bind :8080":
            line = line.replace(":8080", f"127.0.0.1:{port}")
        elif stripped == "bind :8404":
            line = line.replace(":8404", f"127.0.0.1:{stats_port}")
        out.append(line)
    return "\n".join(out) + "\n"


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(text: str) -> int:
    """A Prometheus duration (``1m``, ``90s``, ``1h30m``) in milliseconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def scaled(text: str, factor: int) -> str:
    """``text`` (a duration) divided by ``factor``, in milliseconds."""
    return f"{max(1, duration_ms(text) // factor)}ms"


def scale_rules(text: str, factor: int) -> str:
    """The shipped alert rules with time divided by ``factor``: each ``for`` and each range or
    subquery window of an expression. Expressions, thresholds and labels are untouched, so what
    fires here is what fires in production, ``factor`` times sooner."""
    rules = yaml.safe_load(text)

    def window(match: re.Match) -> str:
        inner = ":".join(scaled(part, factor) if part else part for part in match.group(1).split(":"))
        return f"[{inner}]"

    for group in rules["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = scaled(rule["for"], factor)
            rule["expr"] = re.sub(r"\[([0-9a-z:]+)\]", window, rule["expr"])
    return yaml.safe_dump(rules, sort_keys=False)


def prometheus_config(text: str, targets: Sequence[str], *, rules: Path, token_file: Path, port: int,
                      factor: int) -> str:
    """Prometheus's shipped config with the workers' DNS discovery replaced by static loopback
    targets, the rules and token files at local paths, and the intervals divided by ``factor``
    (as the rules are)."""
    config = yaml.safe_load(text)
    glob = config.setdefault("global", {})
    for key in ("scrape_interval", "evaluation_interval"):
        glob[key] = scaled(glob[key], factor)
    glob["scrape_timeout"] = glob["scrape_interval"]
    config["rule_files"] = [str(rules)]
    for job in config["scrape_configs"]:
        if job.pop("dns_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": list(targets)}]
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(token_file)
        if job["job_name"] == "prometheus":
            job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"]}]
    return yaml.safe_dump(config, sort_keys=False)
