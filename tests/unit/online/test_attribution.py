import itertools
import random

from recsys_faust.events.model import Served
from recsys_faust.online.attribution import A_HIT, Key, fold_answer, fold_interaction
from recsys_faust.online.stats import OnlineStats
from recsys_faust.profiles.profile import new_profile

W = 3600.0
K = Key("m1", "als", "")


def served(at, items, version="m1", strategy="als"):
    return Served("u", at, version, strategy, tuple(items))


def interact(profile, item, ts):
    """What apply_event does to the rows, then the attribution (the processor's order)."""
    profile["recent"].append([item, "purchase", ts, None, None])
    profile["recent"].sort(key=lambda r: r[2])
    return fold_interaction(profile, item, ts, window_s=W)


def replay(order):
    """Fold the answers and interactions in ``order``; returns the stats."""
    profile, stats = new_profile("u"), OnlineStats()
    for kind, *args in order:
        if kind == "answer":
            a = fold_answer(profile, served(*args), window_s=W, kept=5, items_kept=10)
            stats.answered(a.key, a.items, a.hit)
        else:
            i = interact(profile, *args)
            stats.interacted(i.hits, i.exposed, i.from_answer)
    return stats


def test_a_hit_is_counted_once_whichever_topic_is_read_first():
    steps = [("answer", 100.0, ["a", "b"]), ("interaction", "b", 200.0), ("interaction", "a", 300.0),
             ("answer", 1000.0, ["c"]), ("interaction", "z", 1100.0)]
    for order in itertools.permutations(steps):
        fig = replay(order).by_key[K]
        assert (fig.answers, fig.hits) == (2, 1), order
        assert fig.items == {"a", "b", "c"}


def test_an_interaction_before_the_answer_or_after_its_window_is_no_hit():
    stats = replay([("interaction", "a", 50.0), ("answer", 100.0, ["a"]), ("interaction", "a", 100.0 + W + 1)])
    fig = stats.by_key[K]
    assert (fig.answers, fig.hits) == (1, 0)
    assert (fig.exposed, fig.from_answer) == (0, 0)  # the later one is outside the window


def test_the_share_from_recommendations_credits_the_newest_answer_in_force():
    stats = replay([("answer", 100.0, ["a"], "m1", "als"), ("answer", 200.0, ["b"], "m2", "transitions"),
                    ("interaction", "a", 300.0), ("interaction", "x", 400.0)])
    old, new = stats.by_key[Key("m1", "als", "")], stats.by_key[Key("m2", "transitions", "")]
    assert (old.hits, new.hits) == (1, 0)
    # both interactions fall in m2's window (the newest answer in force); "a" came from m1's answer
    assert (new.exposed, new.from_answer, old.exposed, old.from_answer) == (2, 0, 0, 1)
    rows = {r["model_version"]: r for r in stats.rows(catalogue=10)}
    assert rows["m1"]["hit_rate"] == 1.0 and rows["m2"]["hit_rate"] == 0.0 and rows["m2"]["coverage"] == 0.1


def test_answers_are_bounded_and_kept_in_time_order():
    profile = new_profile("u")
    for at in random.Random(1).sample(range(100), 20):
        fold_answer(profile, served(float(at), ["x"] * 30), window_s=W, kept=5, items_kept=10)
    assert len(profile["answers"]) == 5
    assert [a[0] for a in profile["answers"]] == sorted(a[0] for a in profile["answers"])
    assert all(len(a[4]) == 10 and a[A_HIT] == 0 for a in profile["answers"])
