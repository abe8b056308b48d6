"""kafka/lag.py: records behind from the high watermark and the newest acknowledged offset (or
Faust's committed one), time behind from the processed record's timestamp, idle time for stalls."""

from faust.types import TP

from recsys_faust.kafka.lag import Progress


class Clock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        return self.t


A, B = TP("amazon-product-views", 0), TP("amazon-product-views", 1)
CHANGELOG = TP("recsys-user_profiles-changelog", 0)


def test_lag_counts_records_after_the_newest_ack_and_returns_to_zero():
    clock = Clock()
    p = Progress(clock)
    ends = {A: 50, B: 10, CHANGELOG: 999}
    p.record({A: (29, 1000.0)})                     # offsets 0..29 done on A
    lags = {(l.topic, l.partition): l for l in p.lags([A, B, CHANGELOG], ends.get, {}.get, wall=1012.5)}
    assert set(lags) == {("amazon-product-views", 0), ("amazon-product-views", 1)}  # no changelogs
    assert lags[("amazon-product-views", 0)].records == 20 and lags[("amazon-product-views", 0)].age_s == 12.5
    b = lags[("amazon-product-views", 1)]
    assert b.records == 10 and b.age_s is None     # nothing processed on B: behind, time unknown
    p.record({A: (49, 1010.0), B: (9, 1011.0)})
    assert [(l.records, l.age_s) for l in p.lags([A, B], ends.get, {}.get, wall=1013)] == [(0, 0.0), (0, 0.0)]


def test_faust_committed_offset_counts_when_it_is_further_and_an_older_ack_never_moves_back():
    p = Progress(Clock())
    p.record({A: (10, 1.0)})
    p.record({A: (5, 1.0)})                         # a late, older batch
    assert p.acked[A][""][0] == 10
    (lag,) = p.lags([A], {A: 40}.get, {A: 30}.get)  # the group committed 30 (next to read): another worker's work
    assert lag.records == 10


def test_idle_time_runs_from_the_last_progress_or_from_the_assignment():
    clock = Clock(0.0)
    p = Progress(clock)
    ends = {A: 5, B: 5}.get
    p.lags([A, B], ends, {}.get)                    # first seen at t=0
    clock.t = 30.0
    p.record({A: (2, 1.0)})
    clock.t = 100.0
    idle = {l.partition: l.idle_s for l in p.lags([A, B], ends, {}.get)}
    assert idle == {0: 70.0, 1: 100.0}
    p.lags([A], ends, {}.get)                       # B revoked
    clock.t = 110.0
    idle = {l.partition: l.idle_s for l in p.lags([A, B], ends, {}.get)}
    assert idle[1] == 0.0                           # reassigned: its clock starts again



def test_a_wait_for_the_broker_or_the_database_restarts_every_stall_clock():
    clock = Clock(0.0)
    p = Progress(clock)
    ends = {A: 9, B: 9}.get
    p.record({A: (2, 1.0)})                         # A moved at t=0; B first seen at t=0
    p.lags([A, B], ends, {}.get)
    for t in (10.0, 50.0, 90.0):                    # the broker is unreachable from t=10 to t=90
        clock.t = t
        p.excuse()
    clock.t = 100.0
    idle = {l.partition: l.idle_s for l in p.lags([A, B], ends, {}.get)}
    assert idle == {0: 10.0, 1: 10.0}               # not 100: the wait is not a stall
    clock.t = 95.0
    p.record({A: (5, 2.0)})                         # progress after the wait still counts
    clock.t = 160.0
    idle = {l.partition: l.idle_s for l in p.lags([A, B], ends, {}.get)}
    assert idle == {0: 65.0, 1: 70.0}

def test_the_slowest_agent_sets_records_and_time_behind_the_fastest_sets_idle_time():
    """A sink waiting for its database holds the commit: its records are behind (the lag grows,
    as a restart would read them again), but the worker is not stalled while the processor moves."""
    clock = Clock(0.0)
    p = Progress(clock)
    ends = {A: 100}.get
    p.record({A: (19, 1000.0)}, "event sink")
    clock.t = 50.0
    p.record({A: (99, 1040.0)}, "event processing")
    (lag,) = p.lags([A], ends, {}.get, wall=1060.0)
    assert lag.records == 80 and lag.age_s == 60.0   # from the sink's newest stored record
    assert lag.idle_s == 0.0                          # the processor moved just now
    p.record({A: (99, 1040.0)}, "event sink")
    (lag,) = p.lags([A], ends, {}.get, wall=1060.0)
    assert (lag.records, lag.age_s) == (0, 0.0)
    p.lags([], ends, {}.get)                          # revoked: the agents' progress goes with it
    assert A not in p.acked


def test_time_behind_runs_from_when_the_partition_was_last_caught_up_on_a_partition_written_rarely():
    """The newest processed record is an hour old; the records behind arrived after the
    partition was last seen caught up: the time lag is counted from then, not from an hour ago
    (a short sink hiccup on a quiet partition is no outage)."""
    p = Progress(Clock())
    p.record({A: (9, 1000.0)}, "event sink")
    ends = {A: 10}
    assert p.lags([A], ends.get, {}.get, wall=4600.0)[0].age_s == 0.0      # caught up
    ends[A] = 12                                                              # two new records
    assert p.lags([A], ends.get, {}.get, wall=4601.0)[0].age_s == 1.0
    assert p.lags([A], ends.get, {}.get, wall=4631.0)[0].age_s == 31.0     # waiting since 4600 at most
    # A busy partition always a little behind: the newest processed record bounds it.
    p.record({A: (10, 4630.0)}, "event sink")
    ends[A] = 14
    assert p.lags([A], ends.get, {}.get, wall=4633.0)[0].age_s == 3.0
    # Never seen caught up (a worker started on a backlog): from the newest processed record.
    q = Progress(Clock())
    q.record({A: (9, 1000.0)}, "event sink")
    assert q.lags([A], {A: 20}.get, {}.get, wall=4600.0)[0].age_s == 3600.0


def test_a_batchs_backlog_is_what_waits_behind_its_newest_offset_on_each_of_its_partitions():
    from types import SimpleNamespace

    from recsys_faust.kafka.lag import batch_backlog

    def rec(tp, offset):
        return SimpleNamespace(message=SimpleNamespace(tp=tp, offset=offset))

    class Consumer:
        ends = {A: 500, B: 12}

        def highwater(self, tp):
            if tp not in self.ends:
                raise KeyError(tp)   # not fetched yet
            return self.ends[tp]

    records = [rec(A, 7), rec(A, 9), rec(B, 11), rec(CHANGELOG, 3)]
    # A: 500 - 10 behind offset 9; B: caught up (its end is 12, 11 was the last); the changelog unknown
    assert batch_backlog(Consumer(), records) == 490
    assert batch_backlog(Consumer(), []) == 0
