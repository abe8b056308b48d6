"""worker/readiness.py: the reasons a worker is not ready, decided from gathered facts, and the
broker probe's answer ageing out (injected clock)."""

import asyncio

from recsys_faust.kafka.lag import PartitionLag
from recsys_faust.settings import Settings
from recsys_faust.worker.readiness import BrokerProbe, Facts, ReadinessLog, decide

READY = Facts(consumer_started=True, rebalancing=False, recovering=False, assigned_inputs=2,
              tails_caught_up={"popularity": True, "transitions": True}, broker_reachable=True, broker_detail="")


def facts(**changes):
    return Facts(**{**READY.__dict__, **changes})


def test_ready_only_when_nothing_holds_it_back():
    assert decide(READY, stall_s=60) == []
    assert decide(facts(consumer_started=False), stall_s=60) == ["the consumer has not started"]
    assert decide(facts(rebalancing=True), stall_s=60) == ["rebalancing: partitions are being assigned"]
    assert decide(facts(recovering=True), stall_s=60) == ["recovering tables from their changelogs"]
    assert decide(facts(assigned_inputs=0), stall_s=60) == [
        "no partition of the input topics is assigned to this worker"]
    assert decide(facts(tails_caught_up={"popularity": False, "transitions": True}), stall_s=60) == [
        "catching up on the replicated changelogs: popularity"]
    assert decide(facts(broker_reachable=False, broker_detail="no metadata answer for 7 s"), stall_s=60) == [
        "broker unreachable: no metadata answer for 7 s"]


def test_after_its_first_recovery_a_rebalance_does_not_take_a_worker_out_of_its_load_balancer():
    """Every worker of the group rebalances at once: unready, they would leave the load balancer
    with none. After the first recovery they keep serving (degraded answers for partitions in
    motion); a dead broker or a stall still counts."""
    for change in ({"rebalancing": True}, {"recovering": True}, {"assigned_inputs": 0}):
        assert decide(facts(served_before=True, **change), stall_s=60) == []
        assert decide(facts(served_before=False, **change), stall_s=60) != []
    assert decide(facts(served_before=True, rebalancing=True, broker_reachable=False, broker_detail="x"),
                  stall_s=60) == ["broker unreachable: x"]
    stalled = PartitionLag("amazon-product-views", 1, records=40, age_s=3.0, idle_s=61.0)
    assert decide(facts(served_before=True, lags=(stalled,)), stall_s=60) != []


def test_a_partition_is_stalled_only_with_records_behind_and_no_progress_past_the_limit():
    busy = PartitionLag("amazon-product-views", 1, records=40, age_s=3.0, idle_s=61.0)
    idle_caught_up = PartitionLag("amazon-product-views", 2, records=0, age_s=0.0, idle_s=500.0)
    moving = PartitionLag("amazon-product-views", 3, records=40, age_s=3.0, idle_s=2.0)
    assert decide(facts(lags=(busy, idle_caught_up, moving)), stall_s=60) == [
        "consumer stalled on amazon-product-views[1]: 40 records behind, no progress for 61 s"]
    # Behind a sink waiting for its database, the same partition is held, not stalled: the
    # worker keeps serving (and stays in its load balancer's pool).
    assert decide(facts(lags=(busy,), sink_waiting=True), stall_s=60) == []
    assert decide(facts(lags=(busy,), sink_waiting=True, broker_reachable=False, broker_detail="x"),
                  stall_s=60) == ["broker unreachable: x"]


class Clock:
    t = 0.0

    def __call__(self):
        return self.t


def test_the_broker_probe_is_unreachable_until_an_answer_and_again_once_answers_stop():
    clock = Clock()
    probe = BrokerProbe(Settings(broker="kafka://127.0.0.1:1", ready_broker_timeout_s=6.0), clock=clock)
    assert not probe.reachable                       # never answered
    probe.last_ok = 10.0                             # as probe() records an answer
    clock.t = 15.0
    assert probe.reachable
    clock.t = 16.5
    assert not probe.reachable


def test_a_probe_of_a_closed_port_says_why_and_never_raises():
    async def run():
        probe = BrokerProbe(Settings(broker="kafka://127.0.0.1:9", ready_broker_timeout_s=2.0))
        await probe.probe()
        await probe.close()
        return probe
    probe = asyncio.run(run())
    assert not probe.reachable and "no metadata answer" in probe.detail


def test_readiness_is_logged_once_per_change_of_its_reasons_not_of_their_figures():
    log = ReadinessLog()
    stalled = ["consumer stalled on amazon-product-views[3]: 5 records behind, no progress for 61 s"]
    assert log.update(["the consumer has not started"]) == "not ready: the consumer has not started"
    assert log.update([]) == "ready"
    assert log.update([]) is None
    assert log.update(stalled) == f"not ready: {stalled[0]}"
    assert log.update([stalled[0].replace("61 s", "63 s").replace("5 records", "7 records")]) is None
    second = stalled + ["broker unreachable: no metadata answer for 12 s (KafkaConnectionError: gone)"]
    assert log.update(second) == "not ready: " + "; ".join(second)
    assert log.update([]) == "ready"
