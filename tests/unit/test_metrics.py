"""The worker's own metrics that are not counted by the agents."""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from recsys_faust import metrics
from recsys_faust.loop_watch import LoopWatch


def _count(generation: int) -> float:
    text = metrics.exposition()[0].decode()
    for line in text.splitlines():
        if line.startswith(f'recsys_gc_pause_seconds_count{{generation="{generation}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_every_garbage_collection_is_timed_by_generation_once():
    metrics.time_gc_pauses()
    metrics.time_gc_pauses()  # a second call must not time each collection twice
    before = _count(2)
    gc.collect()
    gc.collect()
    assert _count(2) == before + 2


def _sample(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def _block_the_loop_for(seconds: float) -> None:
    time.sleep(seconds)  # what a blocking call in an agent does to every other task


async def test_loop_watch_times_a_stall_and_logs_the_code_that_caused_it(caplog):
    watch = LoopWatch(asyncio.get_running_loop(), interval_s=0.01, stall_s=0.04)
    over_50ms = lambda: (_sample("recsys_event_loop_lag_seconds_count", {})
                         - _sample("recsys_event_loop_lag_seconds_bucket", {"le": "0.05"}))
    before = over_50ms()
    caplog.set_level(logging.WARNING, logger="recsys_faust.loop_watch")
    watch.start()
    try:
        await asyncio.sleep(0.05)  # a few quick probes first
        _block_the_loop_for(0.2)
        await asyncio.sleep(0.05)  # the watch records the stall once the loop answers
    finally:
        watch.stop()
    # At least the one stall made here (a busy machine may add its own: no exact count on a
    # real clock), and the report of this one names the blocking call, taken during the stall.
    assert over_50ms() >= before + 1
    stalls = [r.getMessage() for r in caplog.records if "event loop stalled" in r.getMessage()]
    assert any("_block_the_loop_for" in s and "time.sleep(seconds)" in s for s in stalls), stalls


def test_loop_watch_refuses_non_positive_intervals():
    import pytest

    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError):
            LoopWatch(loop, interval_s=0, stall_s=0.05)
    finally:
        loop.close()


def test_exposition_can_be_restricted_to_named_families():
    metrics.EVENTS.labels("amazon-purchases", "applied").inc()
    only = metrics.exposition(["recsys_events_total"])[0].decode()
    assert 'recsys_events_total{outcome="applied",topic="amazon-purchases"}' in only
    assert "recsys_batch_seconds" not in only and "recsys_gc_pause_seconds" not in only
    assert "recsys_batch_seconds" in metrics.exposition()[0].decode()
