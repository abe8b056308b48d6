"""Stream buffers that survive the end of a rebalance, and commits that never pass an unacked offset.

**Flow control.** mode's ``FlowControlEvent.resume()`` clears every agent's input buffer.
Faust resumes the flow at the end of its recovery, in ``Recovery._resume_streams``, *after*
it resumed the input partitions and sought them to their committed offsets, and only when
that seek has returned. The fetcher runs meanwhile (the changelog recovery resumed it), so
records fetched in that window are already in the agents' buffers, and Faust's fetch loop has
moved its read offset past them (``Consumer._read_offset``): the clear drops them, unacked,
and the fetch loop drops their second delivery as "already read". An agent that had taken
them from its buffer before the clear applied them; the one that had not never sees them.
Their offsets are never acked by every stream, so the committed offset stops in front of
them for good: a stalled partition, and events missing from PostgreSQL (or from the tables)
while the other agent holds them. Measured before the change: 6 of 8 crash-and-restart runs
on Apache Kafka 4.1 lost between 105 and 424 of 920 events (docs/architecture.md,
"Nothing acknowledged is lost").

Every suspension of the flow (a revocation, a stop) clears the buffers itself
(``App._on_partitions_revoked``, ``App._stop_consumer``) and is followed by a seek to the
committed offsets, which reads everything cleared again. So the clear on resume only ever
dropped records fetched for the new assignment: ``KeepBuffersFlowControl`` resumes without
it. Records delivered both before and after the seek reach the agents twice; every
processor skips replays (``profiles/dedup.py``, the sink's ``ON CONFLICT DO NOTHING``).

**Commits.** ``Consumer._new_offset`` (faust-streaming 0.15.3) commits the first run of
consecutive acked offsets when it starts *one* past the committed offset (``min(acked) -
committed > 1`` is its test), and skips the test when the committed offset is 0. Either way
it commits past a record no stream acked. ``committable_offset`` requires the run to start at
the committed offset.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from mode.utils.queues import FlowControlEvent


class KeepBuffersFlowControl(FlowControlEvent):
    """``FlowControlEvent`` whose ``resume`` keeps what the buffers hold (see module doc)."""

    def resume(self) -> None:
        self._suspend.clear()
        self._resume.set()


def committable_offset(acked: Sequence[int], committed: Optional[int]) -> Optional[int]:
    """The offset to commit (the next one to read) from ``acked``, or None.

    ``acked``: the partition's acked offsets, sorted, without duplicates, none below
    ``committed`` (the next offset to read, or None when the group never committed this
    partition: then the first acked offset starts the run, as in Faust, since the consumer
    began at the reset position).
    """
    if not acked or (committed is not None and acked[0] != committed):
        return None  # the record at ``committed`` is not acked by every stream yet
    last = acked[0]
    for offset in acked[1:]:
        if offset != last + 1:
            break
        last = offset
    return last + 1


def fill_gaps(acked: list[int], gaps: Any) -> None:
    """Faust's own step, unchanged: offsets its fetch loop found skipped (compaction, transaction
    markers; an ``IntervalTree``) up to the highest acked offset count as acked."""
    if not acked or not gaps:
        return
    max_offset = max(acked)
    candidates = sorted(gaps.overlap(0, max_offset), key=lambda iv: iv.begin)
    if candidates:
        filled: list[int] = []
        for iv in candidates:
            filled.extend(range(iv.begin, iv.end))
        acked.extend(filled)
        gaps.chop(0, max(filled[-1], max_offset + 1))


def next_commit(acked: list[int], acked_index: set[int], gaps: Any, committed: Optional[int]) -> Optional[int]:
    """``Consumer._new_offset`` made strict: fills gaps, drops acked offsets below ``committed``
    (done already), and takes the consecutive run that starts at ``committed`` out of ``acked``
    and ``acked_index``; returns the offset to commit, or None."""
    fill_gaps(acked, gaps)
    kept = sorted({o for o in acked if committed is None or o >= committed})
    offset = committable_offset(kept, committed)
    done = kept[: offset - kept[0]] if offset is not None else []
    acked[:] = kept[len(done):]
    acked_index.difference_update(o for o in list(acked_index) if (committed is not None and o < committed))
    acked_index.difference_update(done)
    return offset
