"""Our hand-written maths against implicit's own routines, on the same model and the same users.

Fold-in, top-k and similar items are written here although implicit ships
``recalculate_user``, ``implicit.cpu.topk.topk`` and ``similar_items``: each is kept only where
it is measurably faster or does what implicit cannot (docs/benchmarks.md says which). Both sides run
on one thread (``threadpool_limits(1)`` for BLAS, ``num_threads=1`` for implicit's own loops),
as a worker's scoring process does.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np
import scipy.sparse as sp


def _per_call(fn: Callable[[Any], Any], inputs: list[Any], rounds: int = 3) -> float:
    """Seconds per call, the best of ``rounds`` passes over ``inputs``."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for x in inputs:
            fn(x)
        best = min(best, (time.perf_counter() - t0) / len(inputs))
    return best


def compare(matrix: sp.csr_matrix, *, factors: int = 64, users: int = 1000, k: int = 50,
            seed: int = 0) -> list[tuple[str, float, float, str]]:
    """(what, ours s/call, implicit's s/call, note) for fold-in, top-k and similar items."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.topk import topk as implicit_topk
    from threadpoolctl import threadpool_limits

    from recsys_faust.ranking.maths.foldin import FoldIn
    from recsys_faust.ranking.maths.topk import top_k, top_k_rows

    matrix = matrix.tocsr().astype(np.float32)
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=factors, regularization=1.0, alpha=10.0, iterations=5,
                                        random_state=seed, num_threads=1)
        model.fit(matrix, show_progress=False)
        Y = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        fold = FoldIn(Y, regularization=1.0, alpha=10.0)
        rng = np.random.default_rng(seed)
        picked = [matrix[int(u)] for u in rng.choice(matrix.shape[0], size=users, replace=False)]
        picked = [row for row in picked if row.nnz] or picked

        ours_vec = [fold.user_vector(row.indices, row.data) for row in picked]
        theirs_vec = [np.asarray(model.recalculate_user(0, row)).ravel() for row in picked]
        rel = max(float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-9)) for a, b in zip(ours_vec, theirs_vec))
        rows = [("fold-in, one user", _per_call(lambda r: fold.user_vector(r.indices, r.data), picked),
                 _per_call(lambda r: model.recalculate_user(0, r), picked),
                 f"the same normal equations (batched with Woodbury in the scoring process); "
                 f"largest relative difference {rel:.1e}")]

        queries = np.stack(ours_vec).astype(np.float32)
        ours_top = lambda q: top_k_rows((q[None, :] @ Y.T), k)  # noqa: E731 - the product and the selection
        theirs_top = lambda q: implicit_topk(Y, q[None, :], k, num_threads=1)  # noqa: E731
        same = np.mean([set(ours_top(q)[0][0].tolist()) == set(theirs_top(q)[0][0].tolist()) for q in queries[:200]])
        rows.append((f"scores + top-{k}, one user", _per_call(ours_top, list(queries)),
                     _per_call(theirs_top, list(queries)), f"same {k} items for {same:.0%} of users"))
        batch = queries[:200]
        rows.append((f"scores + top-{k}, 200 users at once", _per_call(lambda b: top_k_rows(b @ Y.T, k), [batch]) / 200,
                     _per_call(lambda b: implicit_topk(Y, b, k, num_threads=1), [batch]) / 200,
                     "a micro-batch, as the scoring process ranks it; per user"))

        unit = Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-9)
        items = [int(i) for i in rng.choice(Y.shape[0], size=min(users, Y.shape[0]), replace=False)]
        ours_sim = lambda i: top_k(unit @ unit[i], 10, [i])  # noqa: E731
        theirs_sim = lambda i: model.similar_items(i, N=11)  # noqa: E731 - implicit's includes the item itself
        agree = np.mean([set(ours_sim(i).tolist()) == set(theirs_sim(i)[0].tolist()) - {i} for i in items[:200]])
        rows.append(("similar items, top 10", _per_call(ours_sim, items), _per_call(theirs_sim, items),
                     f"cosine of item factors both; same 10 items for {agree:.0%} of items; "
                     f"the similar route now calls implicit's top-k"))
    return rows
