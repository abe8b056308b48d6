"""benchmarks/suite.py: CpuMeter, the CPU per event the throughput rows report."""

from __future__ import annotations

import math
import os
import time

from benchmarks.suite import CpuMeter


def test_cpu_per_event_is_the_cpu_spent_since_the_start_over_the_events_counted_since():
    meter = CpuMeter(os.getpid(), None)  # a process not known yet (the scoring pid) is left out
    meter.start(1_000)
    before = time.process_time()
    while time.process_time() - before < 0.3:  # burn CPU in this process
        pass
    spent = time.process_time() - before
    per_event = meter.us_per_event(1_100)
    # /proc counts in clock ticks (10 ms): the figure is this process's CPU over 100 events.
    assert abs(per_event * 100 / 1e6 - spent) < 0.05, (per_event, spent)


def test_no_figure_before_a_start_or_without_events():
    meter = CpuMeter(os.getpid())
    assert math.isnan(meter.us_per_event(10))
    meter.start(10)
    assert math.isnan(meter.us_per_event(10))
