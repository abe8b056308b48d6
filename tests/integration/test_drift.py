"""Input drift end to end: a real worker judges windows of real traffic, publishes an alert on
amazon-data-drift, and the sink stores it in PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time

import psycopg
import pytest

from recsys_faust.training.als import ALSParams
from recsys_faust.training.train import publish, train_events

from .helpers import get, produce_events, read_topic, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
WINDOW_S = 2


def views(n: int, categories: list[str], tag: str) -> list[tuple[str, dict]]:
    now = time.time()
    return [("view", {"event_id": f"{tag}-{i}", "user_id": f"{tag}-u{i % 40}", "product_id": f"p{i % 30}",
                      "category": categories[i % len(categories)], "timestamp": now}) for i in range(n)]


ENV = {"RECSYS_DRIFT_WINDOW_S": str(WINDOW_S), "RECSYS_DRIFT_MIN_EVENTS": "60"}


@pytest.fixture(scope="module")
def worker(stack):
    return stack.add_worker("w1", extra_env=ENV)


def drift_status(worker) -> dict:
    return get(f"{worker.url}/api/health")[1]["drift"]


def category_alerts(stack) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-data-drift", 5)
            if json.loads(r.value)["feature"] == "category"]


def test_a_shift_in_categories_raises_one_alert_that_reaches_postgres(worker, stack):
    produce_events(stack.broker.bootstrap, views(200, ["a", "b"], "base"))
    wait_until(lambda: "category" in drift_status(worker)["baseline_features"], 20, what="a baseline window")
    assert category_alerts(stack) == []
    # A window later, so that no baseline event shares a window with the shifted ones (the
    # windows run on the worker's clock: where their boundary falls is not the test's to choose).
    time.sleep(WINDOW_S + 0.5)
    produce_events(stack.broker.bootstrap, views(200, ["c"], "shift"))
    alerts = wait_until(lambda: category_alerts(stack), 20, what="a category drift alert")
    a = alerts[0]
    assert a["statistic"] == "psi" and a["value"] > a["threshold"] == 0.2
    assert a["window_end"] - a["window_start"] == WINDOW_S
    assert a["reference"]["source"].startswith("baseline:")
    # the baseline is the first full window: all of the base events or a part of them
    reference = a["reference"]["distribution"]
    assert set(reference) == {"a", "b"} and all(0.3 <= share <= 0.7 for share in reference.values()), reference
    assert a["details"]["worker"] == "w1" and a["details"]["window"] == {"(other)": 1.0}
    assert a["details"]["events"] >= 60
    # the event mix did not change (views only): no alert for it
    assert all(json.loads(r.value)["feature"] != "kind"
               for r in read_topic(stack.broker.bootstrap, "amazon-data-drift", 3))

    def stored():
        with psycopg.connect(stack.postgres.url) as conn:
            return conn.execute("SELECT value, threshold, details FROM drift_alerts WHERE feature = 'category'"
                                " AND statistic = 'psi'").fetchall()

    rows = wait_until(stored, 20, what="the alert in drift_alerts")
    assert any(abs(v - a["value"]) < 1e-9 and d["reference"]["source"] == a["reference"]["source"]
               for v, _, d in rows)
    assert drift_status(worker)["last_psi"]["category"] > 0.2


def purchases(n: int, prices: list[float], tag: str, ts: float) -> list[tuple[str, dict]]:
    return [("purchase", {"event_id": f"{tag}-{i}", "user_id": f"{tag}-u{i % 40}", "product_id": f"p{i % 30}",
                          "category": "a", "price": prices[i], "quantity": 1, "timestamp": ts}) for i in range(n)]


def spread(n: int, low: float, high: float) -> list[float]:
    """n prices evenly over [low, high), in an order whose every run of consecutive ones is
    spread over the range too (a window boundary may cut the batch anywhere): no random draw
    that could itself fail a KS test now and then."""
    return [low + (high - low) * (((i * 77) % n) + 0.5) / n for i in range(n)]


def price_alerts(stack) -> list[dict]:
    return [json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-data-drift", 5)
            if json.loads(r.value)["feature"] == "price"]


def test_a_price_shift_against_the_manifests_reference_raises_a_ks_alert_after_a_restart(worker, stack, tmp_path):
    # A model trained on prices between 10 and 20, published: its manifest carries their quantiles.
    settings = stack.settings.with_overrides(models_dir=tmp_path / "models", drift_window_s=WINDOW_S)
    trained = train_events(settings, purchases(1000, spread(1000, 10, 20), "train",
                                               time.time() - 3600), ALSParams(factors=8, iterations=2), "prices")
    version = trained.artifact.version
    assert trained.artifact.manifest["reference"]["price"]["n"] == 1000
    asyncio.run(publish(settings, trained.artifact))
    wait_until(lambda: get(f"{worker.url}/api/health")[1]["model_version"] == version, 60, what="the model")
    # Restarted, the worker has no baseline window: only the manifest can be the reference.
    worker.stop()
    again = stack.add_worker("w1", extra_env=ENV)
    wait_until(lambda: get(f"{again.url}/api/health")[1]["model_version"] == version, 60, what="the model after the restart")
    assert "price" in drift_status(again)["model_reference"]

    # Prices as trained: judged against the manifest from the first window on, no alert.
    produce_events(stack.broker.bootstrap, purchases(200, spread(200, 10, 20), "same", time.time()))
    wait_until(lambda: "price" in drift_status(again)["last_ks"], 20, what="a judged price window")
    assert price_alerts(stack) == [] and "price" not in drift_status(again)["baseline_features"]
    time.sleep(WINDOW_S + 0.5)
    # Prices between 14 and 28: most still in the same power-of-two bands as before.
    produce_events(stack.broker.bootstrap, purchases(200, spread(200, 14, 28), "up", time.time()))
    alerts = wait_until(lambda: price_alerts(stack), 20, what="a KS alert on price")
    for a in alerts:
        assert a["statistic"] == "ks" and a["value"] > a["threshold"] == 0.1 and a["details"]["p_value"] < 0.01
        assert a["reference"]["source"] == f"model:{version}" and a["reference"]["n"] == 1000
        assert a["details"]["window"]["p50"] > a["reference"]["summary"]["p50"]
    # at most one alert per window
    assert len({a["window_start"] for a in alerts}) == len(alerts)
    assert drift_status(again)["last_ks"]["price"] > 0.1
