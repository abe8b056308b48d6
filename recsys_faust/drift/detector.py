"""The drift detector: per-window feature observations, compared with a reference.

Pure: no Faust, no clock of its own (the caller passes ``now``). The worker's event processor
feeds it every valid event it folds and publishes what ``observe`` returns.

Two statistics, each where it fits. Categorical features (``kind``, ``category``,
``catalogue``) are compared by the population stability index, sum (p - q) ln(p / q) over
buckets, with a small floor so an empty bucket does not divide by zero (< 0.1 stable, 0.1 to
0.25 moderate, > 0.25 large; alert above ``threshold``). Numeric features (``price``,
``rating``, ``events_per_user``) are compared by the two-sample Kolmogorov-Smirnov test
(``scipy.stats.ks_2samp``): it needs no bucketing, so a shift inside one price band still
shows. The alert needs both a large effect (the statistic D above ``ks_threshold``) and a small
p-value (below ``ks_alpha``): with thousands of values in a window, p alone flags differences
nobody would act on.

Reference, per feature: the active model's training data when its manifest carries one
(``train`` writes every feature: distributions for the categorical ones, a quantile sample for
the numeric ones; so the reference survives restarts with the model), else the first complete
window this detector saw (a baseline: "compared with how traffic looked when this worker
started", lost on restart).

Windows are tumbling on processing time: drift of live traffic is "the last N minutes", and a
replay of old data (whose event times span years) still gives full windows. A window in which
the worker was catching up on a backlog (``observe(..., catching_up=True)``: a restart, a
restore, a lagging worker) is not judged and makes no baseline: a backlog is read at each
topic's own pace, so for a while the window holds, say, the views of an hour and the purchases
of a minute. It is counted in ``skipped``. Each feature is
judged at most once per window, so it raises at most one alert per window. Memory per window is
bounded: numeric values are kept in a reservoir sample of ``sample_size``, and
``events_per_user`` counts at most ``sample_size`` distinct users.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np
# Imported with the module, not at the first test: importing scipy.stats takes about half a
# second, and the first window's test runs on the worker's event loop (a 552 ms stall, seen
# as the serving benchmark's p99).
from scipy.stats import ks_2samp

from ..events.model import Event
from ..settings import default
from .features import EVENTS_PER_USER, FEATURES, NUMERIC

OTHER = "(other)"
FLOOR = 1e-4
STATISTIC = "psi"
KS = "ks"
REFERENCE_SAMPLE = 1000  # quantiles a manifest keeps per numeric feature: D is then exact to 1/1000


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


def quantile_sample(values: Sequence[float] | np.ndarray, size: int = REFERENCE_SAMPLE) -> list[float]:
    """``size`` evenly spaced quantiles of ``values`` (all of them, sorted, when fewer): a
    fixed-size stand-in for a large sample whose empirical distribution function is within
    1/size of the original everywhere, which is what the KS statistic reads."""
    arr = np.sort(np.asarray(values, dtype=np.float64))
    arr = arr[np.isfinite(arr)]
    if len(arr) > size:
        arr = np.quantile(arr, (np.arange(size) + 0.5) / size, method="inverted_cdf")
    return [float(f"{v:.6g}") for v in arr]


def ks_test(current: Sequence[float], reference: Sequence[float]) -> tuple[float, float]:
    """(D, p-value) of the two-sample Kolmogorov-Smirnov test."""
    r = ks_2samp(np.asarray(current, dtype=np.float64), np.asarray(reference, dtype=np.float64))
    return float(r.statistic), float(r.pvalue)


def summary(values: Sequence[float]) -> dict[str, float]:
    """Quartiles and extremes of a sample, for reading an alert."""
    q = np.quantile(np.asarray(values, dtype=np.float64), [0.0, 0.25, 0.5, 0.75, 1.0])
    return {k: float(f"{v:.6g}") for k, v in zip(("min", "p25", "p50", "p75", "max"), q)}


@dataclass
class Reservoir:
    """A uniform sample of at most ``size`` values of a stream (Vitter's algorithm R), seeded so
    that a detector fed the same events keeps the same sample."""

    size: int
    rng: random.Random
    seen: int = 0
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.seen += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            j = self.rng.randrange(self.seen)
            if j < self.size:
                self.values[j] = value

    def add_many(self, values: Sequence[float]) -> None:
        """``add`` of each value in turn (the same sample, the same random draws), in one call."""
        kept, size = self.values, self.size
        start = 0
        if len(kept) < size:
            start = min(size - len(kept), len(values))
            kept.extend(values[:start])
            self.seen += start
        if start < len(values):
            randrange, seen = self.rng.randrange, self.seen
            for value in values[start:]:
                seen += 1
                j = randrange(seen)
                if j < size:
                    kept[j] = value
            self.seen = seen


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
    ks_threshold: float = default("drift_ks_threshold")  # KS statistic D above which (with p < ks_alpha) an alert goes out
    ks_alpha: float = default("drift_ks_alpha")
    sample_size: int = default("drift_sample_size")  # numeric values (and users) kept per feature and window


@dataclass
class Reference:
    distribution: dict[str, float]
    source: str                  # "model:<version>" or "baseline:<window start>"


@dataclass
class NumericReference:
    sample: list[float]          # sorted quantiles of the reference values
    n: int                       # how many values they stand for
    source: str


@dataclass
class DriftDetector:
    config: DriftConfig
    window_start: Optional[float] = None
    counts: dict[str, Counter] = field(default_factory=dict)
    samples: dict[str, Reservoir] = field(default_factory=dict)
    per_user: Counter = field(default_factory=Counter)   # events per user in this window (at most sample_size users)
    events: int = 0
    baseline: dict[str, Reference] = field(default_factory=dict)
    numeric_baseline: dict[str, NumericReference] = field(default_factory=dict)
    last_values: dict[str, float] = field(default_factory=dict)  # newest PSI per categorical feature
    last_ks: dict[str, float] = field(default_factory=dict)      # newest KS statistic per numeric feature
    catching_up: bool = False    # the current window saw the worker behind on a backlog: not judged
    skipped: int = 0             # windows not judged for that

    def observe(self, events: Iterable[Event], now: float, *, model_reference: Optional[dict] = None,
                model_version: str = "", known_items: Optional[Any] = None,
                catching_up: bool = False) -> list[dict[str, Any]]:
        """Count ``events`` into the current window; returns the alerts of a window that closed.

        ``known_items`` (a container of product ids) adds the ``catalogue`` feature: known to
        the active model or not, against its training reference (every item known).
        ``catching_up``: the worker is reading a backlog now; the window ``now`` falls in is
        not judged.
        """
        alerts: list[dict[str, Any]] = []
        size = self.config.window_s
        start = math.floor(now / size) * size
        if self.window_start is None:
            self.window_start = start
        elif start > self.window_start:
            alerts = self.close(model_reference=model_reference, model_version=model_version, now=now)
            self.window_start = start
        self.catching_up |= catching_up
        events = events if isinstance(events, list) else list(events)
        if not events:
            return alerts
        # Counted a feature at a time over the whole batch (``Counter.update`` counts in C): one
        # Python call per event and feature was 3% of a busy worker's event loop.
        self.events += len(events)
        counts = self.counts
        for name, fn in FEATURES.items():
            buckets = [b for b in map(fn, events) if b is not None]
            if buckets:
                counts.setdefault(name, Counter()).update(buckets)
        for name, num in NUMERIC.items():
            values = [v for v in map(num, events) if v is not None]
            if values:
                sample = self.samples.get(name)
                if sample is None:
                    sample = self.samples[name] = Reservoir(self.config.sample_size, random.Random(f"{name}:{start}"))
                sample.add_many(values)
        per_user, cap = self.per_user, self.config.sample_size
        for user_id in [ev.user_id for ev in events]:
            if user_id in per_user or len(per_user) < cap:
                per_user[user_id] += 1
        if known_items is not None:
            known = [ev.product_id in known_items for ev in events if ev.is_interaction]
            if known:
                n_known = sum(known)
                catalogue = counts.setdefault("catalogue", Counter())
                if n_known:
                    catalogue["known"] += n_known
                if len(known) > n_known:
                    catalogue["unknown"] += len(known) - n_known
        return alerts

    def close(self, *, model_reference: Optional[dict], model_version: str, now: float) -> list[dict[str, Any]]:
        """Compare the finished window with the references; start the next one empty."""
        assert self.window_start is not None
        if self.catching_up:
            self.skipped += 1
            self._reset()
            return []
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
        alerts += self._close_numeric(start, end, now, model_reference, model_version)
        self._reset()
        return alerts

    def _reset(self) -> None:
        self.counts = {}
        self.samples = {}
        self.per_user = Counter()
        self.events = 0
        self.catching_up = False

    def _close_numeric(self, start: float, end: float, now: float, model_reference: Optional[dict],
                       model_version: str) -> list[dict[str, Any]]:
        observed: dict[str, tuple[list[float], int]] = {
            name: (r.values, r.seen) for name, r in sorted(self.samples.items())}
        if self.per_user:
            observed[EVENTS_PER_USER] = ([float(v) for v in self.per_user.values()], sum(self.per_user.values()))
        alerts: list[dict[str, Any]] = []
        for name, (values, n) in observed.items():
            if n < self.config.min_events:
                continue
            ref = self._numeric_reference(name, values, n, start, model_reference, model_version)
            if ref is None:  # this window became the baseline
                continue
            d, p = ks_test(values, ref.sample)
            d = round(d, 6)
            self.last_ks[name] = d
            if d > self.config.ks_threshold and p < self.config.ks_alpha:
                alerts.append({
                    "feature": name, "statistic": KS, "value": d, "threshold": self.config.ks_threshold,
                    "window_start": start, "window_end": end, "timestamp": now,
                    "reference": {"source": ref.source, "n": ref.n, "summary": summary(ref.sample)},
                    "details": {"events": n, "sampled": len(values), "p_value": p, "alpha": self.config.ks_alpha,
                                "window": summary(values)},
                })
        return alerts

    def _numeric_reference(self, name: str, values: list[float], n: int, start: float,
                           model_reference: Optional[dict], model_version: str) -> Optional[NumericReference]:
        entry = (model_reference or {}).get(name)
        if isinstance(entry, dict) and entry.get("sample") and (
                entry.get("window_s") in (None, self.config.window_s)):
            return NumericReference(list(entry["sample"]), int(entry.get("n") or len(entry["sample"])),
                                    f"model:{model_version}")
        if name not in self.numeric_baseline:
            self.numeric_baseline[name] = NumericReference(quantile_sample(values), n, f"baseline:{start:.0f}")
            return None
        return self.numeric_baseline[name]

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


def training_reference(categories: Iterable[Optional[str]], max_buckets: int = 30, *,
                       kinds: Optional[Iterable[str]] = None, prices: Optional[Sequence[float]] = None,
                       ratings: Optional[Sequence[float]] = None, users: Optional[Sequence[int]] = None,
                       ts: Optional[Sequence[float]] = None, window_s: Optional[float] = None) -> dict[str, Any]:
    """The reference a model carries in its manifest, from its training interactions.

    Always ``category`` and ``catalogue`` (every training interaction is on an item the model
    knows). Where the training data has them: ``kind`` (the event mix), ``price`` and ``rating``
    (quantile samples of the values present), and ``events_per_user``: how many interactions a
    user had within one drift window, the windows laid on the training data's event times as
    the detector lays them on processing time (so the figure is only comparable for the same
    ``window_s``, which the entry records and the detector checks).
    """
    ref: dict[str, Any] = {"category": capped(normalise(Counter((c or "(none)") for c in categories)), max_buckets),
                           "catalogue": {"known": 1.0, "unknown": 0.0}}
    if kinds is not None:
        counts = Counter(kinds)
        if counts:
            ref["kind"] = capped(normalise(counts), max_buckets)
    for name, values in (("price", prices), ("rating", ratings)):
        if values is not None:
            arr = np.asarray(values, dtype=np.float64)
            arr = arr[np.isfinite(arr)]
            if len(arr):
                ref[name] = {"sample": quantile_sample(arr), "n": int(len(arr))}
    if users is not None and ts is not None and window_s and len(users):
        u = np.asarray(users, dtype=np.int64)
        w = np.floor(np.asarray(ts, dtype=np.float64) / window_s).astype(np.int64)
        w = w - w.min()
        # one int64 key per (user, window): np.unique along an axis sorts rows, 10x slower
        _, per = np.unique(u * (int(w.max()) + 1) + w, return_counts=True)
        ref[EVENTS_PER_USER] = {"sample": quantile_sample(per.astype(np.float64)), "n": int(len(per)),
                                "window_s": float(window_s)}
    return ref
