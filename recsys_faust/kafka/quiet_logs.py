"""aiokafka's repeated connection errors, logged once per interval with a count.

With a broker down and the metadata not yet moved to another leader, aiokafka's fetcher and
client retry the lost node every few milliseconds and log each try at ERROR ("Unable connect to
node with id 1", "Failed fetch messages from 1: NodeNotReadyError"): measured 14,608 lines in
three minutes from one worker during the three-broker failover test. ``RepeatLimiter`` lets the
first of each message (by its format string and logger) through, then one line per
``interval_s`` saying how many were held back.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

#: The loggers whose records are limited (aiokafka and its children).
PREFIX = "aiokafka"


class RepeatLimiter(logging.Filter):
    def __init__(self, interval_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, object], tuple[float, int]] = {}   # (logger, format) -> (shown at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(PREFIX) or record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        now = self._clock()
        shown_at, held = self._last.get(key, (float("-inf"), 0))
        if now - shown_at < self.interval_s:
            self._last[key] = (shown_at, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} (and {held} more like it in the last {now - shown_at:.0f} s)"
        if len(self._last) > 1_000:   # bounded: formats are few; a flood of distinct ones starts over
            self._last.clear()
        self._last[key] = (now, 0)
        return True


def limit_repeats(interval_s: float = 10.0) -> RepeatLimiter:
    """Install one ``RepeatLimiter`` on every handler of the root logger (where Faust's go)."""
    limiter = RepeatLimiter(interval_s)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RepeatLimiter) for f in handler.filters):
            handler.addFilter(limiter)
    return limiter
