"""A/B variants: users split by a stable hash of their id, each variant ranking its own way.

``RECSYS_AB_VARIANTS`` is ``name=spec[:weight],...``, for example
``control=blend:50,treatment=als:50``. A spec is how the variant's users are ranked:

- ``blend``: the ALS fold-in blended with the transitions at the configured weights;
- ``als``: the ALS fold-in alone (transitions off);
- ``popular``: popularity x category affinity alone (no model, no transitions);
- ``A/T``: the blend at ALS weight A and transitions weight T (``1.0/1.5``).

A user's variant is fixed by the hash of the user_id (BLAKE2b, the same on every worker and
after every restart, independent of Python's per-process ``hash``), so a user sees one
variant for the whole test, and the split of N users is within a few standard errors of the
weights. The variant's name goes into every answer (``variant``) and the online figures are
kept per variant (online/), so the variants compare on served quality.

Model-version variants (a treatment model beside the active one) are not offered: the scoring
process holds one model at a time.
"""

from __future__ import annotations

import hashlib
from typing import Optional

from ...settings.values import SPEC_ALS, SPEC_BLEND, SPEC_POPULAR, Variant, parse_variants

__all__ = ["SPEC_ALS", "SPEC_BLEND", "SPEC_POPULAR", "Variant", "assign", "bucket", "parse_variants"]


def bucket(user_id: str) -> float:
    """The user's place in [0, 1): stable across processes, machines and restarts."""
    digest = hashlib.blake2b(user_id.encode("utf-8"), digest_size=8, person=b"recsys-ab").digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign(user_id: str, variants: tuple[Variant, ...]) -> Optional[Variant]:
    """The user's variant (None when no test runs)."""
    if not variants:
        return None
    total = sum(v.weight for v in variants)
    x, acc = bucket(user_id) * total, 0.0
    for v in variants:
        acc += v.weight
        if x < acc:
            return v
    return variants[-1]
