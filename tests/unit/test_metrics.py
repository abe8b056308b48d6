"""The worker's own metrics that are not counted by the agents."""

from __future__ import annotations

import gc

from recsys_faust import metrics


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
