"""docker/: the production compose file, its load balancer and monitoring configs, and
.env.example, checked where no Docker engine runs: every variable given to a recsys service is a
setting the code reads, every service is health-checked or a one-shot the workers wait for,
images are pinned, HAProxy's and Prometheus's own checkers accept their files, and .env.example
lists every setting with its true default."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from recsys_faust.settings import all_env_names, default, env_names
from recsys_faust.settings.sections import FIELD_SECTION

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
RECSYS_SERVICES = [name for name, svc in SERVICES.items() if str(svc.get("image", "")).startswith("recsys-faust")]
#: Variables of .env.example that only the compose file reads (interpolation), not the code.
COMPOSE_ONLY = {"POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "IMAGE_TAG", "LB_HTTP_PORT", "PROMETHEUS_PORT",
                "GRAFANA_PORT"}


def _tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists() else None)
    if path is None:
        pytest.skip(f"!!! {name} is not installed (Debian: apt-get install {'prometheus' if name == 'promtool' else name}); "
                    "scripts/test.sh installs it where it runs as root")
    return path


def test_the_recsys_services_are_the_init_job_the_workers_and_the_retrainer():
    assert sorted(RECSYS_SERVICES) == ["init", "retrainer", "worker"]


def test_the_retrainer_watches_writes_the_shared_models_and_is_checked_by_its_heartbeat():
    svc = SERVICES["retrainer"]
    command = svc["command"]
    assert command[:3] == ["recsys-faust", "retrain", "--watch"]
    beat = command[command.index("--heartbeat") + 1]
    check = " ".join(svc["healthcheck"]["test"])
    assert beat in check and "-lt 60" in check   # a few of the 10 s beats may be missed, not six
    assert svc["volumes"] == ["models:/var/lib/recsys/models"]
    assert svc["environment"]["DATABASE_URL"].startswith("postgresql://recsys_reader:")   # SELECT only
    assert svc["depends_on"]["init"]["condition"] == "service_completed_successfully"
    assert "deploy" not in svc  # one watcher: two would retrain twice on the same alert


@pytest.mark.parametrize("service", ["init", "worker", "retrainer"])
def test_every_variable_given_to_a_recsys_service_is_a_setting_the_code_reads(service):
    known = all_env_names()
    given = set(SERVICES[service]["environment"])
    assert given, service
    unknown = sorted(given - set(known))
    assert unknown == [], f"{service} is given variables no setting reads: {unknown}"


def test_every_service_is_health_checked_or_a_one_shot_the_workers_wait_for():
    for name, svc in SERVICES.items():
        check = svc.get("healthcheck") or {}
        if check.get("disable"):
            assert svc.get("restart") == "no", f"{name}: without a healthcheck it must be a one-shot"
            waiting = [other for other, s in SERVICES.items()
                       if (s.get("depends_on") or {}).get(name, {}).get("condition") == "service_completed_successfully"]
            assert waiting, f"one-shot {name}: nothing waits for it to complete"
        else:
            assert check.get("test"), f"{name} has no healthcheck"
            assert svc.get("restart") == "unless-stopped", f"{name}: a long-running service needs a restart policy"


def test_workers_wait_for_init_and_healthy_dependencies_and_scale():
    worker = SERVICES["worker"]
    deps = worker["depends_on"]
    assert deps["init"]["condition"] == "service_completed_successfully"
    assert deps["kafka"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
    assert SERVICES["init"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    # --scale needs: no fixed host port, no container_name, no fixed WEB_HOST, a volume per replica.
    assert "ports" not in worker and "container_name" not in worker
    assert "WEB_HOST" not in worker["environment"]
    # the data dir is an anonymous volume per replica; the one shared volume is the models dir,
    # read-only (large models are announced by reference to it and mapped from it)
    assert "/var/lib/recsys" in worker["volumes"]
    shared = [v for v in worker["volumes"] if ":" in v]
    assert shared == ["models:/var/lib/recsys/models:ro"], "a named data volume would be shared by every replica"
    assert "models:/var/lib/recsys/models" in SERVICES["init"]["volumes"]
    assert worker["healthcheck"]["test"] == ["CMD", "recsys-faust", "health"]  # readiness, not liveness
    assert "KAFKA_AUTO_CREATE_TOPICS_ENABLE" in SERVICES["kafka"]["environment"]
    assert SERVICES["kafka"]["environment"]["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert int(SERVICES["worker"]["environment"]["RECSYS_RATE_LIMIT_RPS"].split(":-")[1].rstrip("}")) > 0
    # Workers hold rows-only credentials; the owner migrates once, in init.
    assert worker["environment"]["DATABASE_URL"].startswith("postgresql://recsys_worker:")
    assert worker["environment"]["RECSYS_DB_MIGRATE"] == "false"
    assert "--worker-role recsys_worker" in " ".join(SERVICES["init"]["command"])


def test_images_are_pinned_to_a_version():
    for name, svc in SERVICES.items():
        image = svc["image"]
        repo, _, tag = image.rpartition(":") if ":" in image else (image, "", "")
        assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), f"{name}: {image} is not pinned"
    dockerfile = (DOCKER / "Dockerfile").read_text()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert re.search(r":\d+\.\d+\.\d+", base), f"Dockerfile base {base} is not pinned"
    assert "-c constraints.txt" in dockerfile


def test_the_load_balancer_checks_readiness_of_the_worker_service_and_haproxy_accepts_it(tmp_path):
    cfg = (DOCKER / "haproxy" / "haproxy.cfg").read_text()
    assert re.search(r"server-template \w+ \d+ worker:6066", cfg)
    assert "option httpchk GET /api/health/ready" in cfg
    assert "del-header X-Recsys-Forwarded-By" in cfg   # clients cannot pose as a forwarding worker
    mounted = SERVICES["lb"]["volumes"][0].split(":")[0]
    assert (DOCKER / mounted).resolve() == (DOCKER / "haproxy" / "haproxy.cfg").resolve()
    out = subprocess.run([_tool("haproxy"), "-c", "-f", str(DOCKER / "haproxy" / "haproxy.cfg")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_accepts_the_prometheus_config_and_rules(tmp_path):
    """The config as shipped, with the metrics token file the compose entrypoint writes (promtool
    checks that it exists) placed in a scratch directory."""
    promtool = _tool("promtool")
    token_file = "/tmp/metrics_token"
    config = (DOCKER / "prometheus" / "prometheus.yml").read_text()
    assert f"credentials_file: {token_file}" in config
    (tmp_path / "metrics_token").write_text("t" * 43)
    (tmp_path / "prometheus.yml").write_text(config.replace(token_file, str(tmp_path / "metrics_token")))
    shutil.copy(DOCKER / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"]):
        out = subprocess.run([promtool, *args], capture_output=True, text=True, cwd=tmp_path)
        assert out.returncode == 0, out.stdout + out.stderr
    prom = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "recsys-worker"]
    assert job["dns_sd_configs"][0]["names"] == ["worker"] and job["dns_sd_configs"][0]["port"] == 6066


def test_grafana_is_provisioned_with_the_datasource_its_dashboard_uses():
    ds = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    dash = json.loads((DOCKER / "grafana/dashboards/recsys-faust.json").read_text())
    uids = {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert uids == {ds["uid"]} and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((DOCKER / "grafana/provisioning/dashboards/recsys.yml").read_text())["providers"][0]
    mounts = dict(v.split(":")[:2] for v in SERVICES["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]


def _env_example() -> dict[str, str]:
    """Variable -> the default a commented line states (None: set for the deployment, or "set above")."""
    out = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^(# )?([A-Z][A-Z0-9_]+)(=(.*)|: set above)$", line)
        if m:
            stated = m.group(4) if m.group(1) and m.group(3).startswith("=") else None
            out[m.group(2)] = stated if m.group(2) not in out else out[m.group(2)]
    return out


def test_env_example_lists_every_setting_with_its_default_and_nothing_else():
    listed = _env_example()
    known = all_env_names()
    assert sorted(set(listed) - set(known) - COMPOSE_ONLY) == []
    missing = [env_names(f)[0] for f in FIELD_SECTION if f != "weights" and env_names(f)[0] not in listed]
    assert missing == []
    assert {"RECSYS_WEIGHT_VIEW", "RECSYS_WEIGHT_PURCHASE", "RECSYS_WEIGHT_REVIEW_PER_STAR"} <= set(listed)
    for name, value in listed.items():
        if name in COMPOSE_ONLY or value is None or name not in known or known[name] == "weights":
            continue
        field = known[name]
        if field in ("web_host", "worker_name"):
            continue  # computed per process
        want = default(field)
        want = "" if want is None else str(want)
        assert value == want, f"{name}: .env.example says {value!r}, the code's default is {want!r}"


def test_compose_interpolates_only_variables_env_example_names():
    text = (DOCKER / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    assert used and used <= set(_env_example()), sorted(used - set(_env_example()))
