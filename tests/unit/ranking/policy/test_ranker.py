"""ranking/policy/ranker.py: which strategy a user gets, and that filters hold for every one."""

import numpy as np
import scipy.sparse as sp

from recsys_faust.popularity.trending import PopularityIndex, apply_to_entry, new_entry
from recsys_faust.profiles.profile import new_profile
from recsys_faust.ranking.model import artifact as art
from recsys_faust.ranking.model.active import ModelHolder
from recsys_faust.ranking.model.artifact import ModelArtifact
from recsys_faust.ranking.maths.foldin import FoldIn
from recsys_faust.ranking.policy.ranker import Ranker
from recsys_faust.transitions.index import TransitionIndex
from recsys_faust.settings import Settings


def _popularity() -> PopularityIndex:
    idx = PopularityIndex(window_s=10**9, bucket_s=10**9, refresh_s=0)
    for n, pid in enumerate(["p0", "p1", "p2", "p3", "x9"]):
        e = new_entry(pid)
        apply_to_entry(e, ts=0.0, weight=float(10 - n), category="cx" if pid == "x9" else f"c{n % 2}",
                       source=None, bucket_s=10**9, retention_s=10**9)
        idx.put(f"{pid}@0", e)
    return idx


def _profile(user: str, *items: str) -> dict:
    p = new_profile(user)
    p["recent"] = [[i, "purchase", 100.0 + n, None, None] for n, i in enumerate(items)]
    return p


def test_without_a_model_transitions_rank_over_streamed_items_then_popularity():
    transitions = TransitionIndex()
    transitions.put("p0@0", {"item": "p0", "next": {"p1": 1, "x9": 4, "p0": 0}, "applied": {}})
    ranker = Ranker(Settings(), _popularity(), transitions, ModelHolder())
    columns, strategy = ranker.fallback(_profile("u", "p0"))
    # the seen p0 is left out; the rest of the list is popularity, with score 0
    assert strategy == "transitions" and columns[0] == ["x9", "p1", "p2", "p3"]
    assert columns[1] == [4.0, 1.0, 0.0, 0.0]
    assert columns[2] == ["cx", "c1", "c0", "c1"]                       # categories from popularity
    columns, strategy = ranker.fallback(_profile("u", "p0"), category="c1")
    assert strategy == "transitions" and columns[0] == ["p1", "p3"]
    columns, strategy = ranker.fallback(_profile("u", "p2"))           # p2 has no successors
    assert strategy == "popular" and columns[0][:2] == ["p0", "p1"]
    off = Ranker(Settings(blend_transitions_weight=0.0), _popularity(), transitions, ModelHolder())
    assert off.fallback(_profile("u", "p0"))[1] == "popular"            # weight 0 turns them off


def test_strategies_with_a_model_and_filters_for_each():
    rng = np.random.default_rng(1)
    ids = [f"p{i}" for i in range(4)]
    shipped = sp.csr_matrix(np.array([[0, 0, 0, 2], [0] * 4, [0] * 4, [0] * 4], dtype=np.float32))
    holder = ModelHolder()
    holder.offer(ModelArtifact("m", ids, rng.normal(size=(4, 3)).astype(np.float32),
                               item_category=["c0", "c1", "c0", "c1"], transitions=shipped), 1.0)
    ranker = Ranker(Settings(), _popularity(), TransitionIndex(), holder)
    profiles = [_profile("a", "p0"), _profile("b", "p1"), _profile("c", "zz"), new_profile("d")]
    scored = ranker.score(holder.active, profiles)
    assert scored[0][1] == "als+transitions" and scored[0][0][0][0] == "p3"  # p3 follows p0
    assert scored[1][1] == "als" and "p1" not in scored[1][0][0]
    assert scored[2] is None and scored[3] is None                             # nothing known
    items, strategy = ranker.build_list(profiles[0], 3, category="c0")
    assert strategy == "als+transitions" and [i["product_id"] for i in items] == ["p2"]
    assert ranker.build_list(profiles[2], 2)[1] == "popular"


def test_ready_lists_and_live_lists_equal_a_brute_force_ranking():
    from recsys_faust.ranking.model.active import ActiveModel
    from recsys_faust.popularity.trending import PopularityIndex
    from recsys_faust.profiles.profile import new_profile
    from recsys_faust.ranking.policy.ranker import Ranker
    from recsys_faust.transitions.index import TransitionIndex
    from recsys_faust.settings import Settings

    rng = np.random.default_rng(9)
    ids = [f"p{i}" for i in range(120)]
    cats = [f"c{i % 3}" for i in range(120)]
    Y = rng.normal(size=(120, 8)).astype(np.float32)
    artifact = art.ModelArtifact(version="m", item_ids=ids, item_factors=Y, user_ids=[],
                                 user_factors=np.zeros((0, 8), np.float32), item_category=cats, params={}, manifest={})
    active = ActiveModel.build(artifact)
    holder = ModelHolder()
    holder.offer(artifact, 1.0)
    settings = Settings()
    rec = Ranker(settings, PopularityIndex(window_s=10, bucket_s=1), TransitionIndex(), holder)
    fold = FoldIn(Y, regularization=1.0, alpha=10.0)
    profiles = []
    for u in range(4):
        p = new_profile(f"u{u}")
        p["recent"] = [[ids[j], "view", 1.0, None, None] for j in rng.choice(120, size=u + 2, replace=False)]
        profiles.append(p)
    profiles.append(new_profile("empty"))

    def brute(p, n, category=None):
        items = np.array([ids.index(r[0]) for r in p["recent"]])
        x = fold.user_vector(items, np.full(len(items), settings.popularity.weights.als_weight("view", None)))
        scores = (Y @ x).astype(np.float64)
        scores[items] = -np.inf
        if category:
            scores[[c != category for c in cats]] = -np.inf
        order = [i for i in np.lexsort((np.arange(120), -scores)) if np.isfinite(scores[i])]
        return [ids[i] for i in order[:n]]

    lists = rec.score(active, profiles)
    assert lists[-1] is None
    for p, (columns, strategy) in zip(profiles[:-1], lists[:-1]):
        assert strategy == "als" and columns[0] == brute(p, 50)
        assert columns[2] == [cats[ids.index(i)] for i in columns[0]]
        live, strategy = rec.build_list(p, 5, category="c1")
        assert strategy == "als" and [i["product_id"] for i in live] == brute(p, 5, "c1")
