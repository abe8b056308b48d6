"""Which partition a table write belongs to, inside a micro-batch.

Faust decides where a table write goes (the RocksDB partition store, and for tables without
``use_partitioner`` the changelog partition) from the *current event* context variable. In a
``take_events()`` batch that variable names whichever event came last, often of another
partition, so writing user A's profile while it names user B's event would file A's state
under B's partition. ``as_current(event)`` sets it to an event of the key's own partition for
the duration of the write.
"""

from __future__ import annotations

import weakref
from contextlib import contextmanager
from typing import Iterator

from faust.streams import _current_event  # the context variable behind faust.current_event()
from faust.types import EventT


@contextmanager
def as_current(event: EventT) -> Iterator[None]:
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
