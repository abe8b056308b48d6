"""Every metric a Grafana panel or an alert rule names is exported by a live worker after a
short stream (good events, one bad record, an HTTP request or two), so no panel is blank and
no alert watches a name that does not exist."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from tests.integration.helpers import get, http, produce, produce_events, wait_until

pytestmark = pytest.mark.integration

DOCKER = Path(__file__).resolve().parents[2] / "docker"


def named_metrics() -> dict[str, set[str]]:
    """metric family -> where it is used (panel titles and alert names)."""
    exprs: list[tuple[str, str]] = []
    dash = json.loads((DOCKER / "grafana/dashboards/recsys-faust.json").read_text())
    exprs += [(f"panel '{p['title']}'", t["expr"]) for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load((DOCKER / "prometheus/alerts.yml").read_text())
    exprs += [(f"alert {r['alert']}", r["expr"]) for g in rules["groups"] for r in g["rules"]]
    out: dict[str, set[str]] = {}
    for where, expr in exprs:
        for name in re.findall(r"\brecsys_[a-z0-9_]+", expr):
            family = re.sub(r"_(bucket|count|sum)$", "", name)
            out.setdefault(family, set()).add(where)
    return out


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from recsys_faust.devstack.stack import DevStack

    st = DevStack(tmp_path_factory.mktemp("stack"), partitions=4, database=True).start()
    yield st
    st.stop()


def test_every_metric_named_by_a_panel_or_an_alert_is_exported(stack):
    names = named_metrics()
    assert len(names) >= 12, names  # the dashboard and the rules really were read
    worker = stack.add_worker("w1")
    events = synthetic_events(ShopSpec(users=40, items=50, categories=4, events_per_user=5, seed=5),
                              end=1_750_000_000.0)
    produce_events(stack.broker.bootstrap, events)
    produce(stack.broker.bootstrap, [("amazon-product-views", b"u-bad", b"not json")])
    user = events[0][1]["user_id"]
    wait_until(lambda: get(f"{worker.url}/api/users/{user}/profile")[0] == 200, 60, what="the stream applied")
    wait_until(lambda: 'reason="not_json"' in http("GET", f"{worker.url}/metrics?name[]=recsys_dead_letters_total")[1],
               60, what="the bad record dead-lettered")
    assert get(f"{worker.url}/api/recommendations/{user}")[0] == 200
    _, text = http("GET", f"{worker.url}/metrics")
    exported = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    exported |= {re.sub(r"_total$", "", n) for n in exported}  # counters are named with and without _total
    missing = {name: sorted(where) for name, where in names.items()
               if name not in exported and re.sub(r"_total$", "", name) not in exported}
    assert missing == {}, f"named by panels or alerts but not exported: {missing}"
    # And the ones that carry this stream's samples have them.
    for sample in ('recsys_dead_letters_total{reason="not_json",topic="amazon-product-views"}',
                   'recsys_consumer_lag_records{', 'recsys_ready 1.0', 'recsys_model_info{',
                   'recsys_http_request_seconds_count{method="GET",route="/api/recommendations/{user_id}",status="200"}'):
        assert sample in text, sample


def test_a_fresh_worker_exports_a_sample_of_every_metric_the_panels_and_alerts_name(stack):
    """Before any event: every named family has a sample line (labelled counters at 0 for their
    known labels), so that ``increase()`` sees the first dead letter or drift alert as a rise."""
    worker = stack.add_worker("fresh")
    get(f"{worker.url}/api/ping")  # one request, so the HTTP histogram has its first series
    _, text = http("GET", f"{worker.url}/metrics")
    sampled = {re.sub(r"_(bucket|count|sum|total)$", "", line.split("{")[0].split(" ")[0])
               for line in text.splitlines() if line and not line.startswith("#")}
    names = {re.sub(r"_total$", "", n) for n in named_metrics()}
    assert sorted(names - sampled) == []
    assert 'recsys_dead_letters_total{reason="not_json",topic="amazon-reviews"} 0.0' in text
    assert 'recsys_drift_alerts_total{feature="kind"} 0.0' in text
