"""Two workers in one group: a rebalance mid-stream keeps state exact, and either port answers
for every user (requests are routed to the owning worker)."""

from __future__ import annotations

import time

import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.kafka.partitioning import user_partition

from .helpers import Model, across_midnight, get, http, produce_events, wait_until

pytestmark = pytest.mark.integration
N_USERS = 240
END = across_midnight()
# A long commit interval makes the rebalance replay many processed-but-uncommitted events.
TOKEN = "two-workers-token"
SLOW_COMMIT = {"RECSYS_BROKER_COMMIT_INTERVAL": "5", "RECSYS_API_TOKEN": TOKEN}


@pytest.fixture(scope="module")
def events():
    return synthetic_events(ShopSpec(users=N_USERS, items=150, categories=6, events_per_user=8, seed=5), end=END)


@pytest.fixture(scope="module")
def model(events):
    return Model(events)


@pytest.fixture(scope="module")
def workers(stack, events, model):
    w1 = stack.add_worker("w1", extra_env=SLOW_COMMIT)
    half = len(events) // 2
    produce_events(stack.broker.bootstrap, events[:half])
    # let w1 process part of the first half, then have w2 join while more events arrive
    wait_until(lambda: get(f"{w1.url}/api/users/{events[half // 2][1]['user_id']}/profile")[0] == 200, 30)
    w2 = stack.add_worker("w2", extra_env=SLOW_COMMIT, wait=False)
    for start in range(half, len(events), 200):
        produce_events(stack.broker.bootstrap, events[start:start + 200])
        time.sleep(0.2)
    w2.wait_ready()
    users = sorted(model.by_user)

    def settled() -> bool:
        return all(get(f"{w1.url}/api/users/{u}/profile")[1].get("counts") == model.counts(u) for u in users)

    wait_until(settled, 120, interval=1, what="every profile exact after the rebalance")
    return w1, w2


def _owners(workers) -> dict[int, str]:
    owners = {}
    for w in workers:
        status, health = get(f"{w.url}/api/health")
        for p in health["broker"]["assigned_partitions"]:
            owners[p] = w.name
    return owners


def test_partitions_are_shared_between_the_workers(workers):
    owners = _owners(workers)
    assert sorted(owners) == [0, 1, 2, 3]
    assert set(owners.values()) == {"w1", "w2"}


def test_state_is_exact_after_a_rebalance(workers, model):
    """Replays happened (the metric says so) and changed nothing (counts are exact)."""
    replays = not_owned = 0.0
    for w in workers:
        _, text = http("GET", f"{w.url}/metrics")
        for line in text.splitlines():
            if line.startswith("recsys_events_total{") and 'outcome="replay"' in line:
                replays += float(line.rsplit(" ", 1)[1])
            if line.startswith("recsys_events_total{") and 'outcome="not_owned"' in line:
                not_owned += float(line.rsplit(" ", 1)[1])
    for u in sorted(model.by_user):
        status, prof = get(f"{workers[1].url}/api/users/{u}/profile")
        assert status == 200 and prof["counts"] == model.counts(u), u
    print(f"replayed events skipped: {replays:.0f}; records of revoked partitions left to their new owner: "
          f"{not_owned:.0f}")


def test_every_user_is_served_correctly_from_either_port(workers, model):
    owners = _owners(workers)
    by_owner = {"w1": 0, "w2": 0}
    for u in sorted(model.by_user):
        by_owner[owners[user_partition(u, 4)]] += 1
        answers = []
        for w in workers:
            status, prof = get(f"{w.url}/api/users/{u}/profile")
            assert status == 200 and prof["counts"] == model.counts(u), (u, w.name)
            status, recs = get(f"{w.url}/api/recommendations/{u}?k=10")
            assert status == 200 and recs["strategy"] in ("transitions", "popular_affinity")
            assert not {i["product_id"] for i in recs["items"]} & model.seen(u)
            answers.append([i["product_id"] for i in recs["items"]])
        assert answers[0] == answers[1], u
    assert by_owner["w1"] > 0 and by_owner["w2"] > 0 and sum(by_owner.values()) >= 200


def test_transitions_are_exact_on_both_workers(workers, model):
    """Each worker counts its own partitions' pairs and reads the other's from the changelog:
    both answer "what users took next" exactly, replays in the rebalance included."""
    successors = model.successors()
    assert len(successors) > 50

    def wrong(w) -> dict:
        return model.wrong_successors(w.url, sorted(successors))

    try:
        wait_until(lambda: not wrong(workers[0]) and not wrong(workers[1]), 30, interval=1,
                   what="every item's successors on both workers")
    except AssertionError:
        raise AssertionError("items whose successors differ from the model, (worker, model) counts: "
                             + "; ".join(f"{w.name}: {wrong(w)}" for w in workers)) from None


def test_clear_cache_on_one_worker_reaches_the_other(workers, model):
    w1, w2 = workers
    owners = _owners(workers)
    user = next(u for u in sorted(model.by_user) if owners[user_partition(u, 4)] == "w2")
    status, before = get(f"{w2.url}/api/recommendations/{user}?k=5")
    assert status == 200
    assert http("POST", f"{w1.url}/api/clear-cache")[0] == 401
    status, body = http("POST", f"{w1.url}/api/clear-cache", headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body["cleared"] is True
    epoch = body["cache_epoch"]
    assert before["generated_at"] < epoch  # it was the ready list, built when the user's events came in
    wait_until(lambda: get(f"{w2.url}/api/health")[1]["cache_epoch"] == epoch, 15, what="w2 to apply the epoch")
    # asked on w1, answered by w2 (the owner): computed now, not the cached list
    status, after = get(f"{w1.url}/api/recommendations/{user}?k=5")
    assert status == 200 and after["generated_at"] >= epoch
    assert not {i["product_id"] for i in after["items"]} & model.seen(user)
