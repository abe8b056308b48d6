"""When to retrain: the decisions of ``recsys-faust retrain --watch``, free of Kafka and I/O.

A served model goes stale in two ways the cluster already measures. Traffic moves to items it
does not know (the drift detector's ``catalogue`` feature, or any feature chosen), and users
stop taking its answers (the online hit rate per model version on amazon-model-metrics). The
watcher folds those three topics' records into this state and asks it whether to retrain now:

- a drift alert counts only when it was judged against the model served now (its reference is
  ``model:<version>``): an alert against an older model is about a model already replaced, and
  one against a worker's own first window says traffic changed since that worker started, not
  that the model is stale;
- the hit rate is the cluster's for the served version: the newest post of each (worker,
  strategy, variant), hits over answers summed, and judged only once the answers number at
  least ``min_answers`` (a handful of answers says nothing);
- at most one retrain per ``cooldown_s``: a retrain takes minutes and the next drift window may
  still alert on the old model while the new one is loading; and none while a model this
  watcher published has not reached its registry yet (it reads the topic like the workers do,
  so until then the alerts it reads are judged against the model being replaced);
- never while an operator's pin holds (``models activate`` after the newest publication, a
  rollback): publishing would undo it. A later publication by hand lifts the pin.

Whether a new model is then published is the quality gate's (``passes_gate``): its offline
NDCG@10 against the served model's, each measured on its own training data's holdout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from ..ranking.model.registry import ModelRegistry
from ..settings import RetrainSettings

#: The ranking the gate compares (``evaluate``'s name for the served blend), and the fallback.
GATED_RANKINGS = ("als+transitions", "als")


@dataclass(frozen=True)
class RetrainPolicy:
    drift_features: tuple[str, ...] = ("catalogue",)
    min_hit_rate: float = 0.0       # 0: the hit rate never triggers
    min_answers: int = 1000
    cooldown_s: float = 3600.0
    gate: float = 0.8               # 0: publish whatever the new model's offline figures

    @classmethod
    def from_settings(cls, retrain: RetrainSettings) -> "RetrainPolicy":
        return cls(drift_features=retrain.retrain_features, min_hit_rate=retrain.retrain_min_hit_rate,
                   min_answers=retrain.retrain_min_answers, cooldown_s=retrain.retrain_cooldown_s,
                   gate=retrain.retrain_gate)


@dataclass(frozen=True)
class Trigger:
    """Why to retrain now: ``kind`` is ``drift`` or ``hit_rate``; ``detail`` says it in words."""

    kind: str
    detail: str
    model_version: Optional[str]


@dataclass
class RetrainWatch:
    policy: RetrainPolicy
    registry: ModelRegistry = field(default_factory=ModelRegistry)
    last_retrain: Optional[float] = None
    #: (worker, strategy, variant) -> (timestamp, answers, hits) of the served version's newest post.
    _posts: dict[tuple[str, str, str], tuple[float, int, int]] = field(default_factory=dict)
    _posts_version: Optional[str] = None
    #: A version this watcher published that the topic has not brought back yet.
    awaiting: Optional[str] = None

    # --- what the cluster serves -----------------------------------------------------------------
    def on_model_update(self, key: str, value: Optional[Any]) -> None:
        self.registry.apply([(key, value)])
        if self.awaiting in self.registry.versions:
            self.awaiting = None

    def published(self, version: str) -> None:
        self.awaiting = version

    @property
    def served(self) -> Optional[str]:
        chosen = self.registry.chosen()
        return str(chosen["model_version"]) if chosen is not None else None

    @property
    def pinned(self) -> bool:
        """An operator's activation holds: it came after the newest publication."""
        chosen, pin = self.registry.chosen(), self.registry.pin
        newest = self.registry.newest()
        return (pin is not None and chosen is not None and newest is not None
                and str(chosen["model_version"]) == str(pin["model_version"])
                and chosen is not newest)

    # --- what the cluster measures ---------------------------------------------------------------
    def on_drift(self, alert: Any) -> Optional[Trigger]:
        if not isinstance(alert, dict) or alert.get("feature") not in self.policy.drift_features:
            return None
        served = self.served
        source = (alert.get("reference") or {}).get("source") if isinstance(alert.get("reference"), dict) else None
        if served is None or source != f"model:{served}":
            return None
        return Trigger("drift", f"{alert['feature']} drifted from model {served}: {alert.get('statistic')} "
                                f"{alert.get('value')} > {alert.get('threshold')}", served)

    def on_metric(self, record: Any) -> Optional[Trigger]:
        if not isinstance(record, dict) or record.get("metric") != "online_hit_rate":
            return None
        served = self.served
        if served is None or str(record.get("model_version")) != served:
            return None
        if self._posts_version != served:
            self._posts, self._posts_version = {}, served
        labels = record.get("labels") if isinstance(record.get("labels"), dict) else {}
        try:
            key = (str(labels.get("worker")), str(labels.get("strategy")), str(labels.get("variant")))
            post = (float(record.get("timestamp") or 0.0), int(labels.get("answers") or 0), int(labels.get("hits") or 0))
        except (TypeError, ValueError):
            return None
        if key not in self._posts or post[0] >= self._posts[key][0]:
            self._posts[key] = post
        answers, hits = self.answers_and_hits()
        if self.policy.min_hit_rate <= 0 or answers < self.policy.min_answers:
            return None
        rate = hits / answers
        if rate >= self.policy.min_hit_rate:
            return None
        return Trigger("hit_rate", f"model {served}'s hit rate {rate:.4f} over {answers} answers is below "
                                   f"{self.policy.min_hit_rate}", served)

    def answers_and_hits(self) -> tuple[int, int]:
        """The served version's answers and hits across the cluster (the newest post of each key)."""
        if self._posts_version != self.served:
            return 0, 0
        return sum(p[1] for p in self._posts.values()), sum(p[2] for p in self._posts.values())

    # --- the decision ----------------------------------------------------------------------------
    def decide(self, trigger: Trigger, now: float) -> tuple[bool, str]:
        """Whether ``trigger`` starts a retrain now, and why (or why not) in words."""
        if self.pinned:
            return False, f"{trigger.detail}; not retraining: {self.served} is pinned by `models activate`"
        if self.awaiting is not None:
            return False, f"{trigger.detail}; not retraining: {self.awaiting}, just published, is not served yet"
        if self.last_retrain is not None and now - self.last_retrain < self.policy.cooldown_s:
            wait = self.policy.cooldown_s - (now - self.last_retrain)
            return False, f"{trigger.detail}; not retraining: cooling down for {wait:.0f} s more"
        return True, f"{trigger.detail}: retraining"

    def started(self, now: float) -> None:
        self.last_retrain = now


def offline_ndcg(offline_metrics: Any) -> Optional[tuple[str, float]]:
    """(ranking, NDCG@10) of a manifest's ``offline_metrics``: the blend's, else ALS's."""
    if not isinstance(offline_metrics, dict):
        return None
    for name in GATED_RANKINGS:
        figures = offline_metrics.get(name)
        if isinstance(figures, dict) and isinstance(figures.get("ndcg@10"), (int, float)):
            return name, float(figures["ndcg@10"])
    return None


def passes_gate(new_metrics: Any, served_metrics: Any, gate: float) -> tuple[bool, str]:
    """Whether a retrained model may replace the served one: its offline NDCG@10 at least
    ``gate`` times the served model's. A model without figures on either side passes (nothing to
    compare; the served one may predate the evaluation), said in the reason."""
    if gate <= 0:
        return True, "no quality gate"
    new, old = offline_ndcg(new_metrics), offline_ndcg(served_metrics)
    if new is None or old is None:
        return True, "no offline figures to compare"
    if new[0] != old[0]:
        return True, f"offline figures of different rankings ({new[0]} vs {old[0]}): not compared"
    ok = new[1] >= gate * old[1]
    return ok, (f"{new[0]} NDCG@10 {new[1]:.4f} {'>=' if ok else '<'} {gate:g} x the served model's {old[1]:.4f}")
