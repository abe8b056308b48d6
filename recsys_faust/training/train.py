"""``recsys-faust train``: dataset -> holdout metrics -> final ALS fit -> versioned artifact (-> Kafka)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..drift.detector import training_reference
from ..transitions.counts import counts_from_histories
from ..settings import Settings
from .als import ALSParams, train_als
from ..ranking.model.artifact import INDEX_FILE, ModelArtifact, new_version, save, save_index
from .dataset import Interactions, load_csv
from .evaluate import Quality, evaluate

log = logging.getLogger(__name__)


def params_from_settings(s: Settings, **overrides: object) -> ALSParams:
    base = dict(factors=s.training.als_factors, regularization=s.training.als_regularization, alpha=s.training.als_alpha,
                iterations=s.training.als_iterations, seed=s.training.als_seed)
    base.update({k: v for k, v in overrides.items() if v is not None})
    return ALSParams(**base)  # type: ignore[arg-type]


def eval_options(s: Settings) -> dict[str, object]:
    """``evaluate``'s options as the workers rank: the blend weights and the successor cap."""
    return dict(blend_weights=(s.ranking.blend_als_weight, s.ranking.blend_transitions_weight),
                max_successors=s.ranking.transitions_max_successors)


def load_dataset(path: Path, settings: Settings, kind: str = "purchase") -> Interactions:
    """Rows as events of ``kind``, weighted as the workers weight them (purchase = 1.0)."""
    if kind == "review":
        data = load_csv(path, rating_as_weight=True)
        w = settings.popularity.weights
        return replace(data, weights=(data.weights * w.review_per_star / w.purchase).astype(np.float32))
    return load_csv(path, weight=settings.popularity.weights.als_weight(kind))


def load_database(dsn: str, settings: Settings) -> Interactions:
    """Every persisted interaction, weighted as the workers weight them, in time order."""
    import psycopg

    from .dataset import from_rows

    w = settings.popularity.weights
    with psycopg.connect(dsn) as conn:
        cur = conn.execute(
            "SELECT user_id, product_id, kind, rating, extract(epoch FROM ts)::float8, category, price"
            " FROM interactions ORDER BY ts, source_topic, source_partition, source_offset")
        rows = [(u, p, w.als_weight(k, r), t, c, k, pr, r) for u, p, k, r, t, c, pr in cur]
    if not rows:
        raise ValueError("the database holds no interactions yet")
    return from_rows(rows)


@dataclass
class TrainResult:
    artifact: ModelArtifact
    path: Path
    quality: list[Quality]
    fit_seconds: float
    total_seconds: float


def train_dataset(
    data: Interactions,
    settings: Settings,
    params: ALSParams,
    *,
    source: str,
    evaluate_first: bool = True,
    say: Optional[Callable[[str], None]] = None,
    show_progress: bool = False,
) -> TrainResult:
    started = time.perf_counter()
    say = say or (lambda _s: None)
    quality: list[Quality] = []
    if evaluate_first:
        say("offline evaluation (leave-last-out) ...")
        quality, _ = evaluate(data, params, progress=say if show_progress else None, **eval_options(settings))
    say(f"training ALS on all {len(data)} interactions ...")
    user_f, item_f, fit_seconds = train_als(data.matrix(), params, show_progress=show_progress)
    # Shipped so that a fresh deployment ranks by transitions from its first event (workers cap
    # each item's successors as their stream does, RECSYS_TRANSITIONS_MAX_SUCCESSORS).
    transitions = counts_from_histories(data.users, data.items, data.ts, data.n_items)
    version = new_version()
    artifact = ModelArtifact(
        version=version, item_ids=data.item_ids, item_factors=item_f, user_ids=data.user_ids,
        user_factors=user_f, item_category=data.item_category, params=params.as_dict(),
        transitions=transitions,
        manifest={
            "created_at": time.time(),
            "data": {"source": source, "interactions": len(data), "users": data.n_users, "items": data.n_items,
                     "first_ts": float(data.ts.min()) if len(data) else None,
                     "last_ts": float(data.ts.max()) if len(data) else None},
            "offline_metrics": {q.name: {"ndcg@10": round(q.ndcg, 5), "hr@10": round(q.hr, 5),
                                         "coverage": round(q.coverage, 5)} for q in quality},
            "fit_seconds": round(fit_seconds, 3),
            "transition_pairs": int(transitions.nnz),
            # what the workers' drift detector compares live traffic with (drift/detector.py)
            "reference": training_reference(
                np.asarray(data.item_category, dtype=object)[data.items] if len(data) else [],
                kinds=data.kinds, prices=data.prices, ratings=data.ratings, users=data.users, ts=data.ts,
                window_s=settings.drift.drift_window_s),
        },
    )
    path = save(artifact, settings.training.models_dir)
    if data.n_items >= settings.ranking.ann_min_items:
        say(f"building the HNSW index of {data.n_items:,} items (RECSYS_ANN_MIN_ITEMS={settings.ranking.ann_min_items:,}) ...")
        seconds = save_index(path, item_f)
        say(f"index written to {path / INDEX_FILE} in {seconds:.1f} s: workers read it rather than build it")
    return TrainResult(artifact, path, quality, fit_seconds, time.perf_counter() - started)


async def publish(settings: Settings, artifact: ModelArtifact, path: Optional[Path] = None) -> int:
    """Announce ``artifact`` on amazon-model-updates (key = version); returns the message size.

    Inline while the message fits ``RECSYS_MAX_MODEL_BYTES`` (``RECSYS_MODEL_SHIPPING=auto``),
    else by reference to its saved directory ``path`` (default: ``models_dir/<version>``), which
    the workers must share (ranking/model/payload.py)."""
    import aiokafka

    from ..events.model import TOPIC_MODEL_METRICS, TOPIC_MODEL_UPDATES, metric_record
    from ..kafka.clients import client_kwargs
    from ..ranking.model.announcement import signed
    from ..ranking.model.payload import encode, encode_reference

    created_at = artifact.manifest.get("created_at")
    shipping = settings.training.model_shipping
    # Trained float32 factors barely compress and base64 adds a third: factors larger than the
    # limit on their own cannot fit inline, and compressing hundreds of MB to find out is skipped.
    if shipping == "auto" and artifact.item_factors.nbytes > settings.training.max_model_bytes:
        shipping = "reference"
    value = b""
    if shipping != "reference":
        value = json.dumps(signed(settings, encode(artifact, created_at=created_at))).encode()
    if shipping == "reference" or (shipping == "auto" and len(value) > settings.training.max_model_bytes):
        where = path or Path(settings.training.models_dir) / artifact.version
        if not (where / "manifest.json").exists():
            raise ValueError(f"model {artifact.version} is to ship by reference (over RECSYS_MAX_MODEL_BYTES inline, "
                             f"or RECSYS_MODEL_SHIPPING=reference), but {where} holds no saved artifact")
        value = json.dumps(signed(settings, encode_reference(artifact, where, created_at=created_at))).encode()
        log.info("model %s announced by reference to %s (workers read it from RECSYS_MODELS_DIR)",
                 artifact.version, where)
    if len(value) > settings.training.max_model_bytes:
        raise ValueError(f"model message is {len(value)} bytes, over RECSYS_MAX_MODEL_BYTES={settings.training.max_model_bytes} "
                         f"(RECSYS_MODEL_SHIPPING=auto or reference ships it by reference)")
    producer = aiokafka.AIOKafkaProducer(acks="all", max_request_size=settings.training.max_model_bytes,
                                         **client_kwargs(settings))
    await producer.start()
    try:
        await producer.send_and_wait(TOPIC_MODEL_UPDATES, value=value, key=artifact.version.encode())
        now = time.time()
        for model, figures in (artifact.manifest.get("offline_metrics") or {}).items():
            for metric, figure in figures.items():
                await producer.send_and_wait(TOPIC_MODEL_METRICS, key=artifact.version.encode(), value=json.dumps(metric_record(
                    metric, figure, model_version=artifact.version, timestamp=now,
                    labels={"model": model, "evaluation": "leave-last-out"})).encode())
    finally:
        await producer.stop()
    return len(value)


def train_events(settings: Settings, events: list[tuple[str, dict]], params: ALSParams, source: str) -> TrainResult:
    """Train on (kind, event) pairs as the workers would weigh them (demo and benchmarks)."""
    from .dataset import from_rows

    w = settings.popularity.weights
    data = from_rows((o["user_id"], o["product_id"], w.als_weight(k, o.get("rating")), float(o["timestamp"]),
                      o.get("category"), k, _number(o.get("price")), _number(o.get("rating")))
                     for k, o in events if k != "user-event")
    return train_dataset(data, settings, params, source=source, evaluate_first=False)


def _number(value: object) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
