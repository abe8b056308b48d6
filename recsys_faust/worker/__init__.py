"""One worker: tables, topics, replicated state, processors, agents, views and timers on the app
from ``app.py``, each concern in its own module here.

``faust -A recsys_faust worker`` imports ``recsys_faust.app`` (``recsys_faust/__init__.py``),
which is built by ``build_worker(Settings.from_env())``. Everything in this package is wiring;
the logic lives in the pure core (events, profiles, popularity, ranking, serving) and the thin
processors in ``streaming``.
"""

from __future__ import annotations

from typing import Any, Optional

from .. import metrics
from ..app import RecsysApp, create_app
from ..drift.features import FEATURES, NUMERIC
from ..events.model import INPUT_TOPICS, TOPIC_CATALOGUE, TOPIC_REQUESTS, TOPIC_SERVED
from ..events.protect import FieldCipher
from ..kafka.internals import aiokafka_producer
from ..kafka.lag import batch_backlog, consumer_lags
from ..kafka.topics import plan_from_settings
from ..ranking.policy.ranker import Ranker
from ..ranking.runtime.scorer import make_scorer
from ..serving.service import Recommender
from ..settings import Settings
from ..streaming.deadletters import DeadLetters
from ..drift.monitor import DriftMonitor
from ..online.stats import OnlineStats
from ..ingest import IngestContext, IngestTables, UserEventProcessor
from ..online.monitor import OnlineMonitor, ServedSender
from ..streaming.requests import RequestAnswerer
from ..web.views import WebContext, register_views
from .agents import event_agents, sink_agents
from .collector import BatchCollector
from .health import DatabaseProbe, health_document, readiness_reasons
from .lifecycle import on_started, run_scorer_with_the_worker, timers, tune_process
from .readiness import BrokerProbe
from .replicas import CacheControl, replicate
from .tables import declare_tables
from .handles import declare_topics


async def _publish_model(settings: Settings, artifact: Any) -> int:
    """``POST /api/reload-models``' announcement, as ``train --publish`` makes it (imported when used:
    the training side stays out of a worker that never reloads)."""
    from ..training.train import publish

    return await publish(settings, artifact)


def rebalance_hooks(app: RecsysApp, processor: UserEventProcessor) -> None:
    """What the write path does around a rebalance: its changelogs drained before a partition
    leaves, what it kept read again after one arrives."""
    app.before_commit.append(processor.changelog.drain)

    @app.on_partitions_revoked.connect
    async def drain_changelogs(sender: Any, revoked: Any = None, **kwargs: Any) -> None:
        """Every changelog record of the batches stored so far is acknowledged before a revoked
        partition can go to another worker. Faust's revocation flushes the producer, but a batch
        whose sends wait behind the previous batch's (``ChangelogPipe``) is not in it yet: its
        item entries could then reach the new owner after that owner read their changelog, and
        its profiles before (measured: one event's transitions lost in about one two-worker
        run in three; then, with the drain but no flush after it, in one CI run of several)."""
        await processor.changelog.drain()
        await app.producer.flush()  # handed over is not acknowledged: the new owner must read them
        processor.forget_kept()

    @app.on_partitions_assigned.connect
    async def forget_kept_values(sender: Any, assigned: Any = None, **kwargs: Any) -> None:
        """A partition's recovery writes its store: what the processor kept of it is read again."""
        processor.forget_kept()


def build_worker(settings: Settings) -> RecsysApp:
    tune_process(settings)
    app = create_app(settings)
    n = plan_from_settings(settings).user_partitions
    tables = declare_tables(app, settings, n)
    topics = declare_topics(app, n)
    replicas = replicate(settings, tables.popularity, tables.transitions)
    ranker = Ranker(settings, replicas.popularity, replicas.transitions, replicas.models)
    recommender = Recommender(settings.ranking, tables.profiles, tables.recommendations, ranker,
                              replicas.catalogue.rules)
    cache = CacheControl(settings, recommender.clear_cache, topics.control)
    dead_letters = DeadLetters(topics.dead_letters, settings.process.worker_name, FieldCipher.from_settings(settings))
    drift = DriftMonitor(settings.drift, replicas.models, lambda alert: topics.drift.send(key=alert["feature"], value=alert),
                         worker=settings.process.worker_name)
    scorer = make_scorer(settings.scoring.mode, nice=settings.scoring.scoring_nice, transitions=replicas.transitions)
    def partitions_of(topic: str) -> Optional[int]:
        return app.consumer.topic_partitions(topic) or n

    served = ServedSender(TOPIC_SERVED, lambda: aiokafka_producer(app),
                          lambda: partitions_of(TOPIC_SERVED) or n, linger_s=settings.online.served_linger_ms / 1000)
    online = OnlineMonitor(settings, OnlineStats(), replicas.models, served, catalogue_size=lambda: (
        len(replicas.models.active.item_ids) if replicas.models.active is not None else len(replicas.popularity)))
    run_scorer_with_the_worker(app, scorer)

    processor = UserEventProcessor(IngestContext(
        settings=settings,
        tables=IngestTables(profiles=tables.profiles, recommendations=tables.recommendations,
                            popularity=tables.popularity, transitions=tables.transitions,
                            user_factors=tables.user_factors, event_ids=tables.event_ids,
                            erasures=tables.erasures, answered=tables.answered),
        index=replicas.popularity, ranker=ranker, dead_letters=dead_letters,
        topic_for=lambda name: topics.inputs[name], partitions_of=partitions_of, drift=drift, scorer=scorer,
        assigned=lambda: {(tp.topic, tp.partition) for tp in app.consumer.assignment()}, online=online.stats,
        # counted only where it decides something (RECSYS_DRIFT_MAX_BACKLOG 0: every window judged)
        backlog=(lambda records: batch_backlog(app.consumer, records)) if settings.drift.drift_max_backlog else None,
    ))
    rebalance_hooks(app, processor)
    answerer = RequestAnswerer(
        settings.ingest, recommender=recommender, answered=tables.answered, responses=topics.responses,
        dead_letters=dead_letters, requests_topic=topics.requests, partitions_of=partitions_of,
        served=online.served,
    )
    collector = BatchCollector()
    event_agents(app, settings, topics, processor, answerer, collector)
    sink = sink_agents(app, settings, dead_letters, collector)
    probe = BrokerProbe(settings)
    health = health_document(app, settings, database=DatabaseProbe(settings, sink), recommender=recommender,
                             replicas=replicas, drift=drift, scorer=scorer, probe=probe)
    metrics.preset_series(INPUT_TOPICS, (*FEATURES, *NUMERIC))
    metrics.STATE.lags = lambda: consumer_lags(app.consumer)
    metrics.STATE.readiness = lambda: readiness_reasons(app, settings, probe, replicas, sink)
    metrics.STATE.model_version = lambda: recommender.model_version
    metrics.STATE.online = online.rows
    register_views(app, WebContext(
        settings=settings, recommender=recommender, profiles=tables.profiles, index=replicas.popularity,
        topics={**topics.inputs, TOPIC_REQUESTS: topics.requests, TOPIC_CATALOGUE: topics.catalogue}, health=health,
        readiness=metrics.STATE.readiness, recovering=lambda: bool(getattr(app, "in_recovery", False)),
        models=replicas.models, clear_cache=cache.clear,
        active_users=processor.recent_users.newest,
        publish_model=lambda artifact: _publish_model(settings, artifact),
        models_summary=replicas.registry.summary, served=online.served, online=online.rows,
    ))
    timers(app, settings, drift=drift, popularity=replicas.popularity, system_metrics=topics.system_metrics,
           probe=probe, online=online, collector=collector, readiness=metrics.STATE.readiness)
    on_started(app, settings, (*replicas.tails, cache.tail))
    return app
