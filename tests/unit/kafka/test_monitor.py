"""LeanMonitor drops Faust's per-event bookkeeping but keeps what Faust's consumer reads."""

from __future__ import annotations

import asyncio

from faust.types import TP

from recsys_faust.kafka.monitor import LeanMonitor


def test_stream_inbound_time_is_kept_for_the_consumers_stuck_stream_check():
    loop = asyncio.new_event_loop()
    monitor = LeanMonitor(loop=loop)
    tp = TP("amazon-purchases", 2)
    assert monitor.stream_inbound_time.get(tp) is None
    state = monitor.on_stream_event_in(tp, 7, stream=None, event=None)
    assert monitor.stream_inbound_time[tp] > 0  # verify_event_path sees the stream working
    monitor.on_stream_event_out(tp, 7, stream=None, event=None, state=state)
    assert monitor.events_total == 0 and monitor.events_active == 0  # no per-event counters
    loop.close()
