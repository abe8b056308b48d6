"""Event-loop lag, measured from outside the loop, and the stack of whatever stalls it.

A worker's latency (freshness, serving) is the event loop's latency: an answer or a micro-batch
waits for whatever callback holds the loop. Nothing inside the loop can time a stall it is
stuck in, and a profiler's averages hide rare ones, so a daemon thread pings the loop
(``call_soon_threadsafe``) every ``interval_s`` and times the answer into
``recsys_event_loop_lag_seconds``. If the answer is later than ``stall_s``, the thread takes
the loop thread's stack *while it is stuck* and logs it once per stall: the code to blame, not
the code that ran after.

Cost: one thread wake-up and one loop callback per interval (40 a second at 25 ms).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from typing import Optional

from . import metrics

log = logging.getLogger(__name__)

STACK_FRAMES = 14        # innermost frames logged for a stall
LOG_EVERY_S = 10.0      # under a backlog every batch is a stall: log one, count the rest


class LoopWatch:
    def __init__(self, loop: asyncio.AbstractEventLoop, *, interval_s: float, stall_s: float) -> None:
        if interval_s <= 0 or stall_s <= 0:
            raise ValueError("interval_s and stall_s must be positive")
        self._loop = loop
        self._interval_s = interval_s
        self._stall_s = stall_s
        self._loop_thread_id: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start watching; call from the loop's own thread (its stack is the one sampled)."""
        if self._thread is not None:
            return
        self._loop_thread_id = threading.get_ident()
        self._thread = threading.Thread(target=self._run, name="recsys-loop-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None

    def _run(self) -> None:
        answered = threading.Event()
        last_log, unlogged = float("-inf"), 0
        while not self._stop.wait(self._interval_s):
            answered.clear()
            sent = time.perf_counter()
            try:
                self._loop.call_soon_threadsafe(answered.set)
            except RuntimeError:  # the loop is closed: the worker is stopping
                return
            if not answered.wait(self._stall_s):
                stack = self._loop_stack()
                while not answered.wait(0.5):  # until the stall ends, or the watch is stopped
                    if self._stop.is_set():
                        return
                lag = time.perf_counter() - sent
                if sent - last_log >= LOG_EVERY_S:
                    log.warning("event loop stalled for %.0f ms (%d more stalls over %.0f ms not logged "
                                "since the last report); %.0f ms in, it was at:\n%s", 1000 * lag, unlogged,
                                1000 * self._stall_s, 1000 * self._stall_s, stack)
                    last_log, unlogged = sent, 0
                else:
                    unlogged += 1
            else:
                lag = time.perf_counter() - sent
            metrics.LOOP_LAG.observe(lag)

    def _loop_stack(self) -> str:
        frame = sys._current_frames().get(self._loop_thread_id or -1)
        if frame is None:
            return "  (loop thread not found)"
        return "".join(traceback.format_list(traceback.extract_stack(frame)[-STACK_FRAMES:]))
