"""transitions/counts.py: the pair rule, the offline counts, scores, z-scores and the blend."""

import numpy as np
import scipy.sparse as sp

from recsys_faust.transitions.counts import (
    DAY_S, TransitionParams, blend, counts_from_histories, latest_day_items, pairs_for_event, score_matrix,
    zscore_rows,
)

D = DAY_S


def test_same_day_pairs_both_ways_and_previous_day_forwards_only():
    history = [(1, 0.0), (2, 2 * D + 5), (3, 2 * D + 9)]  # day 0: item 1; day 2: items 2, 3
    pairs = pairs_for_event(history, 4, 2 * D + 100)        # item 4 on day 2
    # same day both ways; day 0 is the active day before day 2, so item 1 leads to item 4
    assert sorted(pairs) == [(1, 4), (2, 4), (3, 4), (4, 2), (4, 3)]
    later = pairs_for_event(history, 5, 7 * D)              # a later day: day 2 is the previous one
    assert sorted(later) == [(2, 5), (3, 5)]
    assert pairs_for_event([], 9, 0.0) == []
    assert pairs_for_event([(9, 0.0)], 9, 10.0) == []       # an item never pairs with itself


def test_offline_counts_equal_the_events_folded_one_by_one():
    rng = np.random.default_rng(7)
    n, n_items = 400, 25
    users = rng.integers(0, 30, n)
    ts = np.sort(rng.integers(0, 20 * D, n)).astype(np.float64)
    items = rng.integers(0, n_items, n)
    counts = counts_from_histories(users, items, ts, n_items).toarray()
    folded = np.zeros((n_items, n_items))
    histories: dict[int, list] = {}
    for u, i, t in zip(users.tolist(), items.tolist(), ts.tolist()):
        h = histories.setdefault(u, [])
        for a, b in pairs_for_event(h, i, t):
            folded[a, b] += 1
        h.append((i, t))
    np.testing.assert_array_equal(counts, folded)
    assert counts.sum() > 0


def test_scores_are_successors_plus_weighted_predecessors():
    counts = sp.csr_matrix(np.array([[0, 3, 0], [0, 0, 2], [1, 0, 0]], dtype=np.float32))
    q = sp.csr_matrix(np.array([[1, 0, 0]], dtype=np.float32))   # a user whose latest day holds item 0
    s = score_matrix(q, counts, TransitionParams(reverse_weight=0.5))
    np.testing.assert_allclose(s, [[0.0, 3.0, 0.5]])             # 0 -> 1 three times; 2 -> 0 once
    assert latest_day_items([(5, 0.0), (6, 3 * D), (7, 3 * D + 1)]) == [6, 7]
    assert latest_day_items([]) == []


def test_zscore_rows_ignores_excluded_items_and_flat_rows():
    x = np.array([[1.0, 2.0, 3.0, -np.inf], [4.0, 4.0, 4.0, 4.0]])
    z = zscore_rows(x)
    np.testing.assert_allclose(z[0, :3], [-1.224745, 0.0, 1.224745], rtol=1e-5)
    assert z[0, 3] == -np.inf
    np.testing.assert_array_equal(z[1], 0.0)


def test_blend_weights_move_the_ranking():
    als = np.array([[3.0, 2.0, 1.0, 0.0]])
    trans = np.array([[0.0, 0.0, 0.0, 9.0]])
    only_als = blend(als, trans, als_weight=1.0, transitions_weight=0.0)
    mostly_trans = blend(als, trans, als_weight=1.0, transitions_weight=3.0)
    assert int(np.argmax(only_als)) == 0
    assert int(np.argmax(mostly_trans)) == 3
