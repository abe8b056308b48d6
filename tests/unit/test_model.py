import pytest
import numpy as np

from recsys_faust.devstack.demo_data import ShopSpec, synthetic_events
from recsys_faust.ranking import artifact as art
from recsys_faust.ranking.foldin import STACK_MIN_USERS, FoldIn
from recsys_faust.ranking.topk import top_k, top_k_rows
from recsys_faust.training.als import ALSParams, train_als
from recsys_faust.training.dataset import from_rows, leave_last_out
from recsys_faust.training.evaluate import _seen_lists, rank_by_scores
from recsys_faust.ranking.payload import decode, encode
from recsys_faust.ranking.active import ModelHolder

PARAMS = ALSParams(factors=16, regularization=0.5, alpha=10.0, iterations=10, seed=3)


def shop(users=300, seed=1):
    evs = synthetic_events(ShopSpec(users=users, items=200, categories=8, events_per_user=12, seed=seed), end=1e9)
    return from_rows((o["user_id"], o["product_id"], 1.0, o["timestamp"], o.get("category"))
                     for k, o in evs if k != "user-event")


def ndcg(ranked, target):
    hits = ranked == target[:, None]
    return float(np.where(hits.any(1), 1 / np.log2(np.argmax(hits, 1) + 2), 0).mean())


def test_leave_last_out_holds_out_each_users_last_row():
    data = from_rows([("a", "x", 1, 1, None), ("a", "y", 1, 2, None), ("b", "x", 1, 1, None),
                      ("a", "z", 1, 2, None)])
    train, test = leave_last_out(data)
    assert data.item_ids[data.items[test[0]]] == "z"  # tie on time: the later row is last
    assert test[1] == -1 and train.sum() == 3


def test_top_k_orders_and_excludes():
    s = np.array([0.1, 0.9, 0.5, 0.7])
    assert top_k(s, 2).tolist() == [1, 3]
    assert top_k(s, 3, [1]).tolist() == [3, 2, 0]


def _brute_top_k(row, k):
    order = np.lexsort((np.arange(len(row)), -row))  # best first, ties by lower index
    order = [i for i in order[:k] if np.isfinite(row[i])]
    return np.array(order, dtype=np.int64)


def test_top_k_rows_matches_a_full_sort_with_ties_exclusions_and_short_rows():
    rng = np.random.default_rng(7)
    for n, k in [(8687, 50), (300, 50), (120, 50), (30, 50), (1000, 1), (5, 5)]:
        scores = rng.normal(size=(40, n)).astype(np.float32)
        scores[:, : n // 3] = np.round(scores[:, : n // 3], 1)  # many ties
        scores[3, :] = -np.inf                                   # nothing left to recommend
        scores[4, : n - 2] = -np.inf                             # fewer than k candidates
        scores[5, rng.choice(n, size=n // 2, replace=False)] = -np.inf  # a category filter
        best, values = top_k_rows(scores, k)
        assert best.shape == values.shape == (40, min(k, n))
        for r in range(len(scores)):
            want = _brute_top_k(scores[r], k)
            found = best[r] >= 0
            assert not found[len(want):].any()       # candidates first, then -1 padding
            np.testing.assert_array_equal(best[r][found], want, err_msg=f"n={n} k={k} row={r}")
            np.testing.assert_array_equal(values[r][found], scores[r][want])


def test_foldin_solves_the_implicit_als_normal_equations():
    rng = np.random.default_rng(0)
    Y = rng.normal(size=(30, 5)).astype(np.float32)
    items, w = np.array([2, 7, 11]), np.array([1.0, 0.5, 2.0])
    x = FoldIn(Y, regularization=0.3, alpha=4.0).user_vector(items, w)
    c = 4.0 * w
    # the full (dense) objective's gradient must vanish: sum_i c_ui (x.y_i - p_ui) y_i + reg x = 0
    C = np.ones(30)
    C[items] = c
    P = np.zeros(30)
    P[items] = 1
    grad = (Y.T * C) @ (Y @ x - P) + 0.3 * x
    assert np.abs(grad).max() < 1e-3


def test_batched_foldin_equals_one_user_at_a_time():
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(300, 16)).astype(np.float32)
    fold = FoldIn(Y, regularization=0.5, alpha=8.0)
    histories = [(rng.choice(300, size=m, replace=False), rng.uniform(0.5, 4.0, size=m)) for m in (1, 7, 0, 30, 3)]
    histories.append((np.array([4, 9, 11]), np.array([0.05, 0.1, 2.0])))  # confidence below 1: c - 1 < 0
    histories += [(rng.choice(300, size=m, replace=False), rng.uniform(0.0, 3.0, size=m)) for m in (2, 4, 5, 16, 17)]
    # widths 8 and 16 get enough users to be solved as padded stacks, the rest one by one
    histories += [(rng.choice(300, size=m, replace=False), rng.uniform(0.0, 3.0, size=m))
                  for m in (5, 6, 7, 8, 8, 6, 9, 12, 13, 16, 15)]
    assert sum(5 <= len(h[0]) <= 8 for h in histories) >= STACK_MIN_USERS
    offsets = np.cumsum([0] + [len(items) for items, _ in histories])
    batched = fold.user_vectors(np.concatenate([items for items, _ in histories]).astype(np.int64),
                                np.concatenate([w for _, w in histories]), offsets)
    assert batched.shape == (len(histories), 16)
    for (items, weights), got in zip(histories, batched):
        np.testing.assert_allclose(got, fold.user_vector(items, weights), rtol=1e-4, atol=1e-5)


def test_foldin_recommendations_reach_90_percent_of_batch_quality():
    data = shop()
    train, test_row = leave_last_out(data)
    users = np.flatnonzero(test_row >= 0)
    target = data.items[test_row[users]]
    user_f, item_f, _ = train_als(data.matrix(train), PARAMS)
    seen = _seen_lists(data, train)
    batch = ndcg(rank_by_scores(user_f, item_f, seen, users), target)
    fold = FoldIn(item_f, regularization=PARAMS.regularization, alpha=PARAMS.alpha)
    folded = np.stack([fold.user_vector(seen[u], np.ones(len(seen[u]))) for u in range(data.n_users)])
    streamed = ndcg(rank_by_scores(folded, item_f, seen, users), target)
    assert batch > 0.05  # the model learned the shop's structure
    assert streamed >= 0.9 * batch, (streamed, batch)


def test_artifact_round_trip_without_pickle(tmp_path):
    a = art.ModelArtifact("v1", ["p1", "p2"], np.eye(2, dtype=np.float32), ["u1"], np.ones((1, 2), np.float32),
                          ["c", None], {"alpha": 2.0}, {"created_at": 5.0})
    path = art.save(a, tmp_path)
    b = art.load(path)
    assert b.item_ids == ["p1", "p2"] and b.item_category == ["c", None] and b.params == {"alpha": 2.0}
    assert np.array_equal(b.item_factors, a.item_factors) and art.latest(tmp_path) == path
    with np.load(path / "model.npz", allow_pickle=False) as npz:
        assert npz["item_factors"].dtype == np.float32
    m = decode(encode(a, created_at=7.0))
    assert m.version == "v1" and np.array_equal(m.item_factors, a.item_factors)


def test_model_holder_switches_only_forward():
    holder = ModelHolder()
    mk = lambda v: art.ModelArtifact(v, ["a", "b"], np.eye(2, dtype=np.float32), params={"alpha": 1, "regularization": 1})
    assert holder.offer(mk("v2"), 2.0) and holder.active.version == "v2"
    assert not holder.offer(mk("v1"), 1.0) and holder.active.version == "v2"
    assert holder.active.similar("a", 1)[0]["product_id"] == "b"
    assert holder.active.similar("zzz", 1) is None


def test_training_manifest_carries_the_drift_reference(tmp_path):
    from collections import Counter

    from recsys_faust.training.train import train_events
    from recsys_faust.settings import Settings

    events = [e for e in synthetic_events(ShopSpec(users=40, items=60, categories=4, events_per_user=10, seed=2))
              if e[0] != "user-event"]
    result = train_events(Settings().with_overrides(models_dir=tmp_path), events, ALSParams(factors=8, iterations=2), "t")
    ref = result.artifact.manifest["reference"]
    # categories as the interactions have them (an item keeps the first category seen)
    first_cat: dict = {}
    for _, o in events:
        first_cat.setdefault(o["product_id"], o.get("category"))
    counts = Counter(first_cat[o["product_id"]] or "(none)" for _, o in events)
    assert ref["category"] == pytest.approx({c: n / len(events) for c, n in counts.items()})
    assert ref["catalogue"] == {"known": 1.0, "unknown": 0.0}


def test_ready_lists_and_live_lists_equal_a_brute_force_ranking():
    from recsys_faust.ranking.active import ActiveModel
    from recsys_faust.popularity.trending import PopularityIndex
    from recsys_faust.profiles.profile import new_profile
    from recsys_faust.ranking.ranker import Ranker
    from recsys_faust.ranking.transition_index import TransitionIndex
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
        x = fold.user_vector(items, np.full(len(items), settings.weights.als_weight("view", None)))
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


def test_scoring_in_chunks_of_users_gives_the_whole_batch_result():
    """score_batch splits large batches into chunks of users (memory); every chunk boundary,
    including users with no seen items and a category filter, must give the same result."""
    from recsys_faust.ranking.scoring import BatchQuery, score_batch

    rng = np.random.default_rng(4)
    items, users = 90, 23
    fold = FoldIn(rng.normal(size=(items, 6)).astype(np.float32), regularization=1.0, alpha=10.0)
    lengths = rng.integers(1, 9, size=users)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hist = rng.integers(0, items, size=offsets[-1]).astype(np.int64)
    seen_lengths = np.where(np.arange(users) % 5 == 0, 0, lengths)  # some users exclude nothing
    seen_offsets = np.concatenate([[0], np.cumsum(seen_lengths)]).astype(np.int64)
    seen = np.concatenate([hist[offsets[u]:offsets[u] + seen_lengths[u]] for u in range(users)]).astype(np.int64)
    for allowed in (None, rng.random(items) < 0.5):
        q = BatchQuery(hist, rng.uniform(0.5, 2, size=len(hist)), offsets, seen, seen_offsets, 12, allowed)
        whole = score_batch(fold, q, chunk_users=users)
        for chunk in (1, 4, 7):
            part = score_batch(fold, q, chunk_users=chunk)
            # (BLAS may round a product of fewer rows in the last bit: scores to float32 precision)
            assert np.array_equal(part.best, whole.best) and np.allclose(part.scores, whole.scores, rtol=1e-6)
        for u in range(users):  # and the exclusions held: no seen item in a user's list
            assert not set(whole.best[u][whole.best[u] >= 0]) & set(seen[seen_offsets[u]:seen_offsets[u + 1]])
