"""Input drift end to end: a real worker judges windows of real traffic, publishes an alert on
amazon-data-drift, and the sink stores it in PostgreSQL."""

from __future__ import annotations

import json
import time

import psycopg
import pytest

from .helpers import get, produce_events, read_topic, wait_until

pytestmark = pytest.mark.integration
WITH_DATABASE = True
WINDOW_S = 2


def views(n: int, categories: list[str], tag: str) -> list[tuple[str, dict]]:
    now = time.time()
    return [("view", {"event_id": f"{tag}-{i}", "user_id": f"{tag}-u{i % 40}", "product_id": f"p{i % 30}",
                      "category": categories[i % len(categories)], "timestamp": now}) for i in range(n)]


@pytest.fixture(scope="module")
def worker(stack):
    return stack.add_worker("w1", extra_env={"RECSYS_DRIFT_WINDOW_S": str(WINDOW_S), "RECSYS_DRIFT_MIN_EVENTS": "60"})


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
