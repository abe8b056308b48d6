"""aiokafka's repeated errors once per interval, with a count (kafka/quiet_logs.py)."""

import logging

from recsys_faust.kafka.quiet_logs import RepeatLimiter


def record(name: str, msg: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, (1,), None)


def test_a_flood_becomes_one_line_per_interval_with_the_count():
    now = [0.0]
    limiter = RepeatLimiter(10.0, clock=lambda: now[0])
    shown = []
    for i in range(500):
        now[0] = i * 0.005                     # every 5 ms for 2.5 s
        r = record("aiokafka.conn", "Unable connect to node with id %s")
        if limiter.filter(r):
            shown.append(r.getMessage())
    now[0] = 12.0
    r = record("aiokafka.conn", "Unable connect to node with id %s")
    assert limiter.filter(r)
    shown.append(r.getMessage())
    assert shown == ["Unable connect to node with id 1",
                     "Unable connect to node with id 1 (and 499 more like it in the last 12 s)"]


def test_other_loggers_other_messages_and_info_pass():
    limiter = RepeatLimiter(10.0, clock=lambda: 0.0)
    assert limiter.filter(record("aiokafka.conn", "a %s")) and not limiter.filter(record("aiokafka.conn", "a %s"))
    assert limiter.filter(record("aiokafka.conn", "b %s"))
    assert limiter.filter(record("recsys_faust", "a %s")) and limiter.filter(record("recsys_faust", "a %s"))
    assert limiter.filter(record("aiokafka.conn", "a %s", logging.INFO))
