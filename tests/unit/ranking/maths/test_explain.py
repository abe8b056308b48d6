"""ranking/maths/explain.py: the shares of an item's ALS score are exact (they sum to the score
the fold-in gives) and are implicit's own ``explain`` decomposition; policy/explain.py names the
user's items, and the transition reasons are the latest day's items with real successor counts."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares

from recsys_faust.events.model import Event, Source
from recsys_faust.profiles.profile import ProfileConfig, apply_event, new_profile
from recsys_faust.ranking.maths.explain import als_shares
from recsys_faust.ranking.maths.foldin import FoldIn
from recsys_faust.ranking.model.active import ActiveModel
from recsys_faust.ranking.model.artifact import ModelArtifact
from recsys_faust.ranking.policy.explain import explain
from recsys_faust.settings import Settings
from recsys_faust.transitions.index import TransitionIndex, new_entry

RNG = np.random.default_rng(11)
Y = RNG.normal(scale=0.3, size=(60, 12)).astype(np.float32)


def test_shares_sum_to_the_folded_in_score_for_every_item():
    foldin = FoldIn(Y, regularization=0.5, alpha=8.0)
    items = np.array([3, 17, 42, 5])
    weights = np.array([1.0, 0.25, 0.4, 1.0])
    x = foldin.user_vector(items, weights).astype(np.float64)
    targets = np.arange(60)
    shares = als_shares(foldin, items, weights, targets)
    assert shares.shape == (60, 4)
    np.testing.assert_allclose(shares.sum(axis=1), Y.astype(np.float64) @ x, atol=1e-4)


def test_shares_are_implicits_explain():
    foldin = FoldIn(Y, regularization=0.5, alpha=8.0)
    items = np.array([3, 17, 42])
    weights = np.array([1.0, 0.25, 0.4])
    model = AlternatingLeastSquares(factors=12, regularization=0.5, alpha=8.0)
    model.item_factors = Y.copy()
    model.user_factors = np.zeros((1, 12), dtype=np.float32)
    user_items = sp.csr_matrix((weights, (np.zeros(3, dtype=int), items)), shape=(1, 60))
    for target in (0, 9, 33):
        total, top, _ = model.explain(0, user_items, target, N=3)
        ours = als_shares(foldin, items, weights, np.array([target]))[0]
        assert abs(ours.sum() - total) < 1e-4
        assert {int(i): round(s, 4) for i, s in top} == {int(i): round(float(s), 4) for i, s in zip(items, ours)}


def test_an_answer_names_the_users_items_and_the_transitions_that_brought_it():
    ids = [f"p{i}" for i in range(60)]
    active = ActiveModel.build(ModelArtifact("m", ids, Y, params={"regularization": 0.5, "alpha": 8.0}))
    settings = Settings()
    profile = new_profile("u")
    cfg = ProfileConfig()
    for n, (pid, kind, ts) in enumerate([("p3", "purchase", 1_000.0), ("p17", "view", 2_000.0),
                                          ("p42", "view", 90_000.0)]):
        apply_event(profile, Event(kind, f"e{n}", "u", ts, product_id=pid), Source("t", 0, n), cfg)
    transitions = TransitionIndex()
    entry = new_entry("p42")
    entry["next"] = {"p7": 3}
    transitions.put("p42@0", entry)
    found = explain(["p7", "p9"], profile, active, transitions, settings.popularity.weights)
    for pid in ("p7", "p9"):
        reasons = [r for r in found[pid]["because"] if r["via"] == "als"]
        assert 1 <= len(reasons) <= 2 and {r["product_id"] for r in reasons} <= {"p3", "p17", "p42"}
        assert reasons == sorted(reasons, key=lambda r: -r["share"])
        # all three interactions' shares sum to the score; the two named are the largest
        merged = {active.index[p]: settings.popularity.weights.als_weight(k, None)
                  for p, k in (("p3", "purchase"), ("p17", "view"), ("p42", "view"))}
        shares = als_shares(active.foldin, np.array(list(merged)), np.array(list(merged.values())),
                            np.array([active.index[pid]]))[0]
        assert abs(found[pid]["als_score"] - shares.sum()) < 1e-4
        assert reasons[0]["share"] == round(float(shares.max()), 6)
    # p42 is the latest day's item and its successors hold p7 three times
    assert {"product_id": "p42", "via": "transitions", "count": 3} in found["p7"]["because"]
    assert not [r for r in found["p9"]["because"] if r["via"] == "transitions"]
    assert explain(["p7"], None, active, transitions, settings.popularity.weights) == {"p7": {"because": []}}
