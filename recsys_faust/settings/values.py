"""The structured values settings hold, parsed and checked where the settings are loaded.

They live here, at the bottom of the package, so that loading the settings imports nothing
above them: the drift detector, the ranking policy and the field cipher import these, not the
other way round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Where a micro-batch's ALS maths runs (RECSYS_SCORING; ranking/runtime/scorer.py).
SCORING_MODES = ("process", "thread", "inline")
#: How ``train --publish`` ships a model on amazon-model-updates (RECSYS_MODEL_SHIPPING; ranking/model/payload.py).
MODEL_SHIPPING = ("auto", "inline", "reference")
#: The features the drift detector judges (drift/; a unit test keeps the two lists equal).
DRIFT_FEATURES = ("kind", "category", "catalogue", "price", "rating", "events_per_user")
#: The A/B variant specs besides explicit ``ALS/TRANSITIONS`` weights.
SPEC_BLEND, SPEC_ALS, SPEC_POPULAR = "blend", "als", "popular"


class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


#: Words a placeholder secret is made of (the examples ship empty; these are what people type).
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "example", "password", "secret", "placeholder", "xxxx")
#: The shortest secret production mode accepts.
MIN_SECRET_CHARS = 32


def weak_secret(value: str) -> Optional[str]:
    """Why ``value`` is no secret (a placeholder, or too short), or None."""
    lowered = value.lower()
    word = next((w for w in PLACEHOLDER_WORDS if w in lowered), None)
    if word is not None:
        return f"looks like a placeholder ({word!r})"
    if len(value) < MIN_SECRET_CHARS:
        return f"is {len(value)} characters, fewer than {MIN_SECRET_CHARS}"
    return None


@dataclass(frozen=True)
class EventWeights:
    """How much one interaction counts, for popularity, affinities and ALS confidence.

    Views are cheap signals, purchases strong ones; a review counts by its rating so a
    one-star review adds little.
    """

    view: float = 1.0
    purchase: float = 4.0
    review_per_star: float = 0.8

    def weight(self, kind: str, rating: Optional[float] = None) -> float:
        if kind == "view":
            return self.view
        if kind == "purchase":
            return self.purchase
        if kind == "review":
            return self.review_per_star * float(rating if rating is not None else 3)
        return 0.0

    def als_weight(self, kind: str, rating: Optional[float] = None) -> float:
        """The ALS input value: the weight relative to a purchase (a purchase is 1.0).

        Keeps ALS's alpha meaningful whatever the weight scale: datasets of plain
        interactions (sent as purchases) train exactly like implicit feedback with r = 1.
        """
        return self.weight(kind, rating) / self.purchase


def drift_features(value: str) -> tuple[str, ...]:
    """The comma-separated feature names of ``value``; ValueError naming any the drift detector
    does not judge."""
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    unknown = sorted(set(names) - set(DRIFT_FEATURES))
    if unknown:
        raise ValueError(f"unknown drift feature(s) {', '.join(unknown)}; the drift detector judges "
                         f"{', '.join(DRIFT_FEATURES)}")
    return names


def parse_fields(spec: str) -> dict[str, frozenset[str]]:
    """``"review.text,user-event.properties"`` -> {kind: fields} (RECSYS_ENCRYPTED_FIELDS)."""
    out: dict[str, set[str]] = {}
    for item in (s.strip() for s in spec.split(",")):
        if not item:
            continue
        kind, dot, field = item.partition(".")
        if not dot or not kind or not field:
            raise ValueError(f"RECSYS_ENCRYPTED_FIELDS: {item!r} is not kind.field (e.g. review.text)")
        out.setdefault(kind, set()).add(field)
    return {k: frozenset(v) for k, v in out.items()}


@dataclass(frozen=True)
class Variant:
    """One arm of an A/B test (RECSYS_AB_VARIANTS): its users rank by ``spec``."""

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
