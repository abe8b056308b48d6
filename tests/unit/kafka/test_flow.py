"""Commits never pass an offset no stream acked (kafka/flow.py), and resuming the flow keeps the
agents' buffers."""

import asyncio

from intervaltree import IntervalTree
from mode.utils.queues import FlowControlEvent, FlowControlQueue

from recsys_faust.kafka.flow import KeepBuffersFlowControl, next_commit


def commit(acked, committed, gaps=None):
    acked = list(acked)
    index = set(acked)
    offset = next_commit(acked, index, gaps if gaps is not None else IntervalTree(), committed)
    return offset, acked, index


def test_the_run_must_start_at_the_committed_offset():
    assert commit([11, 12, 13], 10)[0] is None          # Faust commits 14 here: offset 10 lost
    assert commit([10, 11, 13], 10)[:2] == (12, [13])
    assert commit([3, 4], 0)[0] is None                  # Faust skips its check at 0
    assert commit([0, 1], 0)[:2] == (2, [])


def test_without_a_commit_the_first_acked_offset_starts_the_run():
    assert commit([5, 6, 8], None)[:2] == (7, [8])


def test_offsets_below_the_commit_are_dropped_and_duplicates_ignored():
    offset, left, index = commit([5, 6, 9, 9, 10], 9)
    assert (offset, left) == (11, []) and index == set()


def test_skipped_offsets_in_gaps_count_as_acked():
    gaps = IntervalTree()
    gaps.addi(10, 15)                                    # compaction or transaction markers
    assert commit([15, 16], 10, gaps)[:2] == (17, [])


def test_resume_keeps_what_the_buffers_hold_while_stock_resume_clears_it():
    async def held(flow):
        queue = FlowControlQueue(flow_control=flow, clear_on_resume=True)
        flow.suspend()
        queue.put_nowait("record fetched after the seek")
        flow.resume()
        return queue.qsize()

    assert asyncio.run(held(KeepBuffersFlowControl())) == 1
    assert asyncio.run(held(FlowControlEvent())) == 0
