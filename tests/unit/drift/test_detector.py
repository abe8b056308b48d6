import math

import pytest

import numpy as np

from recsys_faust.drift.detector import (OTHER, DriftConfig, DriftDetector, Reservoir, ks_test, psi, quantile_sample,
                                       training_reference)
from recsys_faust.drift.features import price_band
from recsys_faust.events.model import Event

CFG = DriftConfig(window_s=60, min_events=100, threshold=0.2, max_buckets=5, ks_threshold=0.1, ks_alpha=0.01,
                  sample_size=500)


def views(n, categories, start=0):
    return [Event("view", f"e{start + i}", f"u{i % 7}", 1.0, product_id=f"p{i % 11}",
                  category=categories[i % len(categories)]) for i in range(n)]


def test_psi_is_zero_for_equal_distributions_and_matches_the_formula():
    assert psi({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0
    want = (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5)
    assert psi({"a": 0.9, "b": 0.1}, {"a": 0.5, "b": 0.5}) == pytest.approx(want)
    assert psi({"new": 1.0}, {"old": 1.0}) > 10  # disjoint supports: huge, not a division by zero


def test_first_full_window_is_the_baseline_then_a_shift_raises_one_alert():
    d = DriftDetector(CFG)
    assert d.observe(views(300, ["a", "b"]), now=10) == []
    assert d.observe(views(300, ["a", "b"]), now=70) == []   # closes window 0: it becomes the baseline
    assert d.observe(views(300, ["c"]), now=130) == []       # closes window 60: same mix, no alert
    assert d.last_values["category"] == pytest.approx(0.0, abs=1e-9)
    alerts = d.observe([], now=190)                          # closes window 120: all "c"
    assert [a["feature"] for a in alerts] == ["category"]
    a = alerts[0]
    assert a["statistic"] == "psi" and a["value"] > 0.2 and a["threshold"] == 0.2
    assert (a["window_start"], a["window_end"]) == (120, 180)
    assert a["reference"]["source"] == "baseline:0" and a["reference"]["distribution"] == {"a": 0.5, "b": 0.5}
    assert a["details"] == {"events": 300, "window": {OTHER: 1.0}}


def test_small_windows_are_not_judged():
    d = DriftDetector(CFG)
    d.observe(views(300, ["a"]), now=0)
    d.observe(views(50, ["z"]), now=60)   # baseline closed; 50 < min_events
    assert d.observe([], now=120) == [] and "category" not in d.last_values


def test_model_reference_and_unknown_items():
    d = DriftDetector(CFG)
    ref = training_reference(["a", "a", "b", None])
    assert ref["category"] == {"a": 0.5, "b": 0.25, "(none)": 0.25} and ref["catalogue"] == {"known": 1.0, "unknown": 0.0}
    known = {f"p{i}" for i in range(5)}  # p5..p10 are new items
    d.observe(views(300, ["a", "b", "(none)", "a"]), now=0, known_items=known)
    alerts = d.observe([], now=60, model_reference=ref, model_version="m1", known_items=known)
    by_feature = {a["feature"]: a for a in alerts}
    assert set(by_feature) == {"catalogue"}  # categories match the training mix; items do not
    assert by_feature["catalogue"]["reference"]["source"] == "model:m1"
    assert by_feature["catalogue"]["details"]["window"]["unknown"] == pytest.approx(6 / 11, abs=0.01)


def test_price_bands():
    ev = lambda p: Event("purchase", "e", "u", 1.0, product_id="p", price=p)
    assert [price_band(ev(p)) for p in (0.5, 1, 3, 1023.9, 5000)] == ["<1", "1-2", "2-4", "512-1024", ">=1024"]


def purchases(prices, start=0, users=50):
    return [Event("purchase", f"e{start + i}", f"u{i % users}", 1.0, product_id=f"p{i % 11}", category="a", price=p)
            for i, p in enumerate(prices)]


def test_a_price_shift_against_the_manifest_raises_one_ks_alert_from_the_first_window():
    rng = np.random.default_rng(7)
    ref = training_reference(["a"] * 5000, prices=rng.lognormal(3.0, 0.5, 5000))
    assert len(ref["price"]["sample"]) == 1000 and ref["price"]["n"] == 5000
    d = DriftDetector(CFG)
    # the same distribution: judged against the manifest at once (no baseline window), no alert
    d.observe(purchases(rng.lognormal(3.0, 0.5, 400)), now=0)
    assert [a for a in d.observe([], now=60, model_reference=ref, model_version="m1") if a["feature"] == "price"] == []
    assert d.last_ks["price"] < 0.1 and "price" not in d.numeric_baseline
    # prices up by a quarter: a shift inside most power-of-two bands, plain to the KS test
    d.observe(purchases(rng.lognormal(3.0, 0.5, 400) * 1.25, start=1000), now=61)
    alerts = d.observe([], now=120, model_reference=ref, model_version="m1")
    assert [(a["feature"], a["statistic"]) for a in alerts] == [("price", "ks")]
    a = alerts[0]
    assert a["value"] > a["threshold"] == 0.1 and a["details"]["p_value"] < 0.01
    assert a["reference"]["source"] == "model:m1" and a["reference"]["n"] == 5000
    assert a["details"]["window"]["p50"] > a["reference"]["summary"]["p50"] * 1.1
    assert (a["window_start"], a["window_end"]) == (60, 120)


def test_numeric_features_without_a_reference_take_the_first_window_as_baseline():
    rng = np.random.default_rng(3)
    d = DriftDetector(CFG)
    d.observe(purchases(rng.uniform(10, 20, 300)), now=0)
    assert d.observe([], now=60) == [] and set(d.numeric_baseline) == {"price", "events_per_user"}
    d.observe(purchases(rng.uniform(10, 20, 300), start=300), now=61)
    assert d.observe([], now=120) == []
    d.observe(purchases(rng.uniform(30, 40, 300), start=600), now=121)
    alerts = d.observe([], now=180)
    assert [(a["feature"], a["statistic"], a["value"]) for a in alerts] == [("price", "ks", 1.0)]
    assert alerts[0]["reference"]["source"] == "baseline:0"


def test_events_per_user_is_judged_against_the_training_windows():
    # training: 200 users, each with 3 interactions inside one 60 s window
    users = np.repeat(np.arange(200), 3)
    ts = np.repeat(np.arange(200) * 600.0, 3) + np.tile([0.0, 1.0, 2.0], 200)
    ref = training_reference(["a"] * 600, users=users, ts=ts, window_s=60)
    assert ref["events_per_user"]["sample"] == [3.0] * 200 and ref["events_per_user"]["window_s"] == 60
    d = DriftDetector(CFG)
    d.observe(purchases([5.0] * 600, users=200), now=0)    # 3 events per user: as trained
    assert "events_per_user" not in {a["feature"] for a in d.observe([], now=60, model_reference=ref, model_version="m")}
    d.observe(purchases([5.0] * 600, start=600, users=20), now=61)  # 30 per user: a bot-like burst
    alerts = {a["feature"]: a for a in d.observe([], now=120, model_reference=ref, model_version="m")}
    assert alerts["events_per_user"]["statistic"] == "ks" and alerts["events_per_user"]["value"] == 1.0
    # a reference taken with another window length is not comparable: this worker's baseline instead
    other = DriftDetector(DriftConfig(**{**CFG.__dict__, "window_s": 30}))
    other.observe(purchases([5.0] * 600, users=20), now=0)
    assert other.observe([], now=30, model_reference=ref, model_version="m") == []
    assert "events_per_user" in other.numeric_baseline


def test_quantile_sample_keeps_the_distribution_within_one_over_its_size():
    values = np.random.default_rng(1).exponential(10.0, 50_000)
    sample = quantile_sample(values, 1000)
    assert len(sample) == 1000 and sample == sorted(sample)
    d, _ = ks_test(sample, values)
    assert d <= 1 / 1000 + 1e-3
    assert quantile_sample([3.0, float("nan"), 1.0], 1000) == [1.0, 3.0]


def test_reservoir_is_bounded_uniform_and_seeded():
    import random
    a, b = Reservoir(100, random.Random("s")), Reservoir(100, random.Random("s"))
    for v in range(10_000):
        a.add(float(v))
        b.add(float(v))
    assert len(a.values) == 100 and a.seen == 10_000 and a.values == b.values
    assert 3000 < np.mean(a.values) < 7000  # drawn from the whole stream, not its start


def test_reservoir_add_many_draws_the_same_sample_as_add_one_at_a_time():
    import random
    one, many = Reservoir(100, random.Random("s")), Reservoir(100, random.Random("s"))
    values = [float(v) for v in range(5_000)]
    for v in values:
        one.add(v)
    for chunk in (values[:40], values[40:41], values[41:2_000], [], values[2_000:]):  # across the fill point
        many.add_many(chunk)
    assert many.seen == one.seen == 5_000 and many.values == one.values


def test_a_batch_is_counted_as_its_events_one_at_a_time():
    events = views(300, ["a", "b", None]) + [
        Event("purchase", f"x{i}", f"u{i}", 2.0, product_id=f"p{i}", price=float(i), rating=None) for i in range(50)]
    one, batch = DriftDetector(CFG), DriftDetector(CFG)
    for ev in events:
        one.observe([ev], 1.0, known_items={"p1", "p2"})
    batch.observe(iter(events), 1.0, known_items={"p1", "p2"})
    assert batch.events == one.events == 350
    assert batch.counts == one.counts and batch.per_user == one.per_user
    assert batch.counts["catalogue"] == {"known": sum(e.product_id in {"p1", "p2"} for e in events),
                                         "unknown": sum(e.product_id not in {"p1", "p2"} for e in events)}
    assert {k: r.values for k, r in batch.samples.items()} == {k: r.values for k, r in one.samples.items()}


def test_a_window_read_from_a_backlog_is_neither_judged_nor_a_baseline():
    """A backlog is read at each topic's own pace: for a while a window holds one topic's hour
    and another's minute. Such a window raises nothing and is not the baseline; the next live
    window is judged as usual."""
    d = DriftDetector(CFG)
    d.observe(views(300, ["a", "b"]), now=10, catching_up=True)
    d.observe(views(300, ["z"]), now=20)                      # the same window, live again
    assert d.observe(views(300, ["a", "b"]), now=70) == [] and d.skipped == 1
    assert d.baseline == {} and d.numeric_baseline == {}      # window 0 made no baseline
    assert d.observe(views(300, ["c"]), now=130) == []         # window 60: the baseline {a, b}
    assert d.baseline["category"].source == "baseline:60"
    assert d.observe(views(300, ["c"]), now=150, catching_up=True) == []
    assert d.observe([], now=190) == [] and d.skipped == 2     # all "c", but read from a backlog
    alerts = d.observe([], now=250)                            # window 180 empty: nothing to judge
    assert alerts == [] and d.skipped == 2
    d.observe(views(300, ["c"]), now=260)
    assert [a["feature"] for a in d.observe([], now=310)] == ["category"]   # live: judged
