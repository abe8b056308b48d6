"""The drift detector: per-window feature counts, compared with a reference by PSI.

Pure: no Faust, no clock of its own (the caller passes ``now``). The worker's event processor
feeds it every valid event it folds and publishes what ``observe`` returns.

Reference, per feature: the active model's training distribution when its manifest carries
one (``category``, and ``catalogue``: the share of interactions on items the model knows, 1.0
by construction), else the first complete window this detector saw (a baseline: "compared with
how traffic looked when this worker started"). Statistic: the population stability index,
sum (p - q) ln(p / q) over buckets, with a small floor so an empty bucket does not divide by
zero. Rule of thumb: < 0.1 stable, 0.1 to 0.25 moderate, > 0.25 large; the threshold is a
setting (0.2).

Windows are tumbling on processing time: drift of live traffic is "the last N minutes", and a
replay of old data (whose event times span years) still gives full windows.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional

from ..events.model import Event
from ..settings import default
from .features import FEATURES

OTHER = "(other)"
FLOOR = 1e-4
STATISTIC = "psi"


def psi(current: Mapping[str, float], reference: Mapping[str, float], floor: float = FLOOR) -> float:
    """Population stability index of two distributions (each summing to 1) over their buckets."""
    total = 0.0
    for bucket in set(current) | set(reference):
        p = max(current.get(bucket, 0.0), floor)
        q = max(reference.get(bucket, 0.0), floor)
        total += (p - q) * math.log(p / q)
    return total


def normalise(counts: Mapping[str, float]) -> dict[str, float]:
    n = float(sum(counts.values()))
    return {k: v / n for k, v in counts.items()} if n else {}


def capped(dist: Mapping[str, float], keep: int) -> dict[str, float]:
    """The ``keep`` largest buckets, the rest summed into OTHER."""
    top = sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))
    out = dict(top[:keep])
    rest = sum(v for _, v in top[keep:])
    if rest:
        out[OTHER] = out.get(OTHER, 0.0) + rest
    return out


def rebucket(counts: Mapping[str, float], buckets: Iterable[str]) -> dict[str, float]:
    """Counts mapped onto a reference's buckets (anything else goes to OTHER)."""
    known = set(buckets)
    out: dict[str, float] = {}
    for k, v in counts.items():
        key = k if k in known else OTHER
        out[key] = out.get(key, 0.0) + v
    return out


@dataclass(frozen=True)
class DriftConfig:
    window_s: float = default("drift_window_s")
    min_events: int = default("drift_min_events")  # per feature and window; fewer is noise, not drift
    threshold: float = default("drift_threshold")
    max_buckets: int = default("drift_max_buckets")  # per feature (categories are capped, the rest is OTHER)


@dataclass
class Reference:
    distribution: dict[str, float]
    source: str                  # "model:<version>" or "baseline:<window start>"


@dataclass
class DriftDetector:
    config: DriftConfig
    window_start: Optional[float] = None
    counts: dict[str, Counter] = field(default_factory=dict)
    events: int = 0
    baseline: dict[str, Reference] = field(default_factory=dict)
    last_values: dict[str, float] = field(default_factory=dict)  # newest statistic per feature

    def observe(self, events: Iterable[Event], now: float, *, model_reference: Optional[dict] = None,
                model_version: str = "", known_items: Optional[Any] = None) -> list[dict[str, Any]]:
        """Count ``events`` into the current window; returns the alerts of a window that closed.

        ``known_items`` (a container of product ids) adds the ``catalogue`` feature: known to
        the active model or not, against its training reference (every item known).
        """
        alerts: list[dict[str, Any]] = []
        size = self.config.window_s
        start = math.floor(now / size) * size
        if self.window_start is None:
            self.window_start = start
        elif start > self.window_start:
            alerts = self.close(model_reference=model_reference, model_version=model_version, now=now)
            self.window_start = start
        for ev in events:
            self.events += 1
            for name, fn in FEATURES.items():
                bucket = fn(ev)
                if bucket is not None:
                    self.counts.setdefault(name, Counter())[bucket] += 1
            if known_items is not None and ev.is_interaction:
                self.counts.setdefault("catalogue", Counter())[
                    "known" if ev.product_id in known_items else "unknown"] += 1
        return alerts

    def close(self, *, model_reference: Optional[dict], model_version: str, now: float) -> list[dict[str, Any]]:
        """Compare the finished window with the references; start the next one empty."""
        assert self.window_start is not None
        start, end = self.window_start, self.window_start + self.config.window_s
        alerts: list[dict[str, Any]] = []
        for name, counts in sorted(self.counts.items()):
            n = sum(counts.values())
            if n < self.config.min_events:
                continue
            ref = self._reference(name, counts, start, model_reference, model_version)
            if ref is None:  # this window became the baseline
                continue
            current = normalise(rebucket(counts, ref.distribution))
            value = round(psi(current, ref.distribution), 6)
            self.last_values[name] = value
            if value > self.config.threshold:
                alerts.append({
                    "feature": name, "statistic": STATISTIC, "value": value,
                    "threshold": self.config.threshold, "window_start": start, "window_end": end,
                    "timestamp": now,
                    "reference": {"source": ref.source, "distribution": _rounded(ref.distribution)},
                    "details": {"events": n, "window": _rounded(capped(current, self.config.max_buckets))},
                })
        self.counts = {}
        self.events = 0
        return alerts

    def _reference(self, name: str, counts: Counter, start: float, model_reference: Optional[dict],
                   model_version: str) -> Optional[Reference]:
        if model_reference and name in model_reference:
            return Reference(dict(model_reference[name]), f"model:{model_version}")
        if name not in self.baseline:
            self.baseline[name] = Reference(capped(normalise(counts), self.config.max_buckets),
                                            f"baseline:{start:.0f}")
            return None
        return self.baseline[name]


def _rounded(dist: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, 6) for k, v in sorted(dist.items(), key=lambda kv: (-kv[1], kv[0]))}


def training_reference(categories: Iterable[Optional[str]], max_buckets: int = 30) -> dict[str, dict[str, float]]:
    """The reference a model carries in its manifest: its training interactions' categories,
    and ``catalogue`` (every training interaction is on an item the model knows)."""
    counts = Counter((c or "(none)") for c in categories)
    return {"category": capped(normalise(counts), max_buckets), "catalogue": {"known": 1.0, "unknown": 0.0}}
