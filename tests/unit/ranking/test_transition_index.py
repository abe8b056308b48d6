"""ranking/transition_index.py: stream entries (replays, the bound), the merged index, the
shipped counts, and the blend in score_batch against the offline blend."""

import numpy as np
import scipy.sparse as sp

from recsys_faust.ranking.active import ActiveModel, ModelHolder
from recsys_faust.ranking.artifact import ModelArtifact
from recsys_faust.ranking.foldin import FoldIn
from recsys_faust.ranking.scoring import BatchQuery, score_batch
from recsys_faust.ranking.transition_index import (
    TransitionCounts, TransitionIndex, apply_successors, entry_key, new_entry, query_items, successor_updates,
)
from recsys_faust.ranking.transitions import DAY_S, blend, counts_from_histories

D = DAY_S


def test_a_replayed_source_changes_nothing_and_offsets_are_per_topic_partition():
    e = new_entry("a")
    assert apply_successors(e, ["b", "c"], ("amazon-views", 0, 5))
    assert not apply_successors(e, ["b", "c"], ("amazon-views", 0, 5))   # the same record again
    assert not apply_successors(e, ["b"], ("amazon-views", 0, 4))        # an older one
    assert apply_successors(e, ["b"], ("amazon-purchases", 0, 1))        # another topic's offsets
    assert e["next"] == {"c": 1, "b": 2}  # b counted last: it is the most recent key


def test_the_bound_drops_the_weakest_and_among_equals_the_least_recent():
    e = new_entry("a")
    for n, item in enumerate(["x", "y", "z", "x"]):
        apply_successors(e, [item], ("t", 0, n), max_successors=3)
    assert e["next"] == {"y": 1, "z": 1, "x": 2}
    apply_successors(e, ["w"], ("t", 0, 10), max_successors=3)  # y is the oldest of the 1s
    assert e["next"] == {"z": 1, "x": 2, "w": 1}
    assert len(e["next"]) == 3


def test_profile_rows_folded_event_by_event_give_the_offline_counts():
    """The stream's rule (successor_updates over the profile's recent rows) and the offline
    counts (counts_from_histories) are one rule: same counts on the same histories."""
    rng = np.random.default_rng(3)
    n, n_items = 300, 20
    users = rng.integers(0, 12, n)
    ts = np.sort(rng.integers(0, 15 * D, n)).astype(np.float64)
    items = rng.integers(0, n_items, n)
    offline = counts_from_histories(users, items, ts, n_items).toarray()
    entries: dict[str, dict] = {}
    recent: dict[int, list] = {}
    for offset, (u, i, t) in enumerate(zip(users.tolist(), items.tolist(), ts.tolist())):
        rows = recent.setdefault(u, [])
        for src, dsts in successor_updates(rows, f"p{i}", t).items():
            e = entries.setdefault(entry_key(src, u % 3), new_entry(src))
            apply_successors(e, dsts, ("t", u % 3, offset), max_successors=10_000)
        rows.append([f"p{i}", "purchase", t, None, None])
    index = TransitionIndex()
    index.put_many(entries.items())
    streamed = np.zeros((n_items, n_items))
    for a in range(n_items):
        for b, c in index.successors(f"p{a}").items():
            streamed[a, int(b[1:])] = c
    assert np.array_equal(streamed, offline)
    assert index.pairs == sum(len(e["next"]) for e in entries.values())


def test_query_items_are_the_latest_active_day():
    rows = [["a", "view", 1.0, None, None], ["b", "view", 2 * D + 1, None, None], ["c", "view", 2 * D + 7, None, None]]
    assert query_items(rows) == ["b", "c"]
    assert query_items([]) == []


def _model(n_items: int, factors: int, transitions=None, seed: int = 0) -> ActiveModel:
    rng = np.random.default_rng(seed)
    art = ModelArtifact("m1", [f"p{i}" for i in range(n_items)], rng.normal(size=(n_items, factors)).astype(np.float32),
                        item_category=[f"c{i % 3}" for i in range(n_items)], params={}, manifest={},
                        transitions=transitions)
    return ActiveModel.build(art, 1.0)


def test_rows_take_the_larger_of_shipped_and_streamed_per_pair_and_follow_changes():
    shipped = sp.csr_matrix(np.array([[0, 3, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32))
    model = _model(4, 2, shipped)
    index = TransitionIndex()
    index.put("p0@0", {"item": "p0", "next": {"p1": 1, "p3": 2, "gone": 9}, "applied": {}})
    index.put("p0@1", {"item": "p0", "next": {"p2": 1, "p3": 1}, "applied": {}})
    idx, counts = index.rows("p0", model)
    got = dict(zip(idx.tolist(), counts.tolist()))
    # p1: shipped 3 > streamed 1; p2: shipped 1, streamed 1; p3: streamed 2 + 1 over partitions;
    # "gone" is not in the model's catalogue
    assert got == {1: 3.0, 2: 1.0, 3: 3.0}
    index.put("p0@1", {"item": "p0", "next": {"p2": 5}, "applied": {}})  # a newer entry replaces the old
    got = dict(zip(*(a.tolist() for a in index.rows("p0", model))))
    assert got == {1: 3.0, 2: 5.0, 3: 2.0}
    assert index.next_items("p0", model, 3) == [("gone", 9.0), ("p2", 5.0), ("p1", 3.0)]
    index.put("p0@0", None)
    index.put("p0@1", None)
    assert not index.knows("p0") and index.pairs == 0
    assert dict(zip(*(a.tolist() for a in index.rows("p0", model)))) == {1: 3.0, 2: 1.0}


def test_capped_counts_keep_each_rows_largest():
    m = sp.csr_matrix(np.array([[0, 5, 1, 3, 3], [1, 0, 0, 0, 0], [0] * 5, [0] * 5, [0] * 5], dtype=np.float32))
    capped = TransitionCounts.capped(m, 2).matrix.toarray()
    assert capped[0].tolist() == [0, 5, 0, 3, 0]  # 5, then the tie of 3s broken by lower index
    assert capped[1].tolist() == [1, 0, 0, 0, 0]


def test_the_streamed_blend_equals_the_offline_blend_of_dense_matrices():
    """score_batch blends without a dense transitions matrix; its lists must be the top of the
    offline ``transitions.blend`` (z-scores over the whole catalogue), seen items removed."""
    rng = np.random.default_rng(5)
    n_items, f, users = 70, 5, 9
    Y = rng.normal(size=(n_items, f)).astype(np.float32)
    fold = FoldIn(Y, regularization=1.0, alpha=10.0)
    hist = [rng.choice(n_items, size=rng.integers(1, 6), replace=False) for _ in range(users)]
    hist[3] = np.zeros(0, dtype=np.int64)  # a user the model cannot fold in: transitions only
    trans = [(rng.integers(0, n_items, size=rng.integers(0, 12)), rng.integers(1, 5, size=12)) for _ in range(users)]
    trans = [(i, c[:len(i)].astype(np.float64)) for i, c in trans]
    trans[3] = (np.array([1, 1, 4]), np.array([2.0, 1.0, 3.0]))  # a repeated item: counts add
    trans[5] = (np.zeros(0, np.int64), np.zeros(0))            # ALS only
    offsets = np.concatenate([[0], np.cumsum([len(h) for h in hist])]).astype(np.int64)
    t_offsets = np.concatenate([[0], np.cumsum([len(i) for i, _ in trans])]).astype(np.int64)
    items = np.concatenate(hist).astype(np.int64)
    q = BatchQuery(items, np.ones(len(items)), offsets, items, offsets, 10,
                   trans_items=np.concatenate([i for i, _ in trans]).astype(np.int64),
                   trans_scores=np.concatenate([c for _, c in trans]), trans_offsets=t_offsets,
                   blend_weights=(1.0, 0.75))
    result = score_batch(fold, q)
    vectors = fold.user_vectors(items, np.ones(len(items)), offsets)
    dense_t = np.zeros((users, n_items))
    for u, (i, c) in enumerate(trans):
        np.add.at(dense_t[u], i, c)
    expected = blend(vectors @ Y.T, dense_t, als_weight=1.0, transitions_weight=0.75)
    for u in range(users):
        if not len(trans[u][0]):
            expected[u] = vectors[u] @ Y.T  # no candidates: plain ALS scores
        expected[u, hist[u]] = -np.inf
        order = np.lexsort((np.arange(n_items), -expected[u]))[:10]
        assert result.best[u].tolist() == order.tolist(), u
        assert np.allclose(result.scores[u], expected[u, order], atol=1e-4)
    assert q.has_transitions().tolist() == [len(i) > 0 for i, _ in trans]


def test_a_model_holder_caps_shipped_counts_like_the_stream():
    counts = sp.csr_matrix(np.triu(np.ones((6, 6), dtype=np.float32), 1))
    holder = ModelHolder(max_successors=2)
    art = _model(6, 2).artifact
    art.transitions = counts
    holder.offer(art, 2.0)
    assert np.diff(holder.active.transitions.matrix.indptr).max() == 2
