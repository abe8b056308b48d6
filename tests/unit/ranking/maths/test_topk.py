import numpy as np

from recsys_faust.ranking.maths.topk import top_k, top_k_rows


def test_top_k_orders_and_excludes():
    s = np.array([0.1, 0.9, 0.5, 0.7])
    assert top_k(s, 2).tolist() == [1, 3]
    assert top_k(s, 3, [1]).tolist() == [3, 2, 0]


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


def _brute_top_k(row, k):
    order = np.lexsort((np.arange(len(row)), -row))  # best first, ties by lower index
    order = [i for i in order[:k] if np.isfinite(row[i])]
    return np.array(order, dtype=np.int64)
