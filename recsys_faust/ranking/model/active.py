"""The active ALS model of a worker (item factors, catalogue, similar items), switched atomically.

Scoring users against it is ``ranking/maths/scores.py``."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
import scipy.sparse as sp

from ..maths.ann import AnnConfig
from ..maths.foldin import FoldIn, row_norms
from ..items import answered_item
from .artifact import INDEX_FILE, ModelArtifact
from ...transitions.index import MAX_SUCCESSORS, TransitionCounts

if TYPE_CHECKING:
    from ..maths.ann import ItemIndex

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Catalogue:
    """Item index -> product id and category (object arrays: one fancy index per batch)."""

    item_ids: np.ndarray
    categories: np.ndarray


@dataclass(frozen=True)
class ScoringModel:
    """What scoring a micro-batch needs of a model: sent once per version to a scoring process."""

    version: str
    foldin: FoldIn
    catalogue: Catalogue
    transitions: Optional[sp.csr_matrix] = None  # shipped counts, capped (score_batch's ``shipped``)
    # Approximate top-k (ranking/maths/ann.py) for this catalogue, or None for the exact path. The
    # index itself is built where the model is scored (the scoring process), once per version.
    ann: Optional[AnnConfig] = None
    ann_file: Optional[str] = None  # the index train saved beside the model (read, not built)

    def ann_index(self, *, wait: bool = True) -> Optional["ItemIndex"]:
        """The model's HNSW index, read or built once in this process. An index saved beside
        the model is read at once (seconds even at a million items). One that must be built
        is, with ``wait=False`` (the scoring path), built on a thread while None comes back:
        batches are scored exactly meanwhile (slower, not wrong) rather than waiting minutes
        for a million-item build."""
        index = self.__dict__.get("_ann_index")
        if index is not None or not wait and self.__dict__.get("_ann_building"):
            return index
        if self.ann_file is not None and not self.__dict__.get("_ann_read_failed"):
            index = self._read_index()
            if index is not None:
                return index
        if wait:
            builder = self.__dict__.get("_ann_building")
            if builder is not None:
                builder.join()
            else:
                self._build_index()
            return self.__dict__["_ann_index"]
        builder = threading.Thread(target=self._build_index, name=f"hnsw-{self.version}", daemon=True)
        object.__setattr__(self, "_ann_building", builder)
        builder.start()
        return None

    def _read_index(self) -> Optional["ItemIndex"]:
        from ..maths.ann import ItemIndex

        started = time.perf_counter()
        try:
            index = ItemIndex(self.foldin.Y, self.ann or AnnConfig(), saved=self.ann_file)
        except Exception:  # noqa: BLE001 - an unreadable file costs a build, not the model
            log.exception("model %s: could not read %s; building the index instead", self.version, self.ann_file)
            object.__setattr__(self, "_ann_read_failed", True)
            return None
        object.__setattr__(self, "_ann_index", index)
        log.info("model %s: HNSW index of %d items read from %s in %.1f s", self.version, index.n_items,
                 self.ann_file, time.perf_counter() - started)
        return index

    def _build_index(self) -> None:
        from ..maths.ann import ItemIndex

        started = time.perf_counter()
        index = ItemIndex(self.foldin.Y, self.ann or AnnConfig())
        object.__setattr__(self, "_ann_index", index)
        log.info("model %s: HNSW index of %d items built in %.1f s", self.version, index.n_items,
                 time.perf_counter() - started)

    def __getstate__(self) -> dict:
        # The index (and its builder) are not sent: the receiving process builds its own.
        return {k: v for k, v in self.__dict__.items() if k not in ("_ann_index", "_ann_building")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


@dataclass
class ActiveModel:
    artifact: ModelArtifact
    foldin: FoldIn
    index: dict[str, int]
    categories: np.ndarray       # item index -> category ('' when unknown), object array
    item_ids: np.ndarray         # item index -> product id, object array (fast fancy indexing)
    # Row norms of the item factors, for similar items: cosine by implicit's top-k with
    # ``item_norms`` rather than a normalised copy (which would double a mapped model's memory).
    norms: np.ndarray
    created_at: float
    transitions: Optional[TransitionCounts] = None  # shipped with the model, capped like the stream's
    # The catalogue size from which lists are ranked on an HNSW index's candidates (ranking/maths/ann.py).
    ann_min_items: int = 2**62
    ann: AnnConfig = AnnConfig()

    @property
    def version(self) -> str:
        return self.artifact.version

    @property
    def scoring(self) -> ScoringModel:
        """The part a scoring process needs, built once: the same object (and so one pickled
        copy per child) for every batch scored against this model."""
        model = self.__dict__.get("_scoring")
        if model is None:
            model = self.__dict__["_scoring"] = ScoringModel(
                self.version, self.foldin, Catalogue(self.item_ids, self.categories),
                None if self.transitions is None else self.transitions.matrix,
                self.ann if len(self.item_ids) >= self.ann_min_items else None,
                self._saved_index())
        return model

    def _saved_index(self) -> Optional[str]:
        path = self.artifact.path
        return str(path / INDEX_FILE) if path is not None and (path / INDEX_FILE).exists() else None

    @classmethod
    def build(cls, artifact: ModelArtifact, created_at: float = 0.0,
              max_successors: int = MAX_SUCCESSORS) -> "ActiveModel":
        params = artifact.params or {}
        Y = artifact.item_factors
        norms = np.maximum(row_norms(Y), 1e-9)
        return cls(
            artifact=artifact,
            foldin=FoldIn(Y, regularization=float(params.get("regularization", 1.0)),
                          alpha=float(params.get("alpha", 10.0))),
            index={pid: i for i, pid in enumerate(artifact.item_ids)},
            categories=np.asarray([c or "" for c in artifact.item_category], dtype=object),
            item_ids=np.asarray(list(artifact.item_ids), dtype=object),
            norms=norms,
            created_at=created_at,
            transitions=None if artifact.transitions is None
            else TransitionCounts.capped(artifact.transitions, max_successors),
        )

    def similar(self, product_id: str, k: int) -> Optional[list[dict]]:
        """Cosine of the item factors, by implicit's own top-k: it measured faster than ours on a
        single row (113 against 127-162 us on the Amazon catalogue; benchmarks/against_implicit.py)."""
        from implicit.cpu.topk import topk

        i = self.index.get(product_id)
        if i is None:
            return None
        n = min(k + 1, len(self.artifact.item_ids))  # the item itself comes back too
        Y = self.foldin.Y
        query = (Y[i] / self.norms[i]).astype(np.float32)[None, :]
        ids, sims = topk(Y, query, n, item_norms=self.norms, num_threads=1)
        return [answered_item(self.artifact.item_ids[int(j)], round(float(s), 6))
                for j, s in zip(ids[0], sims[0]) if j != i and j >= 0 and np.isfinite(s)][:k]


class ModelHolder:
    """Holds the newest model; readers take one reference, so a switch is atomic for them."""

    def __init__(self, max_successors: int = MAX_SUCCESSORS, *, ann_min_items: int = 2**62,
                 ann: AnnConfig = AnnConfig()) -> None:
        self._active: Optional[ActiveModel] = None
        self._max_successors = max_successors
        self._ann = (ann_min_items, ann)
        self._lock = threading.Lock()

    def _build(self, artifact: ModelArtifact, created_at: float) -> ActiveModel:
        model = ActiveModel.build(artifact, created_at, self._max_successors)
        model.ann_min_items, model.ann = self._ann
        return model

    @property
    def active(self) -> Optional[ActiveModel]:
        return self._active

    def offer(self, artifact: ModelArtifact, created_at: float) -> bool:
        """Switch to ``artifact`` if it is newer than the active one."""
        with self._lock:
            cur = self._active
            if cur is not None and (created_at, artifact.version) <= (cur.created_at, cur.version):
                return False
            self._active = self._build(artifact, created_at)
        log.info("model %s active (%d items, %d factors)", artifact.version, len(artifact.item_ids), artifact.factors)
        return True

    def switch(self, artifact: ModelArtifact, created_at: float) -> None:
        """Serve ``artifact`` whatever its age: the registry chose it (a rollback included)."""
        model = self._build(artifact, created_at)
        with self._lock:
            self._active = model
        log.info("model %s active (%d items, %d factors), as amazon-model-updates chose",
                 artifact.version, len(artifact.item_ids), artifact.factors)

