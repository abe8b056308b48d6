"""The agents: thin loops that hand records to the processors in ``streaming/``.

Each agent batches with ``run_batches`` (ack after processing) or answers one record at a time;
what a record does lives in its processor, so it is tested without Faust.
"""

from __future__ import annotations

from typing import Any, Optional

from mode import Service

from ..app import RecsysApp
from ..events.model import INPUT_TOPICS, TOPIC_DATA_DRIFT, TOPIC_ERASURES, TOPIC_MODEL_METRICS, \
    TOPIC_MODEL_UPDATES, TOPIC_RESPONSES, TOPIC_SYSTEM_METRICS
from ..kafka import codecs
from ..settings import Settings
from ..sink.writer import PostgresSink
from ..streaming.deadletters import DeadLetters
from ..ingest import UserEventProcessor
from ..streaming.pipeline import run_batches
from ..streaming.requests import RequestAnswerer
from ..sink.processor import SinkProcessor
from .collector import BatchCollector
from .handles import Topics


def event_agents(app: RecsysApp, settings: Settings, topics: Topics, processor: UserEventProcessor,
                 answerer: RequestAnswerer, collector: BatchCollector) -> None:
    @app.agent(topics.all_inputs, name="user_event_processor")
    async def user_event_processor(stream: Any) -> None:
        """Validate, route and fold input events into tables, a micro-batch at a time.

        Batches are processed while the next is taken (streaming/pipeline.py); events are
        acked after their batch's state is written. An error in processing stops the worker
        rather than acking the batch: restarted, it reads the unacked events again.
        """
        await run_batches(app, stream, processor.process, size=settings.ingest.batch_size, within=settings.ingest.batch_within,
                          what="event processing", keep_unacked=processor.keep_unacked,
                          between_batches=collector.between_batches)

    @app.agent(topics.requests, name="recommendation_requests")
    async def recommendation_requests(stream: Any) -> None:
        """Answer each recommendation request on the responses topic."""
        async for record in stream.events():
            await answerer.handle(record)


def sink_agents(app: RecsysApp, settings: Settings, dead_letters: DeadLetters,
                collector: BatchCollector) -> Optional[PostgresSink]:
    """The PostgreSQL sink's pool and agents, when DATABASE_URL is set; returns the sink."""
    if not settings.sink.database_url:
        return None
    sink = PostgresSink(settings.sink.dsn, min_size=settings.sink.db_pool_min, max_size=settings.sink.db_pool_max,
                        max_backoff_s=settings.sink.db_max_backoff_s, migrate=settings.sink.db_migrate)
    sinks = SinkProcessor(settings, sink, dead_letters, stopping=lambda: app.should_stop)

    @app.service
    class SinkPool(Service):
        """Opens the PostgreSQL pool with the worker and closes it after the agents stop."""

        async def on_start(self) -> None:
            await sink.open()

        async def on_stop(self) -> None:
            await sink.close()

    # Raw values: the processor decodes them, so bad records are dead-lettered, not skipped.
    raw = codecs.RawBytesSchema

    @app.agent(app.topic(*INPUT_TOPICS, schema=raw()), name="event_sink")
    async def event_sink(stream: Any) -> None:
        """Persist every valid event, a batch per transaction, acked once durable."""
        await run_batches(app, stream, sinks.events, size=settings.sink.sink_batch_size,
                          within=settings.sink.sink_batch_within, what="event sink",
                          between_batches=collector.between_batches)

    @app.agent(app.topic(TOPIC_ERASURES, schema=raw()), name="erasure_sink")
    async def erasure_sink(stream: Any) -> None:
        """Delete each erased user's rows from before their erasure, with an audit row."""
        await run_batches(app, stream, sinks.erasures, size=100, within=settings.sink.sink_batch_within,
                          what="erasure sink", between_batches=collector.between_batches)

    @app.agent(app.topic(TOPIC_RESPONSES, schema=raw()), name="response_sink")
    async def response_sink(stream: Any) -> None:
        """Persist every recommendation answer."""
        await run_batches(app, stream, sinks.responses, size=settings.sink.sink_batch_size,
                          within=settings.sink.sink_batch_within, what="response sink",
                          between_batches=collector.between_batches)

    @app.agent(app.topic(TOPIC_MODEL_UPDATES, TOPIC_DATA_DRIFT, TOPIC_SYSTEM_METRICS, TOPIC_MODEL_METRICS,
                         schema=raw()), name="observation_sink")
    async def observation_sink(stream: Any) -> None:
        """Persist model versions (manifests), drift alerts and metric snapshots."""
        await run_batches(app, stream, sinks.observations, size=100, within=settings.sink.sink_batch_within,
                          what="observation sink")

    return sink
