"""Wiring of the drift detector: feeds it the events the processor folds, publishes its alerts.

The detector (drift/detector.py) is pure; this adds the clock, the active model's training
reference and catalogue, the worker's name, the metrics and the amazon-data-drift topic. Each
worker judges the events of its own partitions: users are hashed uniformly over partitions,
so a worker's share has the same distribution as the whole stream (and a drift that shows in
only one worker's share is worth knowing too). Replayed events after a rebalance are counted
again; a window is a statistical sample, not an exact count.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Iterable

from .. import metrics
from .detector import DriftConfig, DriftDetector
from ..events.model import Event
from ..ranking.model.active import ModelHolder
from ..settings import DriftSettings

log = logging.getLogger(__name__)


class DriftMonitor:
    def __init__(self, drift: DriftSettings, models: ModelHolder,
                 publish: Callable[[dict[str, Any]], Awaitable[Any]], *, worker: str) -> None:
        self.worker = worker  # named in each alert
        self.models = models
        self.publish = publish
        self.max_backlog = drift.drift_max_backlog
        self.detector = DriftDetector(DriftConfig(
            window_s=drift.drift_window_s, min_events=drift.drift_min_events,
            threshold=drift.drift_threshold, max_buckets=drift.drift_max_buckets,
            ks_threshold=drift.drift_ks_threshold, ks_alpha=drift.drift_ks_alpha,
            sample_size=drift.drift_sample_size))

    async def observe(self, events: Iterable[Event], *, backlog: int = 0) -> None:
        """``events`` into the current window; ``backlog``: records waiting behind them on their
        partitions (over ``drift_max_backlog``, the window is not judged: detector.py)."""
        active = self.models.active
        skipped = self.detector.skipped
        alerts = self.detector.observe(
            events, time.time(),
            model_reference=(active.artifact.manifest.get("reference") if active is not None else None),
            model_version=active.version if active is not None else "",
            known_items=active.index if active is not None else None,
            catching_up=0 < self.max_backlog < backlog,
        )
        if self.detector.skipped > skipped:
            metrics.DRIFT_WINDOWS_SKIPPED.inc(self.detector.skipped - skipped)
            log.info("drift: a window not judged: the worker read a backlog in it (over %d records behind)",
                     self.max_backlog)
        for feature, value in self.detector.last_values.items():
            metrics.DRIFT_STATISTIC.labels(feature).set(value)
        for feature, value in self.detector.last_ks.items():
            metrics.DRIFT_KS.labels(feature).set(value)
        for alert in alerts:
            alert["details"]["worker"] = self.worker
            metrics.DRIFT_ALERTS.labels(alert["feature"]).inc()
            log.warning("input drift: %s %s %.3f > %.2f in window %.0f..%.0f (reference %s)", alert["feature"],
                        alert["statistic"], alert["value"], alert["threshold"], alert["window_start"], alert["window_end"],
                        alert["reference"]["source"])
            await self.publish(alert)

    async def tick(self) -> None:
        """Close a finished window even when no event arrives (called by a timer)."""
        await self.observe(())

    def status(self) -> dict[str, Any]:
        d = self.detector
        return {"window_s": d.config.window_s, "window_start": d.window_start, "events_in_window": d.events,
                "baseline_features": sorted(set(d.baseline) | set(d.numeric_baseline)), "last_psi": dict(d.last_values),
                "threshold": d.config.threshold, "last_ks": dict(d.last_ks), "ks_threshold": d.config.ks_threshold,
                "catching_up": d.catching_up, "windows_skipped": d.skipped,
                "model_reference": sorted(self._model_reference())}

    def _model_reference(self) -> list[str]:
        """The features judged against the active model's manifest (the rest: this worker's baseline)."""
        active = self.models.active
        return list((active.artifact.manifest.get("reference") or {}) if active is not None else ())
