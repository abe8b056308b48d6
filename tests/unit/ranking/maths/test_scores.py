import numpy as np

from recsys_faust.ranking.maths.foldin import FoldIn


def test_scoring_in_chunks_of_users_gives_the_whole_batch_result():
    """score_batch splits large batches into chunks of users (memory); every chunk boundary,
    including users with no seen items and a category filter, must give the same result."""
    from recsys_faust.ranking.maths.scores import BatchQuery, score_batch

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
