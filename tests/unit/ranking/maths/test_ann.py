"""The approximate path against the exact one on the same queries: where the index finds the
ALS-best items (a small catalogue and a wide search: it does), the lists and their blended
scores are the exact path's; seen items never appear; the score moments are exact."""

import json

import numpy as np
import scipy.sparse as sp

from recsys_faust.ranking.maths.ann import AnnConfig, ItemIndex, score_batch_ann
from recsys_faust.ranking.maths.foldin import FoldIn
from recsys_faust.ranking.maths.scores import BatchQuery, score_batch


def _query(rng, items, users, *, transitions: bool, n=20, zero_users=()):
    lengths = rng.integers(1, 9, size=users)
    for u in zero_users:
        lengths[u] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    hist = rng.integers(0, items, size=offsets[-1]).astype(np.int64)
    seen_offsets = offsets.copy()
    seen = hist.copy()
    kw = {}
    if transitions:
        slots = rng.integers(0, 3, size=users)
        for u in zero_users:
            slots[u] = 2
        q_off = np.concatenate([[0], np.cumsum(slots)]).astype(np.int64)
        per_slot = rng.integers(1, 12, size=q_off[-1])
        s_off = np.concatenate([[0], np.cumsum(per_slot)]).astype(np.int64)
        kw = dict(trans_query=rng.integers(-1, items, size=q_off[-1]).astype(np.int64), trans_query_offsets=q_off,
                  trans_items=rng.integers(0, items, size=s_off[-1]).astype(np.int32),
                  trans_scores=rng.integers(1, 6, size=s_off[-1]).astype(np.float32), trans_slot_offsets=s_off)
    return BatchQuery(hist, rng.uniform(0.5, 2, size=len(hist)), offsets, seen, seen_offsets, n, None,
                      blend_weights=(1.0, 0.75), **kw)


def test_the_approximate_lists_equal_the_exact_ones_when_the_index_finds_the_best_items():
    rng = np.random.default_rng(9)
    items, users = 2000, 40
    fold = FoldIn(rng.normal(size=(items, 8)).astype(np.float32), regularization=1.0, alpha=10.0)
    index = ItemIndex(fold.Y, AnnConfig(ef_construction=200, ef_search=400, margin=40))
    shipped = sp.random(items, items, density=0.002, format="csr", random_state=3, dtype=np.float32) * 5
    for transitions in (False, True):
        q = _query(rng, items, users, transitions=transitions)
        exact = score_batch(fold, q, shipped=shipped)
        approx = score_batch_ann(fold, q, index, shipped=shipped)
        assert np.array_equal(approx.best, exact.best), transitions
        assert np.allclose(approx.scores, exact.scores, rtol=1e-4, atol=1e-4)
        for u in range(users):
            assert not set(approx.best[u].tolist()) & set(q.seen[q.seen_offsets[u]:q.seen_offsets[u + 1]].tolist())


def test_a_user_the_model_cannot_fold_in_is_ranked_by_transitions_then_the_lowest_indices():
    rng = np.random.default_rng(2)
    items = 500
    fold = FoldIn(rng.normal(size=(items, 8)).astype(np.float32), regularization=1.0, alpha=10.0)
    index = ItemIndex(fold.Y, AnnConfig(ef_search=200))
    q = _query(rng, items, 6, transitions=True, zero_users=(0, 3))
    exact = score_batch(fold, q)
    approx = score_batch_ann(fold, q, index)
    assert np.array_equal(approx.best[[0, 3]], exact.best[[0, 3]])


def test_score_moments_are_the_mean_and_deviation_over_every_item():
    rng = np.random.default_rng(5)
    Y = rng.normal(size=(3000, 16)).astype(np.float32)
    index = ItemIndex(Y)
    v = rng.normal(size=(4, 16)).astype(np.float32)
    mean, std = index.score_moments(v)
    full = v.astype(np.float64) @ Y.T.astype(np.float64)
    assert np.allclose(mean, full.mean(axis=1)) and np.allclose(std, full.std(axis=1))


def test_a_large_catalogue_is_scored_on_the_index_in_any_process_and_small_ones_exactly():
    import pickle

    from recsys_faust.ranking.model.active import ModelHolder
    from recsys_faust.ranking.model.artifact import ModelArtifact
    from recsys_faust.ranking.runtime.ready_values import score_values

    rng = np.random.default_rng(1)
    items = 600
    artifact = ModelArtifact("big", [f"p{i}" for i in range(items)], rng.normal(size=(items, 8)).astype(np.float32),
                             item_category=["c"] * items)
    holder = ModelHolder(ann_min_items=500, ann=AnnConfig(ef_search=300, margin=40))
    holder.offer(artifact, 1.0)
    scoring = holder.active.scoring
    assert scoring.ann is not None and scoring.ann.ef_search == 300
    small = ModelHolder(ann_min_items=601)
    small.offer(artifact, 1.0)
    assert small.active.scoring.ann is None
    q = _query(rng, items, 10, transitions=True)
    exact = score_values(small.active.scoring, q, 5.0)

    def same(values) -> bool:  # the same items; scores equal but for float32 rounding
        for a, b in zip(map(json.loads, values.lists), map(json.loads, exact.lists)):
            assert a["ids"] == b["ids"] and np.allclose(a["scores"], b["scores"], rtol=1e-4)
        return len(values.lists) == len(exact.lists) == 10

    # the first batch starts the build on a thread and is scored exactly; later ones use the index
    assert same(score_values(scoring, q, 5.0))
    assert scoring.ann_index(wait=True) is scoring.ann_index(wait=False) is not None
    assert same(score_values(scoring, q, 5.0))
    # sent to a scoring process without its index, which the receiver builds for itself
    copy = pickle.loads(pickle.dumps(scoring))
    assert "_ann_index" not in copy.__dict__ and "_ann_building" not in copy.__dict__
    assert same(score_values(copy, q, 5.0))
    copy.ann_index(wait=True)
    assert same(score_values(copy, q, 5.0))


def test_the_index_train_saves_is_read_by_the_scoring_side_not_built_again(tmp_path, monkeypatch):
    """A large model's version directory carries its HNSW index (artifact.save_index): the
    scoring process reads it, and its searches are the built index's."""
    import pickle

    import faiss

    from recsys_faust.ranking.model import artifact as art
    from recsys_faust.ranking.model.active import ModelHolder

    rng = np.random.default_rng(4)
    n = 3_000
    a = art.ModelArtifact("big", [f"p{i}" for i in range(n)], rng.normal(size=(n, 16)).astype(np.float32),
                          item_category=[None] * n)
    path = art.save(a, tmp_path)
    art.save_index(path, a.item_factors, threads=1)
    holder = ModelHolder(ann_min_items=1_000, ann=AnnConfig(ef_search=200))
    holder.offer(art.load(path, mmap=True), 1.0)
    scoring = pickle.loads(pickle.dumps(holder.active.scoring))  # as the scoring process receives it
    assert scoring.ann_file == str(path / art.INDEX_FILE)

    def no_build(*_a, **_k):
        raise AssertionError("the index was built again")

    monkeypatch.setattr(faiss, "IndexHNSWSQ", no_build)
    index = scoring.ann_index()
    assert index.n_items == n and index.index.hnsw.efSearch == 200
    monkeypatch.undo()
    built = ItemIndex(a.item_factors, AnnConfig(ef_search=200, build_threads=1))
    q = rng.normal(size=(10, 16)).astype(np.float32)
    exact = np.argsort(-(q @ a.item_factors.T), axis=1)[:, :20]
    for idx in (index, built):
        found = idx.search(q, 20)
        assert np.mean([len(set(found[u]) & set(exact[u])) / 20 for u in range(10)]) >= 0.95
    # a model without a saved index (inline on the topic) builds its own
    holder.offer(art.ModelArtifact("small", a.item_ids, a.item_factors, item_category=a.item_category), 2.0)
    assert holder.active.scoring.ann_file is None and holder.active.scoring.ann_index().n_items == n


def test_an_unreadable_saved_index_costs_a_build_not_the_model(tmp_path):
    from recsys_faust.ranking.model import artifact as art
    from recsys_faust.ranking.model.active import ModelHolder

    rng = np.random.default_rng(5)
    n = 1_500
    a = art.ModelArtifact("big", [f"p{i}" for i in range(n)], rng.normal(size=(n, 8)).astype(np.float32),
                          item_category=[None] * n)
    path = art.save(a, tmp_path)
    (path / art.INDEX_FILE).write_bytes(b"not a faiss index")
    holder = ModelHolder(ann_min_items=1_000, ann=AnnConfig(build_threads=1))
    holder.offer(art.load(path, mmap=True), 1.0)
    scoring = holder.active.scoring
    assert scoring.ann_file is not None
    assert scoring.ann_index(wait=False) is None  # the read failed: a build started on a thread
    index = scoring.ann_index(wait=True)
    assert index is not None and index.n_items == n
