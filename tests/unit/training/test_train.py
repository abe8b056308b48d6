import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.training.als import ALSParams


def test_training_manifest_carries_the_drift_reference(tmp_path):
    from collections import Counter

    from recsys_faust.training.train import train_events
    from recsys_faust.settings import Settings

    events = [e for e in synthetic_events(ShopSpec(users=40, items=60, categories=4, events_per_user=10, seed=2))
              if e[0] != "user-event"]
    result = train_events(Settings().with_overrides(models_dir=tmp_path), events, ALSParams(factors=8, iterations=2), "t")
    ref = result.artifact.manifest["reference"]
    # categories as the interactions have them (an item keeps the first category seen)
    first_cat: dict = {}
    for _, o in events:
        first_cat.setdefault(o["product_id"], o.get("category"))
    counts = Counter(first_cat[o["product_id"]] or "(none)" for _, o in events)
    assert ref["category"] == pytest.approx({c: n / len(events) for c, n in counts.items()})
    assert ref["catalogue"] == {"known": 1.0, "unknown": 0.0}
    # the numeric features as quantile samples of what the events carried, and the event mix
    prices = sorted(float(o["price"]) for _, o in events if isinstance(o.get("price"), (int, float)))
    assert prices, "the synthetic shop should carry prices"
    assert ref["price"]["n"] == len(prices) and ref["price"]["sample"] == pytest.approx(prices, rel=1e-5)
    kinds = Counter(k for k, _ in events)
    assert ref["kind"] == pytest.approx({k: n / len(events) for k, n in kinds.items()})
    per_user = ref["events_per_user"]
    assert per_user["window_s"] == Settings().drift.drift_window_s
    assert sum(per_user["sample"]) == len(events)  # fewer than 1,000 (user, window) cells: all kept
