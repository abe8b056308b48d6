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
from dataclasses import dataclass
from typing import Optional

SPEC_BLEND, SPEC_ALS, SPEC_POPULAR = "blend", "als", "popular"


@dataclass(frozen=True)
class Variant:
    name: str
    spec: str
    weight: float

    def blend_weights(self, default: tuple[float, float]) -> tuple[float, float]:
        """(ALS, transitions) weights of the blend for this variant's users."""
        if self.spec == SPEC_BLEND:
            return default
        if self.spec == SPEC_ALS:
            return (default[0] or 1.0, 0.0)
        if self.spec == SPEC_POPULAR:
            return (0.0, 0.0)
        a, t = self.spec.split("/")
        return (float(a), float(t))

    @property
    def uses_model(self) -> bool:
        return self.spec != SPEC_POPULAR


def parse_variants(text: str) -> tuple[Variant, ...]:
    """``name=spec[:weight],...`` -> variants; ValueError naming what is wrong."""
    out: list[Variant] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, eq, rest = part.partition("=")
        name = name.strip()
        if not eq or not name:
            raise ValueError(f"A/B variant {part!r}: expected name=spec[:weight]")
        spec, _, weight_text = rest.strip().partition(":")
        spec = spec.strip()
        try:
            weight = float(weight_text) if weight_text.strip() else 1.0
        except ValueError:
            raise ValueError(f"A/B variant {name!r}: weight {weight_text!r} is not a number") from None
        if not weight > 0:
            raise ValueError(f"A/B variant {name!r}: weight must be positive")
        if spec not in (SPEC_BLEND, SPEC_ALS, SPEC_POPULAR):
            a, slash, t = spec.partition("/")
            try:
                ok = bool(slash) and float(a) >= 0 and float(t) >= 0 and float(a) + float(t) > 0
            except ValueError:
                ok = False
            if not ok:
                raise ValueError(f"A/B variant {name!r}: spec {spec!r} is not blend, als, popular or ALS/TRANSITIONS "
                                 "weights such as 1.0/1.5")
        if any(v.name == name for v in out):
            raise ValueError(f"A/B variant {name!r} is named twice")
        out.append(Variant(name, spec, weight))
    if len(out) == 1:
        raise ValueError("RECSYS_AB_VARIANTS names one variant: an A/B test needs at least two")
    return tuple(out)


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
