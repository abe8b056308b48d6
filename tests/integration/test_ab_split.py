"""An A/B test on a real worker: 2,000 users split by the hash of their id, each answer naming
its variant and ranked that variant's way, and the online figures reported per variant."""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict

import pytest

from .helpers import get, http, produce_events, wait_until

pytestmark = pytest.mark.integration
USERS = 2000


def test_two_thousand_users_split_near_half_and_half_with_figures_per_variant(stack):
    worker = stack.add_worker("w1", extra_env={"RECSYS_AB_VARIANTS": "control=blend:50,treatment=popular:50"})
    now = time.time()
    events = [("view", {"event_id": f"ab-{i}-{j}", "user_id": f"ab-u{i}", "product_id": f"p{(i + j) % 50}",
                        "category": f"c{(i + j) % 5}", "timestamp": now - 60 + j}) for i in range(USERS) for j in range(2)]
    produce_events(stack.broker.bootstrap, events)

    def applied() -> float:
        _, text = http("GET", f"{worker.url}/metrics?name[]=recsys_events_total")
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if 'outcome="applied"' in line and "amazon-product-views" in line)

    wait_until(lambda: applied() >= len(events), 120, what="every event applied")
    variants: Counter = Counter()
    strategies: dict[str, set] = defaultdict(set)
    for i in range(USERS):
        status, body = get(f"{worker.url}/api/recommendations/ab-u{i}?k=5")
        assert status == 200, body
        variants[body["variant"]] += 1
        strategies[body["variant"]].add(body["strategy"])
    share = variants["treatment"] / USERS
    assert set(variants) == {"control", "treatment"} and 0.45 <= share <= 0.55, variants
    # no model here: control ranks by the streamed transitions, treatment by popularity alone
    assert strategies["treatment"] <= {"popular", "popular_affinity"}, strategies
    assert "transitions" in strategies["control"], strategies

    def per_variant() -> dict[str, float]:
        _, text = http("GET", f"{worker.url}/metrics?name[]=recsys_online_answers")
        out: dict[str, float] = defaultdict(float)
        for m in re.finditer(r'recsys_online_answers\{[^}]*variant="(\w+)"[^}]*\} (\S+)', text):
            out[m.group(1)] += float(m.group(2))
        return out if sum(out.values()) >= USERS else None

    counted = wait_until(per_variant, 60, what="the answers counted per variant")
    assert counted == {name: float(n) for name, n in variants.items()}
    body = get(f"{worker.url}/api/models")[1]
    listed = {v["name"]: v for v in body["variants"]}
    assert {n: v["spec"] for n, v in listed.items()} == {"control": "blend", "treatment": "popular"}
    assert {n: sum(r["answers"] for r in v["online"]) for n, v in listed.items()} == dict(variants)
