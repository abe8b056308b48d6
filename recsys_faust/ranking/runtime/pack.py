"""Profiles -> a micro-batch's packed query (``BatchQuery``): the one packing, wherever it runs.

The worker packs small batches and live lists itself (``Ranker.pack``); a busy worker's large
batches are packed in the scoring process, from the profiles' JSON and its copy of the
transition index (ranking/runtime/scorer.py, ``IndexMirror``). Both call ``pack_profiles`` with the
same inputs, so a list does not depend on where it was packed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ...profiles.profile import ROW_KIND, ROW_PRODUCT, ROW_RATING, Profile
from ...settings import EventWeights
from ..maths.scores import BatchQuery
from ...transitions.index import query_items

_EMPTY_I = np.zeros(0, dtype=np.int32)
_EMPTY_F = np.zeros(0, dtype=np.float32)

#: (item indices, counts) of a product's streamed successors in the model's catalogue.
ItemArrays = Callable[[str], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class PackSpec:
    """How a batch is packed, besides its profiles and the model (small: sent with each batch)."""

    weights: EventWeights
    n: int                          # list length
    blend: tuple[float, float]      # (ALS, transitions) weights


def pack_profiles(profiles: Sequence[Optional[Profile]], spec: PackSpec, *, index: dict[str, int],
                  shipped_indptr: Optional[np.ndarray], item_arrays: ItemArrays,
                  allowed: Optional[np.ndarray] = None) -> tuple[list[int], BatchQuery]:
    """The profiles the model can score (their positions) and their packed query.

    A profile is scored when the model knows one of its items (fold-in) or one of its latest
    day's items has successors (shipped with the model or streamed) in the catalogue.
    ``index``: product id -> item index of the model; ``shipped_indptr``: the row pointers of
    the counts shipped with it; ``allowed``: a category filter's mask over the catalogue.
    """
    weights, blend = spec.weights, spec.blend
    use_transitions = blend[1] > 0
    rows: list[int] = []
    items: list[int] = []
    conf: list[float] = []
    offsets = [0]
    seen: list[int] = []
    seen_offsets = [0]
    t_query: list[int] = []
    t_query_offsets = [0]
    t_items: list[np.ndarray] = []
    t_scores: list[np.ndarray] = []
    t_slot_offsets = [0]
    streamed = 0
    get = index.get
    # ALS weight per (kind, rating): a handful of pairs, computed once per batch.
    weight_of: dict[tuple[str, Any], float] = {}
    for pos, p in enumerate(profiles):
        recent = p["recent"] if p else None
        if not recent:
            continue
        merged: dict[int, float] = {}
        for r in recent:
            i = get(r[ROW_PRODUCT])
            if i is not None:
                key = (r[ROW_KIND], r[ROW_RATING])
                w = weight_of.get(key)
                if w is None:
                    w = weight_of[key] = weights.als_weight(*key)
                merged[i] = merged.get(i, 0.0) + w
        slots = len(t_query)
        if use_transitions:
            for pid in query_items(recent):
                i = get(pid)
                has = shipped_indptr is not None and i is not None and shipped_indptr[i + 1] > shipped_indptr[i]
                idx, counts = item_arrays(pid)
                if len(idx):
                    t_items.append(idx)
                    t_scores.append(counts)
                    streamed += len(idx)
                    has = True
                if has:
                    t_query.append(-1 if i is None else i)
                    t_slot_offsets.append(streamed)
        if not merged and len(t_query) == slots:
            continue
        rows.append(pos)
        items.extend(merged)
        conf.extend(merged.values())
        offsets.append(len(items))
        # Every recent item the model knows is in ``merged``: exactly the seen items to mask.
        seen.extend(merged)
        seen_offsets.append(len(seen))
        t_query_offsets.append(len(t_query))
    has_t = bool(t_query)
    q = BatchQuery(np.asarray(items, dtype=np.int64), np.asarray(conf, dtype=np.float64),
                   np.asarray(offsets, dtype=np.int64), np.asarray(seen, dtype=np.int64),
                   np.asarray(seen_offsets, dtype=np.int64), spec.n, allowed,
                   trans_query=np.asarray(t_query, dtype=np.int64) if has_t else None,
                   trans_query_offsets=np.asarray(t_query_offsets, dtype=np.int64) if has_t else None,
                   trans_items=np.concatenate(t_items) if t_items else (_EMPTY_I if has_t else None),
                   trans_scores=np.concatenate(t_scores) if t_scores else (_EMPTY_F if has_t else None),
                   trans_slot_offsets=np.asarray(t_slot_offsets, dtype=np.int64) if has_t else None,
                   blend_weights=blend)
    return rows, q
