import math

import pytest

from recsys_faust.drift.detector import OTHER, DriftConfig, DriftDetector, psi, training_reference
from recsys_faust.drift.features import price
from recsys_faust.events.model import Event

CFG = DriftConfig(window_s=60, min_events=100, threshold=0.2, max_buckets=5)


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
    assert [price(ev(p)) for p in (0.5, 1, 3, 1023.9, 5000)] == ["<1", "1-2", "2-4", "512-1024", ">=1024"]
