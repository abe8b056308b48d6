"""Step 5: the touched users ranked: their query handed to the scorer, then their ready lists.

Fold-in, transitions and blend of every touched user run against one snapshot of the active
model. A large batch is packed where it is scored (ranking/runtime/scorer.py, ``follow``), from
the profiles' JSON just encoded; ``Ranker.pack`` is the same packing here. Users the model does
not rank (no model yet, or an A/B variant without it) get a popularity list.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Optional, Sequence

from ..ranking.model.active import ActiveModel
from ..ranking.policy.ranker import Ranker
from ..ranking.runtime.ready_values import ready_entry
from ..ranking.runtime.scorer import Scorer
from ..ranking.strategies import POPULARITY_MODEL_VERSION
from .fold_profiles import UserState

#: (positions in the batch's touched users, their scoring on the way): one per variant ranked
Scoring = tuple[list[int], asyncio.Future]
#: a scored user's encoded ready list and folded-in vector (None: not stored)
Encoded = tuple[bytes, Optional[bytes]]


@dataclass
class ReadyWrites:
    """The recommendations and user_factors values of a batch."""

    lists: list[tuple[str, Any, int]] = field(default_factory=list)      # fallback lists, to encode
    encoded: list[tuple[str, bytes, int]] = field(default_factory=list)  # scored lists, encoded
    factors: list[tuple[str, bytes, int]] = field(default_factory=list)


def variant_groups(ranker: Ranker, touched: Sequence[UserState]) -> list[tuple[list[int], Optional[tuple[float, float]]]]:
    """The touched users' positions grouped by how the model ranks them: all together without
    an A/B test, else one group per variant (a variant without the model is left to the
    fallback lists)."""
    if not ranker.variants:
        return [(list(range(len(touched))), None)]
    groups: dict[str, tuple[list[int], tuple[float, float]]] = {}
    for pos, (user_id, _, _) in enumerate(touched):
        variant = ranker.variant_of(user_id)
        if variant is not None and variant.uses_model:
            groups.setdefault(variant.name, ([], variant.blend_weights(ranker.blend_weights)))[0].append(pos)
    return list(groups.values())


def submit(scorer: Scorer, ranker: Ranker, active: Optional[ActiveModel], touched: Sequence[UserState],
           profile_raws: Sequence[bytes]) -> list[Scoring]:
    """Hand the touched users' query to the scorer; the futures are awaited by ``collect``."""
    if active is None or not touched:
        return []
    scorings: list[Scoring] = []
    for positions, weights in variant_groups(ranker, touched):
        profiles = [touched[i][1] for i in positions]
        scorings.append((positions, scorer.submit_profiles(
            active.scoring, [profile_raws[i] for i in positions], ranker.pack_spec(blend_weights=weights),
            time.time(), partial(ranker.pack, active, profiles, blend_weights=weights))))
    return scorings


async def collect(scorings: Sequence[Scoring], users: int) -> list[Optional[Encoded]]:
    """Each touched user's encoded values as the scorer returned them (None: not scored)."""
    scored: list[Optional[Encoded]] = [None] * users
    for positions, scoring in scorings:
        rows, values = await scoring
        if values is None:
            continue
        for row, list_value, factor_value in zip(rows, values.lists, values.factors):
            scored[positions[row]] = (list_value, factor_value)
    return scored


def ready_writes(ranker: Ranker, active: Optional[ActiveModel], touched: Sequence[UserState],
                 scored: Sequence[Optional[Encoded]], now: float) -> ReadyWrites:
    """The scored users' values as encoded, the others' popularity lists."""
    version = active.version if active is not None else POPULARITY_MODEL_VERSION
    out = ReadyWrites()
    for (user_id, profile, partition), encoded in zip(touched, scored):
        if encoded is not None:
            out.encoded.append((user_id, encoded[0], partition))
            if encoded[1] is not None:
                out.factors.append((user_id, encoded[1], partition))
        else:
            columns, strategy = ranker.fallback(profile, blend_weights=ranker.weights_for(user_id))
            out.lists.append((user_id, ready_entry(columns, strategy, version, now), partition))
    return out
