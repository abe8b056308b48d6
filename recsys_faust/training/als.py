"""ALS training with implicit (the fold-in that scores users online is ``ranking/maths/foldin.py``).

implicit's solver minimises sum c_ui (p_ui - x_u.y_i)^2 + reg (|x|^2 + |y|^2) with confidence
c_ui = alpha * r_ui for observed pairs (and 1 elsewhere).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from ..settings import default


@dataclass(frozen=True)
class ALSParams:
    factors: int = default("als_factors")
    regularization: float = default("als_regularization")
    alpha: float = default("als_alpha")
    iterations: int = default("als_iterations")
    seed: int = default("als_seed")

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
