"""``recsys-faust retrain [--watch]``: train on the persisted interactions and publish, now or
whenever the cluster's own measurements say the served model went stale.

The watcher reads three topics with a consumer of its own (no group: it commits nothing and
holds no partitions a worker could want): amazon-model-updates from its beginning (which model
is served, and whether an operator pinned it), amazon-data-drift and amazon-model-metrics. The
decisions are ``training/watch.py``'s; here are only the reading, the training on a thread (the
loop keeps reading meanwhile, so a long fit misses nothing) and the publication. Drift alerts
published before the watcher started are not triggers: they judged traffic it cannot tell is
still current, and an alert that still holds comes again with the next window.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional

import aiokafka
from aiokafka import TopicPartition

from ..events.model import TOPIC_DATA_DRIFT, TOPIC_MODEL_METRICS, TOPIC_MODEL_UPDATES
from ..kafka.clients import client_kwargs
from ..kafka.internals import refresh_metadata
from ..settings import Settings
from ..training.als import ALSParams
from ..training.watch import RetrainPolicy, RetrainWatch, Trigger, passes_gate

Say = Callable[[str], None]


class RetrainError(RuntimeError):
    pass


async def retrain_once(settings: Settings, params: ALSParams, watch: RetrainWatch, say: Say) -> Optional[str]:
    """Train on every persisted interaction and publish the model if it passes the gate against
    the served one; returns the version published, or None (kept on disk, not published)."""
    from ..training.train import load_database, publish, train_dataset

    if not settings.sink.database_url:
        raise RetrainError("retrain trains on the persisted interactions: set DATABASE_URL")
    try:
        data = await asyncio.to_thread(load_database, settings.sink.dsn, settings)
    except Exception as exc:  # noqa: BLE001 - said, and the watcher goes on
        raise RetrainError(f"cannot read interactions from the database: {exc}") from exc
    say(f"training on {len(data):,} interactions ({data.n_users:,} users, {data.n_items:,} items) from the database")
    result = await asyncio.to_thread(train_dataset, data, settings, params, source="postgresql:interactions",
                                     evaluate_first=watch.policy.gate > 0, say=say)
    version = result.artifact.version
    served = watch.registry.chosen()
    ok, why = passes_gate(result.artifact.manifest.get("offline_metrics"),
                          ((served or {}).get("manifest") or {}).get("offline_metrics"), watch.policy.gate)
    if not ok:
        say(f"model {version} written to {result.path}, not published: {why}")
        return None
    try:
        await publish(settings, result.artifact, result.path)
    except Exception as exc:  # noqa: BLE001 - said; the model stays on disk for `train --publish`
        raise RetrainError(f"model {version} written to {result.path}, publishing to {settings.kafka.broker} failed: "
                           f"{type(exc).__name__}: {exc}") from exc
    say(f"model {version} published ({why}; fit {result.fit_seconds:.1f} s, total {result.total_seconds:.1f} s)")
    return version


def _announcement_light(value: Any) -> Any:
    """An announcement without its inline arrays: the watcher needs the manifest only, and a
    topic holding a few 60 MB models should not cost it their size in memory."""
    if isinstance(value, dict) and value.get("artifact_npz_b64"):
        return {**value, "artifact_npz_b64": "-"}
    return value


#: How often ``--heartbeat`` touches its file (a health check allows a few missed beats).
HEARTBEAT_S = 10.0


async def _beat(path: Path) -> None:
    """Touch ``path`` while the event loop runs: a container health check reads its age. The
    fit runs on a thread, so the beat goes on through a retrain of many minutes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        path.touch()
        await asyncio.sleep(HEARTBEAT_S)


async def watch(settings: Settings, params: ALSParams, policy: RetrainPolicy, say: Say, *,
                max_retrains: Optional[int] = None, heartbeat: Optional[Path] = None) -> int:
    """Follow the cluster and retrain when ``policy`` says so; returns the retrains done (only
    with ``max_retrains``: otherwise it runs until cancelled)."""
    beat = asyncio.create_task(_beat(heartbeat)) if heartbeat is not None else None
    try:
        return await _watch(settings, params, policy, say, max_retrains)
    finally:
        if beat is not None:
            beat.cancel()


async def _watch(settings: Settings, params: ALSParams, policy: RetrainPolicy, say: Say,
                 max_retrains: Optional[int]) -> int:
    state = RetrainWatch(policy)
    consumer = aiokafka.AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                         max_partition_fetch_bytes=settings.training.max_model_bytes,
                                         fetch_max_bytes=settings.training.max_model_bytes, fetch_max_wait_ms=200,
                                         **client_kwargs(settings))
    await consumer.start()
    retrains = 0
    try:
        topics = (TOPIC_MODEL_UPDATES, TOPIC_DATA_DRIFT, TOPIC_MODEL_METRICS)
        await refresh_metadata(consumer)
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
        missing = [t for t in topics if not any(tp.topic == t for tp in tps)]
        if missing:
            raise RetrainError(f"topics {', '.join(missing)} do not exist on {settings.kafka.broker} "
                               f"(run `recsys-faust topics apply`)")
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        started = time.time()
        say(f"watching {settings.kafka.broker}: retrain on drift of {', '.join(policy.drift_features) or 'nothing'}"
            + (f", or a hit rate under {policy.min_hit_rate:g} over {policy.min_answers} answers"
               if policy.min_hit_rate > 0 else "")
            + f"; at most once per {policy.cooldown_s:g} s; quality gate {policy.gate:g}")
        while max_retrains is None or retrains < max_retrains:
            batch = await consumer.getmany(timeout_ms=1000)
            trigger: Optional[Trigger] = None
            for records in batch.values():
                for r in records:
                    trigger = _fold(state, r, started, say) or trigger
            if trigger is None:
                continue
            go, why = state.decide(trigger, time.time())
            say(why)
            if not go:
                continue
            state.started(time.time())
            retrains += 1
            try:
                version = await retrain_once(settings, params, state, say)
            except Exception as exc:  # noqa: BLE001 - a failed fit must not end the watch
                say(f"retrain failed: {exc if isinstance(exc, RetrainError) else f'{type(exc).__name__}: {exc}'}")
                continue
            if version is not None:
                state.published(version)
    finally:
        await consumer.stop()
    return retrains


def _fold(state: RetrainWatch, record: Any, started: float, say: Say) -> Optional[Trigger]:
    """One record of the three topics into the watch; a trigger when it is one."""
    try:
        value = json.loads(record.value) if record.value is not None else None
    except ValueError:
        say(f"unreadable record at {record.topic}[{record.partition}]@{record.offset}: skipped")
        return None
    if record.topic == TOPIC_MODEL_UPDATES:
        state.on_model_update(record.key.decode("utf-8") if record.key is not None else "", _announcement_light(value))
        return None
    if record.topic == TOPIC_MODEL_METRICS:
        return state.on_metric(value)  # cumulative counts: older posts matter too
    if record.timestamp / 1000.0 < started:
        return None
    return state.on_drift(value)
