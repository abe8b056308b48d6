"""Process tuning before the app exists, and what runs once it started: the replicas' tails,
the scorer, the periodic timers and the start-up log line that says where to look."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import sys
import time
from typing import Any, Awaitable, Callable, Iterable, Sequence

from mode import Service

from .. import metrics
from ..app import RecsysApp
from ..events.model import metric_record
from ..kafka.replicated import ReplicatedChangelog
from ..loop_watch import LoopWatch
from ..settings import Settings
from ..web.auth import modes as auth_modes
from .collector import BatchCollector
from .readiness import ReadinessLog

from ..kafka.quiet_logs import limit_repeats

log = logging.getLogger("recsys_faust")


def periodic(job: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A timer's body that logs its failure and runs again at its next tick.

    A Faust timer that raises crashes the whole worker (faust-streaming 0.11: the app's
    ``_execute_task`` calls ``crash``). A periodic job is worth less than that: the post of the
    online figures raised ``ProducerClosed`` when a stop closed its producer during a broker
    outage, and turned the stop into a crash. What must not be lost is never sent from a timer.
    """

    @functools.wraps(job)
    async def run() -> None:
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - logged with its traceback; the next tick tries again
            log.exception("periodic job %s failed; it runs again at its next tick", job.__name__)

    return run


def tune_process(settings: Settings) -> None:
    """Threads, garbage collection and the GIL, set for a worker before anything starts."""
    # The event loop and the scorer keep both cores busy: a multi-threaded BLAS under them
    # only contends (measured with two BLAS threads: 3,000 instead of 4,900 events/s).
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    # Measured on a worker under load: full (generation 2) collections every second, 60 to 95 ms
    # each with the event loop stopped, scanning every object of every imported library, and
    # the tail of produce-to-answer latency. gc.freeze() after startup (in ``on_started``) takes
    # the libraries' objects out of every later scan, and between micro-batches what survived
    # (worker/collector.py); the young threshold is above what one micro-batch allocates.
    gc.set_threshold(settings.process.gc_gen0_threshold, 20, 20)
    metrics.time_gc_pauses()
    # With RECSYS_SCORING=thread the scoring thread gets the GIL back after each NumPy call it
    # made without it; at Python's default 5 ms switch interval a busy event loop held it that
    # long each time (measured: no gain from the thread), at 0.5 ms the maths overlaps the loop.
    sys.setswitchinterval(settings.process.gil_switch_interval_s)


def run_scorer_with_the_worker(app: RecsysApp, scorer: Any) -> None:
    @app.service
    class ScoringService(Service):
        """Starts the scorer (its process: about a second of imports) with the worker, stops it after."""

        async def on_start(self) -> None:
            scorer.start()

        async def on_stop(self) -> None:
            await scorer.close()


def timers(app: RecsysApp, settings: Settings, *, drift: Any, popularity: Any, system_metrics: Any,
           probe: Any, online: Any, collector: BatchCollector, readiness: Callable[[], Sequence[str]]) -> None:
    @app.timer(interval=settings.process.gc_sweep_interval_s)
    @periodic
    async def sweep_garbage() -> None:
        """The full collection of what micro-batches froze (worker/collector.py)."""
        collector.sweep()

    readiness_log = ReadinessLog()

    @app.timer(interval=probe.interval_s, on_leader=False)
    @periodic
    async def probe_broker() -> None:
        """Readiness's view of the broker: a metadata request on a client of its own; then
        readiness itself, logged when it changes."""
        await probe.probe()
        line = readiness_log.update(readiness())
        if line is not None:
            (log.info if line == "ready" else log.warning)("worker %s is %s", settings.process.worker_name, line)

    @app.service
    class BrokerProbeService(Service):
        """Closes the probe's client with the worker."""

        async def on_stop(self) -> None:
            await probe.close()

    @app.timer(interval=max(0.5, settings.drift.drift_window_s / 10))
    @periodic
    async def close_drift_windows() -> None:
        """Judge a finished drift window even if no event arrives after it."""
        await drift.tick()

    @app.service
    class OnlineMetricsProducer(Service):
        """The producer of the online figures (amazon-model-metrics), with the worker."""

        async def on_start(self) -> None:
            await online.start()

        async def on_stop(self) -> None:
            await online.stop()

    @app.timer(interval=settings.online.online_metrics_s)
    @periodic
    async def post_online_metrics() -> None:
        """This worker's online figures (hit rate, share from recommendations, coverage) per
        model version, strategy and variant to amazon-model-metrics."""
        await online.post()

    @app.timer(interval=settings.process.metrics_snapshot_s)
    @periodic
    async def post_metrics() -> None:
        """Periodic snapshot of this worker's counters to amazon-system-metrics (and so PostgreSQL)."""
        metrics.POPULAR_ITEMS.set(len(popularity))
        now = time.time()
        for name, value, labels in metrics.snapshot():
            await system_metrics.send(key=settings.process.worker_name, value=metric_record(
                name, value, worker=settings.process.worker_name, timestamp=now, labels=labels))


def on_started(app: RecsysApp, settings: Settings, tails: Iterable[ReplicatedChangelog]) -> None:
    tails = tuple(tails)

    @app.task
    async def announce() -> None:
        limit_repeats()   # Faust has set up its log handlers by now
        for tail in tails:
            await app.add_runtime_dependency(tail)
        gc.collect()
        gc.freeze()
        if settings.process.loop_watch_interval_s > 0:
            LoopWatch(asyncio.get_running_loop(), interval_s=settings.process.loop_watch_interval_s,
                      stall_s=settings.process.loop_stall_log_s).start()
        log.info(
            "recsys-faust worker %s: web UI %s/  API %s/api/  metrics %s/metrics  broker %s",
            settings.process.worker_name, settings.web.web_url, settings.web.web_url, settings.web.web_url, settings.kafka.broker,
        )
        open_scopes = [scope for scope, mode in auth_modes(settings).items() if mode == "open"]
        if open_scopes:
            log.warning("NO TOKENS for %s routes: anyone who reaches this worker may use them "
                        "(set RECSYS_READ_TOKENS, RECSYS_INGEST_TOKENS, RECSYS_METRICS_TOKEN)", ", ".join(open_scopes))
        if not settings.sink.persistence_enabled:
            log.warning("DATABASE_URL is not set: PERSISTENCE IS OFF (events are not written to PostgreSQL)")
