"""catalogue/rules.py and the Recommender's use of it: hidden items never appear (ready lists,
live lists, similar, trending), boosts reorder as an independent ranking says, the catalogue's
category wins, and a rule is refused with its reason."""

from __future__ import annotations

import random

import pytest

from recsys_faust.catalogue.rules import MAX_BOOST, Rule, Rules, parse_rule
from recsys_faust.events.model import Invalid

from ..web.test_views import _state
from recsys_faust.settings import Settings


@pytest.mark.parametrize("obj, code", [
    ([], "not_object"),
    ({"available": "yes"}, "wrong_type"),
    ({"boost": 0}, "out_of_range"),
    ({"boost": MAX_BOOST * 2}, "out_of_range"),
    ({"boost": True}, "out_of_range"),
    ({"hidden_until": "tomorrow"}, "wrong_type"),
    ({"category": ""}, "wrong_type"),
    ({"product_id": "other"}, "out_of_range"),
])
def test_a_bad_rule_is_refused_with_its_reason(obj, code):
    got = parse_rule(obj, "p1")
    assert isinstance(got, Invalid) and got.code == code, got


def test_rules_hide_replace_categories_and_boost_within_the_bound():
    rules = Rules()
    now = 1_000.0
    rules.put("gone", Rule("gone", available=False))
    rules.put("later", Rule("later", hidden_until=now + 60))
    rules.put("past", Rule("past", hidden_until=now - 60))
    rules.put("moved", Rule("moved", category="new"))
    assert rules.active
    items = [{"product_id": p, "score": s, "category": "old"} for p, s in
             [("gone", 9.0), ("later", 8.0), ("past", 7.0), ("moved", 6.0), ("plain", 5.0)]]
    got = rules.apply(items, now)
    assert [it["product_id"] for it in got] == ["past", "moved", "plain"]
    assert got[1]["category"] == "new" and got[2]["category"] == "old"
    assert [it["product_id"] for it in rules.apply(items, now + 61)][:2] == ["later", "past"]  # back when due
    rules.put("gone", None)   # a tombstone removes the rule
    assert rules.apply(items, now)[0]["product_id"] == "gone"


def test_boosts_reorder_as_an_independent_ranking_says():
    rng = random.Random(4)
    rules = Rules()
    boosts = {f"p{i}": rng.choice([0.25, 0.5, 1.0, 2.0, 4.0]) for i in range(40)}
    for pid, b in boosts.items():
        rules.put(pid, Rule(pid, boost=b))
    items = [{"product_id": f"p{i}", "score": rng.uniform(-1, 3)} for i in range(40)]
    items.sort(key=lambda it: -it["score"])
    # independent: the boosted score of each, by hand (negative scores are divided)
    expected = sorted(items, key=lambda it: -(it["score"] * boosts[it["product_id"]] if it["score"] >= 0
                                               else it["score"] / boosts[it["product_id"]]))
    got = rules.apply(items, 0.0)
    assert [it["product_id"] for it in got] == [it["product_id"] for it in expected]
    # the bound: no item moves by more than the factor allows
    for it in got:
        original = next(x["score"] for x in items if x["product_id"] == it["product_id"])
        assert abs(it["score"]) <= abs(original) * MAX_BOOST + 1e-6


def test_every_answer_of_the_recommender_leaves_hidden_items_out():
    settings = Settings()
    idx, _profiles, recommender = _state(settings)
    assert [it["product_id"] for it in recommender.recommend("u1", 3)["items"]] == ["r1", "r2", "r3"]
    recommender.rules.put("r1", Rule("r1", available=False))
    recommender.rules.put("hot", Rule("hot", available=False))
    ready = recommender.recommend("u1", 2)
    assert "r1" not in [it["product_id"] for it in ready["items"]] and ready["items"]
    assert all(it["product_id"] != "hot" for it in recommender.recommend("nobody", 5)["items"])
    assert all(it["product_id"] != "hot" for it in recommender.trending(5)["items"])
    assert all(it["product_id"] != "hot" for it in recommender.fallback("u1", 5, "unavailable")["items"])
    recommender.rules.put("r1", Rule("r1", available=True))
    recommender.rules.put("hot", None)
    assert [it["product_id"] for it in recommender.recommend("u1", 3)["items"]] == ["r1", "r2", "r3"]
    assert recommender.trending(5)["items"][0]["product_id"] == "hot"


def test_the_catalogues_category_is_the_one_a_category_filter_uses():
    settings = Settings()
    idx, _profiles, recommender = _state(settings)
    recommender.rules.put("r2", Rule("r2", category="z"))
    got = recommender.recommend("u1", 1, category="z")   # the ready list's "y" item, in "z" now
    assert [it["product_id"] for it in got["items"]] == ["r2"]
    assert recommender.recommend("u1", 1, category="y")["items"] == [] or \
        recommender.recommend("u1", 1, category="y")["items"][0]["product_id"] != "r2"
    recommender.rules.put("hot", Rule("hot", category="z"))
    assert [it["product_id"] for it in recommender.trending(5, category="z")["items"]] == ["hot"]
