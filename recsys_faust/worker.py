"""Wiring: tables, topics, agents, services and views of one worker, on the app from app.py.

``faust -A recsys_faust worker`` imports ``recsys_faust.app`` which is built here from
``Settings.from_env()``. Everything in this module is glue; the logic lives in the pure core
(events, profiles, popularity, serving) and the thin processors in ``streaming``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from typing import Any, Optional

from . import __version__, metrics
from .app import RecsysApp, create_app, rocksdb_options
from .events.model import (
    INPUT_TOPICS,
    TOPIC_CONTROL,
    TOPIC_DATA_DRIFT,
    TOPIC_DEAD_LETTERS,
    TOPIC_MODEL_METRICS,
    TOPIC_MODEL_UPDATES,
    TOPIC_SYSTEM_METRICS,
    TOPIC_REQUESTS,
    TOPIC_RESPONSES,
)
from .kafka import codecs
from .kafka.own_writes import OwnWrites
from .kafka.replicated import ReplicatedChangelog
from .kafka.topics import plan_from_settings
from .loop_watch import LoopWatch
from .popularity.trending import PopularityIndex
from mode import Service

from .ranking.payload import decode as decode_model
from .ranking.scorer import make_scorer
from .sink.writer import PostgresSink, summarize
from .streaming.sink import SinkProcessor
from .ranking.active import ModelHolder
from .ranking.ranker import Ranker
from .ranking.transition_index import TransitionIndex
from .serving.service import Recommender
from .settings import Settings
from .streaming.deadletters import DeadLetters
from .streaming.drift import DriftMonitor
from .streaming.ingest import UserEventProcessor
from .streaming.pipeline import run_batches
from .streaming.requests import RequestAnswerer
from .web.views import WebContext, register_views

log = logging.getLogger("recsys_faust")

DB_CHECK_TTL_S = 5.0


def _offer_models(models: ModelHolder, records: list[tuple[str, Any]]) -> None:
    """Load the newest model announced in ``records`` (older ones are skipped undecoded)."""
    valid = [v for _k, v in records if isinstance(v, dict) and "model_version" in v and "artifact_npz_b64" in v]
    if not valid:
        return
    newest = max(valid, key=lambda v: (float(v.get("created_at") or 0), str(v["model_version"])))
    try:
        models.offer(decode_model(newest), float(newest.get("created_at") or 0))
    except Exception:  # noqa: BLE001 - a broken announcement must not stop the worker
        log.exception("could not load model %s from amazon-model-updates", newest.get("model_version"))


CACHE_EPOCH_KEY = "cache_epoch"


def _apply_control(recommender: Recommender, records: list[tuple[str, Any]]) -> None:
    """Admin state from the control topic (the newest value of each key wins)."""
    for key, value in records:
        if key == CACHE_EPOCH_KEY and isinstance(value, dict):
            try:
                recommender.clear_cache(float(value["cache_epoch"]))
            except (KeyError, TypeError, ValueError):
                log.warning("control topic: ignoring a malformed cache_epoch record %r", value)


def build_worker(settings: Settings) -> RecsysApp:
    # The event loop and the scorer keep both cores busy: a multi-threaded BLAS under them
    # only contends (measured with two BLAS threads: 3,000 instead of 4,900 events/s).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # Measured on a worker under load: full (generation 2) collections every second, 60 to 95 ms
    # each with the event loop stopped, scanning every object of every imported library, and
    # the tail of produce-to-answer latency. A micro-batch's temporaries die young; a larger
    # young generation lets them die before promotion, and gc.freeze() after startup (in
    # ``announce``) takes the libraries' objects out of every later scan.
    gc.set_threshold(settings.gc_gen0_threshold, 20, 20)
    metrics.time_gc_pauses()
    # With RECSYS_SCORING=thread the scoring thread gets the GIL back after each NumPy call it
    # made without it; at Python's default 5 ms switch interval a busy event loop held it that
    # long each time (measured: no gain from the thread), at 0.5 ms the maths overlaps the loop.
    sys.setswitchinterval(settings.gil_switch_interval_s)
    app = create_app(settings)
    plan = plan_from_settings(settings)
    n = plan.user_partitions
    opts = rocksdb_options(settings)

    def user_table(name: str, help_: str) -> Any:
        return app.Table(
            name, default=None, partitions=n, key_type=str, use_partitioner=True, options=dict(opts), help=help_,
        )

    profiles = user_table("user_profiles", "Per-user profile: recent items, counts, windows, affinities")
    recommendations = user_table("recommendations", "Per-user ready top-N list")
    answered = user_table("answered_requests", "Last answered request offset per user and partition")
    user_factors = user_table("user_factors", "Per-user ALS vector folded in from recent interactions")
    # key_type=str: raw UTF-8 keys (kafka/table.StrKeyTable) for changelogs, stores and routing.
    # Keys "<product_id>@<partition>": written only by the owner of that partition, stored and
    # changelogged on it (no use_partitioner), read by every worker through ReplicatedChangelog.
    popularity = app.Table(
        "item_popularity", default=None, partitions=n, key_type=str, options=dict(opts), help="Per-partition item popularity buckets",
    )
    # The same ownership and replication as item_popularity (ranking/transition_index.py).
    transitions = app.Table(
        "item_transitions", default=None, partitions=n, key_type=str, options=dict(opts),
        help="Per-partition item successor counts (what users took next)",
    )

    input_topics = {name: app.topic(name, partitions=n, schema=codecs.RawBytesSchema()) for name in INPUT_TOPICS}
    requests_topic = app.topic(TOPIC_REQUESTS, partitions=n, schema=codecs.RawBytesSchema())
    responses_topic = app.topic(TOPIC_RESPONSES, key_serializer="str", value_serializer="json")
    dead_letters = app.topic(TOPIC_DEAD_LETTERS, key_serializer="raw", value_serializer="json")
    dead_letter_sender = DeadLetters(dead_letters, settings.worker_name)
    all_inputs = app.topic(*INPUT_TOPICS, schema=codecs.RawBytesSchema())

    index = PopularityIndex(
        window_s=settings.trending_window_s,
        bucket_s=settings.popularity_bucket_s,
        refresh_s=settings.trending_refresh_s,
    )
    own_popularity = OwnWrites()  # this worker's popularity records are in the index already
    popularity.on_changelog_sent = own_popularity.add
    replica = ReplicatedChangelog(settings, popularity.changelog_topic.get_topic_name(), index.put_many,
                                  skip=own_popularity.contains)
    transition_index = TransitionIndex()
    own_transitions = OwnWrites()
    transitions.on_changelog_sent = own_transitions.add
    transition_replica = ReplicatedChangelog(settings, transitions.changelog_topic.get_topic_name(),
                                             transition_index.put_many, skip=own_transitions.contains)
    models = ModelHolder(settings.transitions_max_successors)
    model_updates = ReplicatedChangelog(settings, TOPIC_MODEL_UPDATES, lambda recs: _offer_models(models, recs))
    ranker = Ranker(settings, index, transition_index, models)
    recommender = Recommender(settings, profiles, recommendations, ranker)
    control = ReplicatedChangelog(settings, TOPIC_CONTROL, lambda recs: _apply_control(recommender, recs))
    control_topic = app.topic(TOPIC_CONTROL, key_serializer="str", value_serializer=codecs.JSON_CODEC)

    async def clear_cache() -> dict[str, Any]:
        """Set the cluster-wide cache epoch: applied here at once, on every worker via the topic."""
        epoch = time.time()
        await control_topic.send(key=CACHE_EPOCH_KEY, value={
            "cache_epoch": epoch, "worker": settings.worker_name, "timestamp": epoch})
        recommender.clear_cache(epoch)
        metrics.CACHE_CLEARS.inc()
        return {"cleared": True, "cache_epoch": epoch,
                "detail": "ready lists generated before cache_epoch are no longer served, on every worker; "
                          "answers are computed live until each user's next event rebuilds the list"}

    def partitions_of(topic: str) -> Optional[int]:
        return app.consumer.topic_partitions(topic) or n

    drift_topic = app.topic(TOPIC_DATA_DRIFT, key_serializer="str", value_serializer=codecs.JSON_CODEC)
    drift = DriftMonitor(settings, models, lambda alert: drift_topic.send(key=alert["feature"], value=alert))

    scorer = make_scorer(settings.scoring)

    @app.service
    class ScoringService(Service):
        """Starts the scorer (its process: about a second of imports) with the worker, stops it after."""

        async def on_start(self) -> None:
            scorer.start()

        async def on_stop(self) -> None:
            await scorer.close()

    processor = UserEventProcessor(
        settings, profiles=profiles, recommendations=recommendations, popularity=popularity,
        transitions=transitions, user_factors=user_factors, index=index, ranker=ranker,
        dead_letters=dead_letter_sender,
        topic_for=lambda name: input_topics[name], partitions_of=partitions_of, drift=drift,
        scorer=scorer,
    )
    app.before_commit.append(processor.changelog.drain)

    @app.timer(interval=max(0.5, settings.drift_window_s / 10))
    async def close_drift_windows() -> None:
        """Judge a finished drift window even if no event arrives after it."""
        await drift.tick()

    answerer = RequestAnswerer(
        settings, recommender=recommender, answered=answered, responses=responses_topic,
        dead_letters=dead_letter_sender, requests_topic=requests_topic, partitions_of=partitions_of,
    )

    @app.agent(all_inputs, name="user_event_processor")
    async def user_event_processor(stream: Any) -> None:
        """Validate, route and fold input events into tables, a micro-batch at a time.

        Batches are processed while the next is taken (streaming/pipeline.py); events are
        acked after their batch's state is written. An error in processing stops the worker
        rather than acking the batch: restarted, it reads the unacked events again.
        """
        await run_batches(app, stream, processor.process, size=settings.batch_size, within=settings.batch_within,
                          what="event processing")

    @app.agent(requests_topic, name="recommendation_requests")
    async def recommendation_requests(stream: Any) -> None:
        """Answer each recommendation request on the responses topic."""
        async for record in stream.events():
            await answerer.handle(record)

    sink: Optional[PostgresSink] = None
    if settings.database_url:
        sink = PostgresSink(settings.database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
                            max_backoff_s=settings.db_max_backoff_s)
        sinks = SinkProcessor(settings, sink, dead_letter_sender, stopping=lambda: app.should_stop)
        # raw values: the processor decodes them, so bad records are dead-lettered, not skipped

        @app.service
        class SinkPool(Service):
            """Opens the PostgreSQL pool with the worker and closes it after the agents stop."""

            async def on_start(self) -> None:
                await sink.open()

            async def on_stop(self) -> None:
                await sink.close()

        @app.agent(app.topic(*INPUT_TOPICS, schema=codecs.RawBytesSchema()), name="event_sink")
        async def event_sink(stream: Any) -> None:
            """Persist every valid event, a batch per transaction, acked once durable."""
            await run_batches(app, stream, sinks.events, size=settings.sink_batch_size,
                              within=settings.sink_batch_within, what="event sink")

        @app.agent(app.topic(TOPIC_RESPONSES, schema=codecs.RawBytesSchema()), name="response_sink")
        async def response_sink(stream: Any) -> None:
            """Persist every recommendation answer."""
            await run_batches(app, stream, sinks.responses, size=settings.sink_batch_size,
                              within=settings.sink_batch_within, what="response sink")

        @app.agent(app.topic(TOPIC_MODEL_UPDATES, TOPIC_DATA_DRIFT, TOPIC_SYSTEM_METRICS, TOPIC_MODEL_METRICS,
                             schema=codecs.RawBytesSchema()), name="observation_sink")
        async def observation_sink(stream: Any) -> None:
            """Persist model versions (manifests), drift alerts and metric snapshots."""
            await run_batches(app, stream, sinks.observations, size=100, within=settings.sink_batch_within,
                              what="observation sink")

    db_state: dict[str, Any] = {"checked": 0.0, "ok": None, "error": None}

    async def check_database() -> dict[str, Any]:
        if not settings.database_url:
            return {"status": "disabled", "detail": "DATABASE_URL unset: persistence is off"}
        if sink is not None and sink.up is not None:
            return summarize(sink)
        if time.monotonic() - db_state["checked"] > DB_CHECK_TTL_S:
            import psycopg

            try:
                conn = await asyncio.wait_for(psycopg.AsyncConnection.connect(settings.database_url), 2.0)
                await conn.close()
                db_state.update(ok=True, error=None)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                db_state.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
            db_state["checked"] = time.monotonic()
        if db_state["ok"]:
            return {"status": "up"}
        return {"status": "down", "detail": db_state["error"]}

    async def health() -> dict[str, Any]:
        assigned = sorted({tp.partition for tp in app.consumer.assignment() if tp.topic in INPUT_TOPICS}) \
            if app.consumer else []
        broker = {
            "status": "up" if app.consumer and not app.rebalancing else "rebalancing",
            "assigned_partitions": assigned,
            "url": settings.broker,
        }
        database = await check_database()
        status = "degraded" if broker["status"] != "up" or database["status"] == "down" else "ok"
        return {
            "status": status,
            "worker": settings.worker_name,
            "version": __version__,
            "broker": broker,
            "database": database,
            "persistence": "on" if settings.persistence_enabled else "off",
            "model_version": recommender.model_version,
            "cache_epoch": recommender.cache_epoch,
            "drift": drift.status(),
            "scoring": scorer.status(),
            "popularity": {"items": index.n_items(), "caught_up": replica.caught_up.is_set(),
                           "changelog_records_applied": replica.records_seen,
                           "own_records_skipped": replica.records_skipped},
            "transitions": {"entries": len(transition_index), "pairs": transition_index.pairs,
                            "caught_up": transition_replica.caught_up.is_set(),
                            "changelog_records_applied": transition_replica.records_seen,
                            "own_records_skipped": transition_replica.records_skipped},
        }

    register_views(
        app,
        WebContext(
            settings=settings, recommender=recommender, profiles=profiles, index=index,
            topics={**input_topics, TOPIC_REQUESTS: requests_topic}, health=health,
            models=models, clear_cache=clear_cache,
        ),
    )

    system_metrics = app.topic(TOPIC_SYSTEM_METRICS, key_serializer="str", value_serializer="json")

    @app.timer(interval=settings.metrics_snapshot_s)
    async def post_metrics() -> None:
        """Periodic snapshot of this worker's counters to amazon-system-metrics (and so PostgreSQL)."""
        metrics.POPULAR_ITEMS.set(len(index))
        now = time.time()
        for name, value, labels in metrics.snapshot():
            await system_metrics.send(key=settings.worker_name, value={
                "metric": name, "value": value, "worker": settings.worker_name, "timestamp": now,
                **({"labels": labels} if labels else {})})

    @app.task
    async def announce() -> None:
        await app.add_runtime_dependency(replica)
        await app.add_runtime_dependency(transition_replica)
        await app.add_runtime_dependency(model_updates)
        await app.add_runtime_dependency(control)
        gc.collect()
        gc.freeze()
        if settings.loop_watch_interval_s > 0:
            LoopWatch(asyncio.get_running_loop(), interval_s=settings.loop_watch_interval_s,
                      stall_s=settings.loop_stall_log_s).start()
        log.info(
            "recsys-faust worker %s: web UI %s/  API %s/api/  metrics %s/metrics  broker %s",
            settings.worker_name, settings.web_url, settings.web_url, settings.web_url, settings.broker,
        )
        if not settings.persistence_enabled:
            log.warning("DATABASE_URL is not set: PERSISTENCE IS OFF (events are not written to PostgreSQL)")

    return app
