"""Drift and a backlog: a worker restarted behind its topics marks the windows it reads the
backlog in as not judged (the detector's rule itself: tests/unit/drift/test_detector.py), and
judges live traffic again once it has caught up. On a real worker, a real broker's high
watermarks telling it how far behind each micro-batch is."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from recsys_faust.training.als import ALSParams
from recsys_faust.training.train import publish, train_events

from .helpers import get, metric, produce_events, read_topic, wait_until

pytestmark = pytest.mark.integration
WINDOW_S = 2
ENV = {"RECSYS_DRIFT_WINDOW_S": str(WINDOW_S), "RECSYS_DRIFT_MIN_EVENTS": "60", "RECSYS_DRIFT_MAX_BACKLOG": "300"}
BACKLOG = 3_000


def purchases(n: int, categories: list[str], tag: str, ts: float) -> list[tuple[str, dict]]:
    return [("purchase", {"event_id": f"{tag}-{i}", "user_id": f"{tag}-u{i % 40}", "product_id": f"p{i % 30}",
                          "category": categories[i % len(categories)], "price": 10.0, "quantity": 1, "timestamp": ts})
            for i in range(n)]


def drift(worker) -> dict:
    return get(f"{worker.url}/api/health")[1]["drift"]


def category_alerts(stack) -> list[dict]:
    return [a for a in (json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-data-drift", 5))
            if a["feature"] == "category"]


def test_a_backlog_read_after_a_restart_is_not_judged_and_live_traffic_is_again(stack, tmp_path):
    # A model trained on categories a and b: its manifest is the reference from the first window.
    settings = stack.settings.with_overrides(models_dir=tmp_path / "models", drift_window_s=WINDOW_S)
    trained = train_events(settings, purchases(1000, ["a", "b"], "train", time.time() - 3600),
                           ALSParams(factors=8, iterations=2), "categories")
    version = trained.artifact.version
    asyncio.run(publish(settings, trained.artifact))
    worker = stack.add_worker("w1", extra_env=ENV)
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60, what="the model")
    assert "category" in drift(worker)["model_reference"] and drift(worker)["windows_skipped"] == 0
    worker.stop()

    # Stopped, the worker falls behind by a shifted stream; restarted, it reads it as a backlog.
    produce_events(stack.broker.bootstrap, purchases(BACKLOG, ["c"], "backlog", time.time()))
    again = stack.add_worker("w1", extra_env=ENV)
    wait_until(lambda: metric(again, "recsys_events_total", 'outcome="applied"') >= BACKLOG, 90,
               what="the backlog folded")
    status = drift(again)
    # the window the backlog was read in is marked, or was closed unjudged already
    assert status["catching_up"] or status["windows_skipped"] >= 1, status
    # ... and closes; the window after it, with no batch behind, is open for live traffic
    wait_until(lambda: (lambda s: s["windows_skipped"] >= 1 and not s["catching_up"])(drift(again)), 20,
               what="the backlog's window closed unjudged")
    assert metric(again, "recsys_drift_windows_skipped_total") >= 1

    # Caught up, the worker judges live traffic again: the same shift, live, raises an alert.
    seen = {a["window_start"] for a in category_alerts(stack)}
    produce_events(stack.broker.bootstrap, purchases(200, ["c"], "live", time.time()))
    alerts = wait_until(lambda: [a for a in category_alerts(stack) if a["window_start"] not in seen], 30,
                        what="a category alert on live traffic")
    assert alerts[0]["reference"]["source"] == f"model:{version}" and alerts[0]["details"]["window"]
