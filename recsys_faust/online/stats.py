"""Online figures per (model version, strategy, variant), as one worker counted them.

Pure counters fed by the event processor (online/attribution.py says what is counted when).
Each worker counts the answers and interactions of its own partitions since it started; summed
over workers (Prometheus ``sum by``, or the records on amazon-model-metrics) they are the
cluster's. Memory: a handful of integers and the set of distinct items served per key, which
the catalogue bounds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from .attribution import Key


@dataclass
class Figures:
    answers: int = 0
    hits: int = 0
    exposed: int = 0        # interactions inside the window of an answer
    from_answer: int = 0    # ... on an item that answer held
    items: set[str] = field(default_factory=set)

    def hit_rate(self) -> float:
        return self.hits / self.answers if self.answers else 0.0

    def rec_share(self) -> float:
        return self.from_answer / self.exposed if self.exposed else 0.0

    def coverage(self, catalogue: int) -> float:
        return len(self.items) / catalogue if catalogue else 0.0


class OnlineStats:
    def __init__(self) -> None:
        self.by_key: dict[Key, Figures] = {}

    def _get(self, key: Key) -> Figures:
        fig = self.by_key.get(key)
        if fig is None:
            fig = self.by_key[key] = Figures()
        return fig

    def answered(self, key: Key, items: Iterable[str], hit: bool) -> None:
        fig = self._get(key)
        fig.answers += 1
        fig.items.update(items)
        if hit:
            fig.hits += 1

    def interacted(self, hits: Iterable[Key], exposed: Key | None, from_answer: Key | None) -> None:
        for key in hits:
            self._get(key).hits += 1
        if exposed is not None:
            self._get(exposed).exposed += 1
        if from_answer is not None:
            self._get(from_answer).from_answer += 1

    def rows(self, catalogue: int) -> list[dict[str, Any]]:
        """One row per key: the figures and their counts."""
        return [{"model_version": k.model_version, "strategy": k.strategy, "variant": k.variant,
                 "answers": f.answers, "hits": f.hits, "hit_rate": round(f.hit_rate(), 6),
                 "interactions": f.exposed, "from_recommendation": f.from_answer,
                 "rec_share": round(f.rec_share(), 6), "items_served": len(f.items),
                 "coverage": round(f.coverage(catalogue), 6)}
                for k, f in sorted(self.by_key.items())]
