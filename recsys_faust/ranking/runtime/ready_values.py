"""The values a micro-batch stores per scored user: the ready list and the folded-in vector.

Built from a ``BatchResult`` and the model's catalogue, and encoded to the bytes the tables
store, by the scoring process (ranking/runtime/scorer.py): turning item indices into product ids and
encoding two JSON values per user was 5% of a busy worker's event loop, and the scoring
process has a core that is mostly idle. Pure (NumPy and orjson, no Faust), so it runs the same
in the child, on a thread or inline.

Formats (JSON objects):
- ``recommendations``: ``{"ids": [...], "scores": [...], "categories": [...], "strategy",
  "model_version", "generated_at"}``, the ranked list as columns.
- ``user_factors``: ``{"model_version": "...", "f32": "<base64>"}``, the vector as
  little-endian float32 (344 characters at 64 factors instead of about 650 as a JSON list);
  ``factor_vector`` reads it back.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import orjson

from ..maths.scores import BatchQuery, BatchResult, score_batch
from ..model.active import Catalogue, ScoringModel
from ..strategies import STRATEGY_ALS, STRATEGY_BLEND, STRATEGY_TRANSITIONS

Columns = tuple[list, list, list]  # a ranked list as (product ids, scores, categories)


@dataclass(frozen=True)
class ScoredValues:
    """Encoded values per scored row of a batch, in the rows' order."""

    lists: list[bytes]
    factors: list[Optional[bytes]]  # None for a row the model could not fold in (transitions only)


def ready_entry(columns: Columns, strategy: str, model_version: str, generated_at: float) -> dict[str, Any]:
    """The value stored in the recommendations table for one user: the list as columns."""
    ids, scores, categories = columns
    return {
        "ids": ids,
        "scores": scores,
        "categories": categories,
        "strategy": strategy,
        "model_version": model_version,
        "generated_at": generated_at,
    }


def factor_entry(model_version: str, vector: np.ndarray) -> dict[str, str]:
    """The value stored in the user_factors table for one user."""
    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
    return {"model_version": model_version, "f32": base64.b64encode(data).decode("ascii")}


def factor_vector(value: dict[str, Any]) -> np.ndarray:
    """The vector of a user_factors value."""
    return np.frombuffer(base64.b64decode(value["f32"]), dtype="<f4").astype(np.float32)


def columns_of(catalogue: Catalogue, result: BatchResult) -> list[Columns]:
    """The ranked list of every row of ``result`` as columns.

    Ids, categories and scores are converted for the whole batch at once (one fancy index and
    one ``tolist`` each); only rows shorter than the list are sliced.
    """
    best = result.best
    found = best >= 0
    counts = found.sum(axis=1).tolist()
    safe = np.where(found, best, 0)
    ids = catalogue.item_ids[safe].tolist()
    cats = catalogue.categories[safe].tolist()
    scores = np.round(result.scores.astype(np.float64), 6).tolist()
    width = best.shape[1]
    out: list[Columns] = []
    for r, k in enumerate(counts):
        if k < width:
            out.append((ids[r][:k], scores[r][:k], cats[r][:k]))
        else:
            out.append((ids[r], scores[r], cats[r]))
    return out


def row_strategies(query: BatchQuery) -> list[str]:
    """The strategy of each row of a scored batch: which of the two signals it had."""
    names = {(True, True): STRATEGY_BLEND, (True, False): STRATEGY_ALS, (False, True): STRATEGY_TRANSITIONS}
    return [names[pair] for pair in zip(query.has_als().tolist(), query.has_transitions().tolist())]


def encode_scored(model: ScoringModel, query: BatchQuery, result: BatchResult,
                  generated_at: float) -> ScoredValues:
    """Every row's ready list and vector, encoded as the tables store them.

    orjson directly, not ``kafka.codecs.dumps_json`` (which imports Faust, a second of start-up
    in the scoring process): for these plain values both write the same bytes (tested).
    """
    dumps, version = orjson.dumps, model.version
    lists = [dumps(ready_entry(columns, strategy, version, generated_at))
             for columns, strategy in zip(columns_of(model.catalogue, result), row_strategies(query))]
    factors = [dumps(factor_entry(version, vector)) if has else None
               for vector, has in zip(result.vectors, query.has_als().tolist())]
    return ScoredValues(lists, factors)


def score_values(model: ScoringModel, query: BatchQuery, generated_at: float) -> ScoredValues:
    """A micro-batch's scoring, as a scorer runs it: fold-in, blend, top-k, values encoded."""
    return encode_scored(model, query, score_model(model, query), generated_at)


def score_model(model: ScoringModel, query: BatchQuery) -> BatchResult:
    """The batch scored exactly, or on the model's HNSW candidates when its catalogue is large
    enough (ranking/maths/ann.py), its index is built, and no category filter applies."""
    if model.ann is not None and query.allowed is None:
        index = model.ann_index(wait=False)  # None while it is being built: exact meanwhile
        if index is not None:
            from ..maths.ann import score_batch_ann

            return score_batch_ann(model.foldin, query, index, shipped=model.transitions)
    return score_batch(model.foldin, query, shipped=model.transitions)
