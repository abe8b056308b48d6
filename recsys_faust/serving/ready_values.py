"""The values a micro-batch stores per scored user: the ready list and the folded-in vector.

Built from a ``BatchResult`` and the model's catalogue, and encoded to the bytes the tables
store, by the scoring process (model/scorer.py): turning item indices into product ids and
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

from ..model.scoring import BatchQuery, BatchResult, score_batch
from ..model.serving import STRATEGY_ALS, Catalogue, ScoringModel

Columns = tuple[list, list, list]  # a ranked list as (product ids, scores, categories)


@dataclass(frozen=True)
class ScoredValues:
    """Encoded values per scored row of a batch, in the rows' order."""

    lists: list[bytes]
    factors: list[bytes]


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


def factor_vector(value: dict[str, Any]) -> Optional[np.ndarray]:
    """The vector of a user_factors value (either format ever written), None if it has none."""
    if "f32" in value:
        return np.frombuffer(base64.b64decode(value["f32"]), dtype="<f4").astype(np.float32)
    if "vector" in value:  # the earlier format: a JSON list
        return np.asarray(value["vector"], dtype=np.float32)
    return None


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


def encode_scored(model: ScoringModel, result: BatchResult, generated_at: float) -> ScoredValues:
    """Every row's ready list and vector, encoded as the tables store them.

    orjson directly, not ``kafka.codecs.dumps_json`` (which imports Faust, a second of start-up
    in the scoring process): for these plain values both write the same bytes (tested).
    """
    dumps, version = orjson.dumps, model.version
    lists = [dumps(ready_entry(columns, STRATEGY_ALS, version, generated_at))
             for columns in columns_of(model.catalogue, result)]
    factors = [dumps(factor_entry(version, vector)) for vector in result.vectors]
    return ScoredValues(lists, factors)


def score_values(model: ScoringModel, query: BatchQuery, generated_at: float) -> ScoredValues:
    """A micro-batch's scoring, as a scorer runs it: fold-in, top-k, values encoded."""
    return encode_scored(model, score_batch(model.foldin, query), generated_at)
