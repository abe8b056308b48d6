"""worker/collector.py against the real garbage collector: frozen survivors are out of every
scan, and a cycle frozen before it became garbage is freed by the next sweep."""

from __future__ import annotations

import gc
import weakref

import pytest

from recsys_faust.worker.collector import BatchCollector


class Node:
    def __init__(self) -> None:
        self.other: "Node | None" = None


@pytest.fixture
def clean_gc():
    gc.collect()
    yield
    gc.unfreeze()
    gc.collect()


def test_what_survived_a_batch_is_not_scanned_by_the_young_collections_after_it(clean_gc):
    collector = BatchCollector()
    batch = [[n] for n in range(5_000)]  # a micro-batch's rows, alive between two batches
    row = batch[-1]
    assert any(o is row for o in gc.get_objects())  # in a generation some collection scans
    collector.between_batches()
    assert not any(o is row for o in gc.get_objects())  # in none now
    assert len(gc.get_objects(0)) < 100 and gc.get_freeze_count() >= len(batch)
    del batch  # reference counting still frees frozen objects
    collector.sweep()


def test_a_cycle_frozen_before_it_became_garbage_waits_for_the_sweep_and_no_longer(clean_gc):
    collector = BatchCollector()
    a, b = Node(), Node()
    a.other, b.other = b, a
    gone = weakref.ref(a)
    collector.between_batches()
    del a, b  # garbage now, but only the cycle collector can free it
    gc.collect()  # an ordinary full collection does not see the permanent generation
    assert gone() is not None
    assert collector.sweep() >= 2
    assert gone() is None
    # and the sweep froze again what is still alive
    assert gc.get_freeze_count() > 0
