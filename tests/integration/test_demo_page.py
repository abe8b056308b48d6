"""The demo page in a real headless Chromium, driven by Playwright, against a real worker whose
read, ingest and metrics routes need a token: pick a user, buy a recommended item, watch the
list and the profile change. CI must run it: there a missing browser fails instead of skipping."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events

from .helpers import Model, cli, get, produce_events, wait_until, write_shop_csv

pytestmark = pytest.mark.integration
END = time.time() - 60
TOKEN = "demo-page-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _browser() -> str:
    found = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if found is None:
        message = "NO BROWSER: install Debian's chromium to run the demo page test (scripts/test.sh does, as root)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI must run it")
        pytest.skip(message)
    return found


@pytest.fixture(scope="module")
def model():
    return Model(synthetic_events(ShopSpec(users=40, items=60, categories=4, events_per_user=12, seed=23), end=END))


@pytest.fixture(scope="module")
def worker(stack, model, tmp_path_factory):
    w = stack.add_worker("w1", extra_env={"RECSYS_READ_TOKENS": TOKEN, "RECSYS_INGEST_TOKENS": TOKEN,
                                          "RECSYS_METRICS_TOKEN": TOKEN})
    # an ALS model first, so lists and their explanations ("because you bought X") come from it
    models_dir = tmp_path_factory.mktemp("models")
    csv = write_shop_csv(models_dir / "shop.csv", model.events)
    out = cli(stack, "train", "--data", str(csv), "--factors", "16", "--publish", "--no-eval", models_dir=models_dir)
    assert out.returncode == 0, out.stderr + out.stdout
    wait_until(lambda: get(f"{w.url}/api/health/live")[0] == 200 and
               str(w.get("/api/health")[1].get("model_version", "")).startswith("als-"), 60, what="the model served")
    produce_events(stack.broker.bootstrap, model.events)
    wait_until(lambda: all(get(f"{w.url}/api/users/{u}/profile", headers=AUTH)[1].get("counts") == model.counts(u)
                           for u in model.by_user), 90, what="all profiles folded")
    return w


def _cards(page) -> list[str]:
    return page.eval_on_selector_all("#recs .card", "cards => cards.map(c => c.dataset.product)")


def test_a_shopper_buys_a_recommended_item_and_the_page_follows(worker, model, tmp_path):
    from playwright.sync_api import sync_playwright

    browser_path = _browser()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{worker.url}/")

        # Without the token the API refuses, and the page says so rather than showing nothing.
        page.click("#random")
        page.wait_for_function("document.getElementById('status').textContent.includes('401')", timeout=10_000)

        page.fill("#token", TOKEN)
        page.dispatch_event("#token", "change")
        page.click("#random")
        page.wait_for_selector("#recs .card", timeout=15_000)
        user = page.input_value("#user")
        assert user in model.by_user, user
        before = _cards(page)
        answer = get(f"{worker.url}/api/recommendations/{user}?k=12", headers=AUTH)[1]
        assert before == [i["product_id"] for i in answer["items"]]
        assert f"strategy {answer['strategy']}" in page.text_content("#meta")

        bought = before[0]
        page.click(f"#recs .card[data-product='{bought}'] .act-purchase")
        page.wait_for_function("document.getElementById('status').textContent.includes('applied')", timeout=20_000)

        # The purchase went through the ingest route into Kafka and the worker folded it.
        profile = get(f"{worker.url}/api/users/{user}/profile", headers=AUTH)[1]
        assert profile["counts"].get("purchase", 0) == model.counts(user).get("purchase", 0) + 1
        assert (profile["recent_items"][0]["product_id"], profile["recent_items"][0]["kind"]) == (bought, "purchase")
        # The list changed: the bought item is now seen and left out; new items are marked.
        after = _cards(page)
        assert after != before and bought not in after
        assert after == [i["product_id"] for i in
                         get(f"{worker.url}/api/recommendations/{user}?k=12", headers=AUTH)[1]["items"]]
        marked = page.eval_on_selector_all("#recs .card.new", "cards => cards.map(c => c.dataset.product)")
        assert marked and set(marked) == set(after) - set(before)
        # The profile panel shows the purchase first.
        first = page.text_content("#recent li")
        assert "purchase" in first and bought in first

        # Under each card, why: the API's first reason for it (explain=true)
        explained = get(f"{worker.url}/api/recommendations/{user}?k=12&explain=true", headers=AUTH)[1]["items"]
        verb = {"purchase": "bought", "view": "viewed", "review": "reviewed"}
        expected = [(f"because you {verb[r['kind']]} {r['product_id']}" if r["via"] == "als"
                     else f"people took it after {r['product_id']}") if (r := (it["because"] or [None])[0]) else "\u00a0"
                    for it in explained]
        shown = page.eval_on_selector_all("#recs .card .because", "els => els.map(e => e.textContent)")
        assert shown == expected and any(t.startswith("because you ") for t in shown), shown

        # "Users took next" for an item is the API's answer.
        page.click(f"#recs .card[data-product='{after[0]}'] .actions button:nth-child(3)")
        status, nxt = get(f"{worker.url}/api/products/{after[0]}/similar?kind=next&k=8", headers=AUTH)
        if status == 200 and nxt["items"]:
            page.wait_for_function(
                f"document.querySelector('#next li').textContent.startsWith('{nxt['items'][0]['product_id']}')",
                timeout=10_000)
        else:
            page.wait_for_function("document.querySelector('#next li').textContent.includes('no')", timeout=10_000)

        # The live panel reads /metrics with the token: applied events per second and freshness.
        page.wait_for_function("/^[0-9.]+$/.test(document.getElementById('eps').textContent)", timeout=10_000)
        page.wait_for_function("document.getElementById('fresh').textContent.includes('ms')", timeout=10_000)
        assert page.text_content("#dead") == "0"
        assert page.text_content("#model") == worker.get("/api/health")[1]["model_version"]
        assert not page.text_content("#live-error")
        page.wait_for_function("live.eps.length >= 4", timeout=20_000)  # the charts have a few points

        shot = Path(os.environ.get("RECSYS_DEMO_SCREENSHOT") or tmp_path / "demo-page.png")
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        browser.close()
    assert not errors, errors
