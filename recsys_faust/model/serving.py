"""The active ALS model of a worker: fold-in, top-k and similar items, switched atomically."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Iterable, Optional

import numpy as np

from ..settings import EventWeights
from .als import FoldIn, top_k, top_k_rows
from .artifact import ModelArtifact

log = logging.getLogger(__name__)
STRATEGY_ALS = "als"


@dataclass
class ActiveModel:
    artifact: ModelArtifact
    foldin: FoldIn
    index: dict[str, int]
    categories: np.ndarray       # item index -> category ('' when unknown), object array
    item_ids: np.ndarray         # item index -> product id, object array (fast fancy indexing)
    unit_factors: np.ndarray     # rows normalised, for similar items
    created_at: float

    @property
    def version(self) -> str:
        return self.artifact.version

    @classmethod
    def build(cls, artifact: ModelArtifact, created_at: float = 0.0) -> "ActiveModel":
        params = artifact.params or {}
        Y = artifact.item_factors
        norms = np.linalg.norm(Y, axis=1, keepdims=True)
        return cls(
            artifact=artifact,
            foldin=FoldIn(Y, regularization=float(params.get("regularization", 1.0)),
                          alpha=float(params.get("alpha", 10.0))),
            index={pid: i for i, pid in enumerate(artifact.item_ids)},
            categories=np.asarray([c or "" for c in artifact.item_category], dtype=object),
            item_ids=np.asarray(list(artifact.item_ids), dtype=object),
            unit_factors=np.ascontiguousarray(Y / np.maximum(norms, 1e-9), dtype=np.float32),
            created_at=created_at,
        )

    def user_vector(self, interactions: Iterable[tuple[str, float]]) -> Optional[np.ndarray]:
        """Fold a user in from (product_id, weight) pairs; None when no item is known."""
        weights: dict[int, float] = {}
        for pid, w in interactions:
            i = self.index.get(pid)
            if i is not None:
                weights[i] = weights.get(i, 0.0) + w
        if not weights:
            return None
        items = np.fromiter(weights.keys(), dtype=np.int64)
        return self.foldin.user_vector(items, np.fromiter(weights.values(), dtype=np.float64))

    def recommend(self, vector: np.ndarray, n: int, *, seen: Iterable[str] = (),
                  category: Optional[str] = None) -> list[dict]:
        ids, scores, cats = self.recommend_many(vector[None, :], n, [seen], category=category)[0]
        return [{"product_id": i, "score": s, "category": c} for i, s, c in zip(ids, scores, cats)]

    def recommend_many(self, vectors: np.ndarray, n: int, seen: list[Iterable[str]], *,
                       category: Optional[str] = None) -> list[tuple[list, list, list]]:
        """Top-n for many users with one matrix product (the micro-batch path).

        Columns (product ids, scores, categories) per user: building 50 dicts per user cost
        more than the scoring, and the ready list is stored as columns anyway.
        """
        scores = vectors @ self.artifact.item_factors.T
        if category is not None:
            scores[:, self.categories != category] = -np.inf
        for row, items in enumerate(seen):
            idx = [self.index[p] for p in items if p in self.index]
            if idx:
                scores[row, idx] = -np.inf
        return [(self.item_ids[best].tolist(), np.round(vals.astype(np.float64), 6).tolist(),
                 self.categories[best].tolist())
                for best, vals in top_k_rows(scores, n)]

    def similar(self, product_id: str, k: int) -> Optional[list[dict]]:
        i = self.index.get(product_id)
        if i is None:
            return None
        sims = self.unit_factors @ self.unit_factors[i]
        best = top_k(sims, k, [i])
        return [{"product_id": self.artifact.item_ids[j], "score": round(float(sims[j]), 6)} for j in best]


class ModelHolder:
    """Holds the newest model; readers take one reference, so a switch is atomic for them."""

    def __init__(self) -> None:
        self._active: Optional[ActiveModel] = None
        self._lock = threading.Lock()

    @property
    def active(self) -> Optional[ActiveModel]:
        return self._active

    def offer(self, artifact: ModelArtifact, created_at: float) -> bool:
        """Switch to ``artifact`` if it is newer than the active one."""
        with self._lock:
            cur = self._active
            if cur is not None and (created_at, artifact.version) <= (cur.created_at, cur.version):
                return False
            self._active = ActiveModel.build(artifact, created_at)
        log.info("model %s active (%d items, %d factors)", artifact.version, len(artifact.item_ids), artifact.factors)
        return True


def interaction_weights(recent: list, weights: EventWeights) -> list[tuple[str, float]]:
    """The profile's recent interactions as (product_id, ALS weight) for fold-in."""
    return [(r[0], weights.als_weight(r[1], r[4] if len(r) > 4 else None)) for r in recent]
