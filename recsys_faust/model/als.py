"""ALS training with implicit, and the closed-form fold-in used on the hot path.

implicit's solver minimises sum c_ui (p_ui - x_u.y_i)^2 + reg (|x|^2 + |y|^2) with confidence
c_ui = alpha * r_ui for observed pairs (and 1 elsewhere). Folding a user in is that problem for
one row with Y fixed:  (Y'Y + sum_i (c_i - 1) y_i y_i' + reg I) x = sum_i c_i y_i, one small
solve per event, no retraining.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Iterable, Optional

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class ALSParams:
    factors: int = 128
    regularization: float = 1.0
    alpha: float = 10.0
    iterations: int = 15
    seed: int = 42

    def as_dict(self) -> dict:
        return asdict(self)


def train_als(user_items: sp.csr_matrix, params: ALSParams, *, show_progress: bool = False):
    """Fit implicit ALS on a users x items weight matrix; returns (user_factors, item_factors, seconds)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    # implicit parallelises over users itself; a threaded BLAS underneath only contends.
    with threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(
            factors=params.factors,
            regularization=params.regularization,
            alpha=params.alpha,
            iterations=params.iterations,
            random_state=params.seed,
            calculate_training_loss=False,
        )
        model.fit(user_items.tocsr().astype(np.float32), show_progress=show_progress)
    seconds = time.perf_counter() - started
    return (np.ascontiguousarray(model.user_factors, dtype=np.float32),
            np.ascontiguousarray(model.item_factors, dtype=np.float32), seconds)


class FoldIn:
    """User vectors from item factors (fixed), for users seen or not seen in training."""

    def __init__(self, item_factors: np.ndarray, *, regularization: float, alpha: float) -> None:
        self.Y = np.ascontiguousarray(item_factors, dtype=np.float32)
        self.YtY = (self.Y.T.astype(np.float64) @ self.Y.astype(np.float64))
        self.reg = regularization
        self.alpha = alpha
        self._eye = np.eye(self.Y.shape[1])

    def user_vector(self, items: np.ndarray, weights: np.ndarray) -> np.ndarray:
        if len(items) == 0:
            return np.zeros(self.Y.shape[1], dtype=np.float32)
        Yu = self.Y[items].astype(np.float64)
        c = self.alpha * np.asarray(weights, dtype=np.float64)
        A = self.YtY + (Yu.T * (c - 1.0)) @ Yu + self.reg * self._eye
        b = Yu.T @ c
        return np.linalg.solve(A, b).astype(np.float32)


def top_k(scores: np.ndarray, k: int, exclude: Optional[Iterable[int]] = None) -> np.ndarray:
    """Indices of the k best scores (descending), never one of ``exclude``."""
    scores = scores.copy() if exclude is not None else scores
    if exclude is not None:
        ex = np.fromiter(exclude, dtype=np.int64)
        if len(ex):
            scores[ex] = -np.inf
    k = min(k, len(scores))
    if k <= 0:
        return np.empty(0, dtype=np.int64)
    part = np.argpartition(-scores, k - 1)[:k]
    order = part[np.argsort(-scores[part], kind="stable")]
    return order[np.isfinite(scores[order])]
