"""Prometheus metrics of one worker process (exposed at GET /metrics)."""

from __future__ import annotations

import gc
import time
from typing import Any, Callable, Iterator, Optional, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

REGISTRY = CollectorRegistry(auto_describe=True)

RATE_LIMITED = Counter(
    "recsys_rate_limited_total", "Requests answered 429 by the per-client token bucket, by scope",
    ["scope"], registry=REGISTRY,
)
AUTH_REFUSED = Counter(
    "recsys_auth_refused_total", "Requests refused for a missing (401) or wrong (403) bearer token, by scope",
    ["scope", "status"], registry=REGISTRY,
)
SERVED_RECORDS = Counter(
    "recsys_served_records_total", "recsys-served records of the answers this worker served, by outcome "
    "(sent: handed to the producer; dropped: the producer did not take them; undelivered: sent, and the broker "
    "did not take them; a lost record costs a count, never an answer)",
    ["outcome"], registry=REGISTRY,
)
EVENTS = Counter(
    "recsys_events_total", "Input events processed, by topic and outcome (applied|replay|duplicate; not_owned: of a partition revoked since it was fetched, left to its new owner)",
    ["topic", "outcome"], registry=REGISTRY,
)
DEDUP_EXPIRED = Counter(
    "recsys_dedup_expired_total", "event_ids entries deleted as they left the de-duplication window (RECSYS_DEDUP_WINDOW_S)",
    registry=REGISTRY,
)
ERASURES = Counter(
    "recsys_erasures_total", "Users erased from this worker's state (recsys-erasures records applied)",
    registry=REGISTRY,
)
ERASED_DROPPED = Counter(
    "recsys_erased_records_dropped_total", "Records of an erased user from before their erasure, read again and dropped, by topic",
    ["topic"], registry=REGISTRY,
)
SINK_ERASED_DROPPED = Counter(
    "recsys_sink_erased_rows_dropped_total", "Rows of an erased user from before their erasure, not written to PostgreSQL",
    registry=REGISTRY,
)
SINK_ERASURES = Counter(
    "recsys_sink_erasures_total", "Erasures applied to PostgreSQL (rows deleted, audit row written)",
    registry=REGISTRY,
)
CATALOGUE_RULES = Gauge(
    "recsys_catalogue_rules", "Catalogue rules held (recsys-catalogue), by kind (hidden: unavailable or hidden now)",
    ["kind"], registry=REGISTRY,
)
ANSWERS_NOT_KEPT = Counter(
    "recsys_online_answers_not_kept_total",
    "Served answers not folded into a profile because their user has no event yet (no state is made for them)",
    registry=REGISTRY,
)
MODEL_RECORDS_REFUSED = Counter(
    "recsys_model_records_refused_total",
    "Records of amazon-model-updates skipped by the model registry, by reason (unsigned, bad_signature, ...)",
    ["reason"], registry=REGISTRY,
)
DEAD_LETTERS = Counter(
    "recsys_dead_letters_total", "Records refused and sent to the dead-letter topic, by reason",
    ["topic", "reason"], registry=REGISTRY,
)
OFFSET_GAPS = Counter(
    "recsys_offset_gaps_total",
    "Offsets the broker skipped and nothing delivered (transaction markers, aborted records, compaction), "
    "counted as done (kafka/delivered.py)",
    ["topic"], registry=REGISTRY,
)
REROUTED = Counter(
    "recsys_rerouted_total",
    "Records that arrived on another partition than their user_id hashes to, re-sent to the right one",
    ["topic"], registry=REGISTRY,
)
BATCH_SIZE = Histogram(
    "recsys_batch_events", "Events per micro-batch", registry=REGISTRY,
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
)
BATCH_SECONDS = Histogram(
    "recsys_batch_seconds", "Processing time of one micro-batch", registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
GC_PAUSES = Histogram(
    "recsys_gc_pause_seconds", "Garbage collections of the worker process (the event loop stops), by generation",
    ["generation"], registry=REGISTRY,
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1),
)
FRESHNESS = Histogram(
    "recsys_freshness_seconds",
    "Age (now minus Kafka record timestamp) of the oldest event of each micro-batch when the batch started "
    "and when its state became visible to reads; an upper bound for every event of the batch",
    ["stage"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 10, 60),
)
LOOP_LAG = Histogram(
    "recsys_event_loop_lag_seconds",
    "Time for the event loop to run a callback scheduled from another thread (what every event and request waits)",
    registry=REGISTRY, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
REQUESTS_ANSWERED = Counter(
    "recsys_requests_answered_total", "Recommendation requests answered on the responses topic",
    ["strategy"], registry=REGISTRY,
)
DEGRADED_ANSWERS = Counter(
    "recsys_degraded_answers_total",
    "Recommendations answered degraded: popular items (the user's owner unreachable or unknown) or "
    "from tables being rebuilt after a rebalance", ["reason"],
    registry=REGISTRY,
)
HTTP_RECOMMENDATIONS = Counter(
    "recsys_http_recommendations_total", "Recommendation answers served over HTTP", ["strategy"],
    registry=REGISTRY,
)
INGESTED = Counter(
    "recsys_http_ingested_total", "Events accepted by POST /api/events/{kind}", ["kind"], registry=REGISTRY,
)
INGEST_REJECTED = Counter(
    "recsys_http_ingest_rejected_total", "Events refused by POST /api/events/{kind}", ["kind", "reason"],
    registry=REGISTRY,
)
SINK_ROWS = Counter(
    "recsys_sink_rows_total", "Rows written to PostgreSQL (new rows; replays count 0)", registry=REGISTRY,
)
SINK_RETRIES = Counter(
    "recsys_sink_retries_total", "Sink write attempts retried because PostgreSQL was unavailable", registry=REGISTRY,
)
DRIFT_STATISTIC = Gauge(
    "recsys_drift_psi", "Population stability index of the last judged window, per feature", ["feature"],
    registry=REGISTRY,
)
DRIFT_KS = Gauge(
    "recsys_drift_ks", "Kolmogorov-Smirnov statistic D of the last judged window, per numeric feature", ["feature"],
    registry=REGISTRY,
)
DRIFT_ALERTS = Counter(
    "recsys_drift_alerts_total", "Drift alerts published to amazon-data-drift", ["feature"], registry=REGISTRY,
)
DRIFT_WINDOWS_SKIPPED = Counter(
    "recsys_drift_windows_skipped_total",
    "Drift windows not judged because the worker read a backlog in them (RECSYS_DRIFT_MAX_BACKLOG)",
    registry=REGISTRY,
)
CACHE_CLEARS = Counter(
    "recsys_cache_clears_total", "POST /api/clear-cache calls accepted by this worker", registry=REGISTRY,
)
HTTP_SECONDS = Histogram(
    "recsys_http_request_seconds", "Time to answer an HTTP request, by route template, method and status code",
    ["route", "method", "status"], registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
POPULAR_ITEMS = Gauge(
    "recsys_popularity_items", "Items known to this worker's popularity index", registry=REGISTRY,
)


#: Why a record is dead-lettered (``Invalid.code`` of events/validate.py and the sink).
DEAD_LETTER_REASONS = ("empty", "too_large", "not_utf8", "not_json", "not_object", "missing_field", "wrong_type",
                       "out_of_range", "unknown_topic", "sink_rejected")


def preset_series(topics: Sequence[str], features: Sequence[str]) -> None:
    """Export every labelled series a dashboard panel or an alert rule reads at 0 from the start.

    A series that first appears at its first event is invisible to ``increase()`` (Prometheus
    reads the first sample as the start, not as a rise from 0): an alert on dead letters did not
    fire after 20 bad records. Known label values are created here, as the worker starts.
    """
    for topic in topics:
        for reason in DEAD_LETTER_REASONS:
            DEAD_LETTERS.labels(topic, reason)
        EVENTS.labels(topic, "applied")
    for feature in features:
        DRIFT_ALERTS.labels(feature)
        DRIFT_STATISTIC.labels(feature)
    for stage in ("started", "visible"):
        FRESHNESS.labels(stage)
    for reason in ("owner_unreachable", "unavailable", "recovering"):
        DEGRADED_ANSWERS.labels(reason)
    for reason in ("unsigned", "bad_signature"):
        MODEL_RECORDS_REFUSED.labels(reason)
    for topic in topics:
        ERASED_DROPPED.labels(topic)


class StateCollector:
    """Gauges read from the worker's state when scraped (consumer lag, readiness), not pushed:
    the worker sets ``lags`` and ``readiness`` once it is built (``worker/__init__.py``)."""

    def __init__(self) -> None:
        self.lags: Optional[Callable[[], Sequence[Any]]] = None       # -> kafka.lag.PartitionLag list
        self.readiness: Optional[Callable[[], Sequence[str]]] = None  # -> reasons not ready
        self.model_version: Optional[Callable[[], str]] = None        # -> the version answers come from
        self.online: Optional[Callable[[], Sequence[dict]]] = None    # -> online.stats rows

    def describe(self) -> list:
        """The family names (what ``?name[]=`` filters by), samples or not."""
        return [GaugeMetricFamily(name, "", labels=labels) for name, labels in (
            ("recsys_consumer_lag_records", ["topic", "partition"]),
            ("recsys_consumer_lag_seconds", ["topic", "partition"]), ("recsys_ready", None),
            ("recsys_model_info", ["model_version"]))] + [
            GaugeMetricFamily(name, "", labels=list(ONLINE_LABELS)) for name, _, _ in ONLINE_FAMILIES]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.lags is not None:
            records = GaugeMetricFamily(
                "recsys_consumer_lag_records", "Records behind the high watermark, per assigned source partition",
                labels=["topic", "partition"])
            seconds = GaugeMetricFamily(
                "recsys_consumer_lag_seconds",
                "While records are behind: age of the newest processed record of the partition (0 caught up)",
                labels=["topic", "partition"])
            for lag in self.lags():
                labels = [lag.topic, str(lag.partition)]
                records.add_metric(labels, lag.records)
                if lag.age_s is not None:
                    seconds.add_metric(labels, lag.age_s)
            yield records
            yield seconds
        if self.readiness is not None:
            yield GaugeMetricFamily("recsys_ready", "1 when GET /api/health/ready answers 200, else 0",
                                    value=0.0 if self.readiness() else 1.0)
        if self.model_version is not None:
            info = GaugeMetricFamily("recsys_model_info", "1, labelled with the model version this worker serves",
                                     labels=["model_version"])
            info.add_metric([self.model_version()], 1.0)
            yield info
        if self.online is not None:
            rows = self.online()
            for name, field, doc in ONLINE_FAMILIES:
                family = GaugeMetricFamily(name, doc, labels=list(ONLINE_LABELS))
                for row in rows:
                    family.add_metric([row[label] for label in ONLINE_LABELS], row[field])
                yield family


#: The online figures (online/stats.py) as gauges: this worker's counts since it started, per
#: model version, strategy and variant; sum the counts over workers for the cluster's.
ONLINE_LABELS = ("model_version", "strategy", "variant")
ONLINE_FAMILIES = (
    ("recsys_online_answers", "answers", "Answers served (HTTP and the responses topic) this worker folded"),
    ("recsys_online_hits", "hits", "Of them, answers an item of which the user then took within the attribution window"),
    ("recsys_online_hit_rate", "hit_rate", "hits / answers"),
    ("recsys_online_interactions", "interactions", "Interactions within the attribution window of an answer"),
    ("recsys_online_from_recommendation", "from_recommendation", "Of them, interactions on an item the answer held"),
    ("recsys_online_rec_share", "rec_share", "from_recommendation / interactions"),
    ("recsys_online_coverage", "coverage", "Distinct items served / catalogue size"),
)


STATE = StateCollector()
REGISTRY.register(STATE)


def exposition(names: Sequence[str] = ()) -> tuple[bytes, str]:
    """The Prometheus text format; only the ``names`` families when given (as the official
    client's ``?name[]=`` filter: a poller of one counter does not render every histogram)."""
    registry = REGISTRY.restricted_registry(names) if names else REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def snapshot() -> list[tuple[str, float, dict]]:
    """(metric, value, labels) for every sample of this worker's counters and gauges."""
    out = []
    for family in REGISTRY.collect():
        for sample in family.samples:
            if sample.name.endswith(("_created", "_bucket")):
                continue
            out.append((sample.name, float(sample.value), dict(sample.labels)))
    return out


_gc_started = [0.0]
_gc_pauses = [GC_PAUSES.labels(str(g)) for g in range(3)]


def _on_gc(phase: str, info: dict) -> None:
    if phase == "start":
        _gc_started[0] = time.perf_counter()
    else:
        _gc_pauses[info["generation"]].observe(time.perf_counter() - _gc_started[0])


def time_gc_pauses() -> None:
    """Observe every collection's pause in ``GC_PAUSES`` (a gc callback: two clock reads each)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)
