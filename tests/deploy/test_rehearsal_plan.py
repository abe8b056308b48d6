"""The rehearsal (devstack/rehearsal.py) runs docker/'s own files: its services, commands,
environments and configs are derived from them, and differ only where a host without Docker
must (the substitutions named in devstack/rehearsal_plan.py). These checks fail when either side
changes without the other."""

from __future__ import annotations

import difflib
import re

import pytest
import yaml

from recsys_faust.devstack import rehearsal_plan as plan
from recsys_faust.devstack.kafka_broker import KAFKA_VERSION
from recsys_faust.devstack.workers import WorkerProcess

COMPOSE = plan.load_compose()
DOCKER = plan.DOCKER_DIR
SECRETS = {name: f"value-of-{name.lower()}" for name in (
    "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "RECSYS_API_TOKEN", "RECSYS_READ_TOKENS", "RECSYS_INGEST_TOKENS",
    "RECSYS_METRICS_TOKEN", "RECSYS_DB_WORKER_PASSWORD", "RECSYS_DB_READER_PASSWORD", "RECSYS_FORWARD_SECRET",
    "RECSYS_MODEL_SIGNING_KEY", "RECSYS_MODEL_VERIFY_KEY")}


def test_interpolation_follows_compose():
    env = {"SET": "x", "EMPTY": ""}
    assert plan.interpolate("${SET}-${UNSET:-d}-${EMPTY:-e}-${EMPTY-f}-$$HOME-$SET", env) == "x-d-e--$HOME-x"
    with pytest.raises(plan.MissingVariable, match="EMPTY: set it"):
        plan.interpolate("${EMPTY:?set it}", env)
    with pytest.raises(plan.MissingVariable):
        plan.interpolate("${UNSET?}", env)


def test_every_compose_service_is_rehearsed_or_says_why_not():
    assert set(COMPOSE["services"]) == set(plan.SERVICES)
    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"


def test_the_processes_get_the_compose_environment_but_for_the_named_local_settings():
    for name in ("init", "worker", "retrainer"):
        svc = plan.service(COMPOSE, name, SECRETS, {"FROM_DOTENV": "1"})
        local = plan.localise(svc.env, kafka_url="kafka://127.0.0.1:1,kafka://127.0.0.1:2",
                              replication_factor=3, postgres_port=5999)
        changed = {k for k in svc.env if svc.env[k] != local[k]}
        assert changed <= set(plan.LOCAL_SETTINGS), (name, changed)
        assert "KAFKA_BROKER" in changed and local["RECSYS_REPLICATION_FACTOR"] == "3"
        assert "@127.0.0.1:5999/" in local["DATABASE_URL"]
        # The operator's .env reaches the services that read it, under their own environment.
        assert ("FROM_DOTENV" in svc.env) == bool(COMPOSE["services"][name].get("env_file"))
        assert svc.env["RECSYS_PRODUCTION"] == "true" and svc.env["RECSYS_API_TOKEN"] == SECRETS["RECSYS_API_TOKEN"]


def test_the_commands_are_the_compose_files_and_the_images():
    assert plan.service(COMPOSE, "init", SECRETS, {}).command == COMPOSE["services"]["init"]["command"]
    assert plan.service(COMPOSE, "retrainer", SECRETS, {}).command == COMPOSE["services"]["retrainer"]["command"]
    assert plan.service(COMPOSE, "worker", SECRETS, {}).replicas == COMPOSE["services"]["worker"]["deploy"]["replicas"]
    cmd = plan.image_command()
    worker = WorkerProcess("w", {}, DOCKER / "unused", port=1, loglevel=cmd[cmd.index("-l") + 1])
    assert worker.argv[2:] == cmd   # `python -m faust ...` is the image's `faust ...`


def test_haproxy_runs_the_shipped_config_with_only_discovery_and_listeners_replaced():
    shipped = (DOCKER / "haproxy/haproxy.cfg").read_text()
    local = plan.haproxy_config(shipped, [("127.0.0.1", 7001), ("127.0.0.1", 7002)], port=8001, stats_port=8002)
    removed, added = [], []
    for line in difflib.ndiff(shipped.splitlines(), local.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:].strip())
        elif line.startswith("+ "):
            added.append(line[2:].strip())
    resolvers = shipped[shipped.index("resolvers docker"):].split("\n\n")[0].splitlines()
    allowed_removed = {l.strip() for l in resolvers} | {"bind :8080", "bind :8404", ""}
    for line in removed:
        assert line in allowed_removed or line.startswith(("server-template ", "default-server ")), line
    assert sorted(l for l in added if l.startswith("server ")) == [
        "server worker-1 127.0.0.1:7001", "server worker-2 127.0.0.1:7002"]
    for line in added:
        assert line.startswith(("server worker-", "bind 127.0.0.1:", "default-server ")), line
    default = next(l for l in added if l.startswith("default-server "))
    assert "inter 2s fall 2 rise 2 check" in default     # the shipped health-check cadence, kept
    assert "option httpchk GET /api/health/ready" in local and "retry-on" in local


def test_prometheus_runs_the_shipped_config_with_static_targets_and_scaled_intervals():
    shipped = yaml.safe_load((DOCKER / "prometheus/prometheus.yml").read_text())
    local = yaml.safe_load(plan.prometheus_config(
        (DOCKER / "prometheus/prometheus.yml").read_text(), ["127.0.0.1:7001"], rules=DOCKER / "x.yml",
        token_file=DOCKER / "token", port=9999, factor=20))
    assert plan.duration_ms(local["global"]["scrape_interval"]) * 20 == plan.duration_ms(shipped["global"]["scrape_interval"])
    worker_job = next(j for j in local["scrape_configs"] if j["job_name"] == "recsys-worker")
    shipped_job = next(j for j in shipped["scrape_configs"] if j["job_name"] == "recsys-worker")
    assert worker_job["static_configs"] == [{"targets": ["127.0.0.1:7001"]}]
    assert worker_job["relabel_configs"] == shipped_job["relabel_configs"]
    assert worker_job["metrics_path"] == shipped_job["metrics_path"]
    assert set(worker_job) - {"static_configs"} == set(shipped_job) - {"dns_sd_configs"}


def _unscaled(expr: str, factor: int) -> str:
    def back(match: re.Match) -> str:
        return f"{int(match.group(1)) * factor // 1000}s"
    return re.sub(r"(\d+)ms", back, expr)


def _seconds(expr: str) -> str:
    return re.sub(r"\[(\d+)([smh])(?::(\d+)([smh]))?\]", lambda m: "[" + ":".join(
        f"{plan.duration_ms(n + u) // 1000}s" for n, u in ((m.group(1), m.group(2)), (m.group(3), m.group(4))) if n)
        + "]", expr)


def test_the_rules_proven_are_the_shipped_rules_with_time_divided():
    shipped = yaml.safe_load((DOCKER / "prometheus/alerts.yml").read_text())
    scaled = yaml.safe_load(plan.scale_rules((DOCKER / "prometheus/alerts.yml").read_text(), 20))
    pairs = list(zip(shipped["groups"][0]["rules"], scaled["groups"][0]["rules"]))
    assert len(pairs) == len(shipped["groups"][0]["rules"]) == 8
    for before, after in pairs:
        assert set(before) == set(after) and before["alert"] == after["alert"]
        assert before["labels"] == after["labels"] and before["annotations"] == after["annotations"]
        assert _unscaled(after["expr"], 20) == _seconds(before["expr"]), before["alert"]
        if "for" in before:
            assert plan.duration_ms(after["for"]) * 20 == plan.duration_ms(before["for"])
