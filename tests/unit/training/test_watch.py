"""When ``retrain --watch`` retrains (training/watch.py): each rule, and what must not trigger."""

import pytest

from recsys_faust.drift.features import EVENTS_PER_USER, FEATURES, NUMERIC
from recsys_faust.ranking.model.registry import ACTIVE_KEY
from recsys_faust.settings import DRIFT_FEATURES, Settings, SettingsError
from recsys_faust.training.watch import RetrainPolicy, RetrainWatch, passes_gate


def announce(w: RetrainWatch, version: str, at: float, ndcg: float = 0.06) -> None:
    w.on_model_update(version, {"model_version": version, "artifact_npz_b64": "-", "published_at": at,
                                "manifest": {"n_items": 3, "factors": 8, "offline_metrics": {"als+transitions": {"ndcg@10": ndcg}}}})


def alert(feature: str, source: str) -> dict:
    return {"feature": feature, "statistic": "psi", "value": 0.9, "threshold": 0.2, "reference": {"source": source}}


def post(version: str, worker: str, at: float, answers: int, hits: int, variant: str = "") -> dict:
    return {"metric": "online_hit_rate", "value": hits / max(answers, 1), "model_version": version, "timestamp": at,
            "labels": {"worker": worker, "strategy": "als+transitions", "variant": variant, "answers": answers, "hits": hits}}


def test_a_drift_alert_triggers_only_on_a_chosen_feature_judged_against_the_served_model():
    w = RetrainWatch(RetrainPolicy(drift_features=("catalogue", "price")))
    assert w.on_drift(alert("catalogue", "model:m1")) is None   # nothing served yet
    announce(w, "m1", 10)
    announce(w, "m2", 20)
    t = w.on_drift(alert("catalogue", "model:m2"))
    assert t is not None and t.kind == "drift" and t.model_version == "m2" and "catalogue" in t.detail
    assert w.on_drift(alert("price", "model:m2")) is not None
    assert w.on_drift(alert("catalogue", "model:m1")) is None          # about a model replaced already
    assert w.on_drift(alert("catalogue", "baseline:1700000000")) is None  # a worker's own first window
    assert w.on_drift(alert("category", "model:m2")) is None           # not a chosen feature
    assert w.on_drift("not an alert") is None and w.on_drift({"feature": "catalogue"}) is None


def test_the_hit_rate_is_the_clusters_newest_posts_summed_and_judged_from_min_answers_on():
    w = RetrainWatch(RetrainPolicy(min_hit_rate=0.05, min_answers=1000))
    announce(w, "m1", 10)
    assert w.on_metric(post("m1", "w1", 100, 400, 4)) is None          # 400 answers: too few to judge
    assert w.on_metric(post("m1", "w1", 160, 700, 7)) is None          # w1's newer post replaces its older one
    assert w.answers_and_hits() == (700, 7)
    assert w.on_metric(post("m1", "w1", 130, 9999, 0)) is None         # an older post, read late: ignored
    t = w.on_metric(post("m1", "w2", 160, 500, 5))                     # 12 hits in 1,200 answers: 0.01 < 0.05
    assert t is not None and t.kind == "hit_rate" and "0.0100 over 1200 answers" in t.detail
    assert w.on_metric(post("m1", "w2", 220, 500, 200)) is None        # 207 / 1,200 = 0.17: fine
    assert w.on_metric(post("m0", "w3", 220, 5000, 0)) is None         # another version's figures
    announce(w, "m2", 300)                                             # a new model: its own count from zero
    assert w.answers_and_hits() == (0, 0)
    assert w.on_metric(post("m2", "w1", 400, 5000, 0)) is not None


def test_the_hit_rate_never_triggers_when_off():
    w = RetrainWatch(RetrainPolicy(min_hit_rate=0.0, min_answers=1))
    announce(w, "m1", 10)
    assert w.on_metric(post("m1", "w1", 100, 5000, 0)) is None


def test_a_trigger_waits_out_the_cooldown_and_never_undoes_an_operators_pin():
    w = RetrainWatch(RetrainPolicy(cooldown_s=600))
    announce(w, "m1", 10)
    announce(w, "m2", 20)
    t = w.on_drift(alert("catalogue", "model:m2"))
    assert w.decide(t, 1000)[0]
    w.started(1000)
    go, why = w.decide(t, 1300)
    assert not go and "cooling down for 300 s" in why
    assert w.decide(t, 1601)[0]
    # A rollback: m1 pinned after m2's publication. No retrain may publish over it.
    w.on_model_update(ACTIVE_KEY, {"model_version": "m1", "activated_at": 30})
    assert w.served == "m1" and w.pinned
    t = w.on_drift(alert("catalogue", "model:m1"))
    go, why = w.decide(t, 5000)
    assert not go and "pinned" in why
    announce(w, "m3", 40)                                   # a publication by hand lifts the pin
    assert w.served == "m3" and not w.pinned and w.decide(w.on_drift(alert("catalogue", "model:m3")), 5000)[0]


def test_no_retrain_while_the_model_just_published_has_not_reached_the_registry():
    """The watcher reads the topic as the workers do: until its own publication comes back,
    the alerts it reads are still judged against the model being replaced (cooldown 0 here)."""
    w = RetrainWatch(RetrainPolicy(cooldown_s=0))
    announce(w, "m1", 10)
    w.published("m2")
    go, why = w.decide(w.on_drift(alert("catalogue", "model:m1")), 100)
    assert not go and "m2, just published, is not served yet" in why
    announce(w, "m2", 20)
    assert w.awaiting is None and w.on_drift(alert("catalogue", "model:m1")) is None
    assert w.decide(w.on_drift(alert("catalogue", "model:m2")), 100)[0]


def test_pinning_the_newest_version_is_no_pin_to_respect():
    w = RetrainWatch(RetrainPolicy())
    announce(w, "m1", 10)
    w.on_model_update(ACTIVE_KEY, {"model_version": "m1", "activated_at": 30})
    assert w.served == "m1" and not w.pinned


def test_the_gate_compares_the_blends_ndcg_with_the_served_models():
    served = {"als+transitions": {"ndcg@10": 0.060}, "als": {"ndcg@10": 0.038}}
    assert passes_gate({"als+transitions": {"ndcg@10": 0.049}}, served, 0.8)[0]       # 0.049 >= 0.048
    ok, why = passes_gate({"als+transitions": {"ndcg@10": 0.047}}, served, 0.8)
    assert not ok and "0.0470 < 0.8 x the served model's 0.0600" in why
    assert passes_gate({"als+transitions": {"ndcg@10": 0.0}}, served, 0)[0]            # gate off
    assert passes_gate({}, served, 0.8) == (True, "no offline figures to compare")       # trained without evaluation
    assert passes_gate({"als": {"ndcg@10": 0.03}}, {"als": {"ndcg@10": 0.05}}, 0.8)[0] is False  # ALS-only models
    assert "not compared" in passes_gate({"als": {"ndcg@10": 0.01}}, {"als+transitions": {"ndcg@10": 0.06}}, 0.8)[1]


def test_the_retrain_features_are_the_ones_the_drift_detector_judges():
    assert set(DRIFT_FEATURES) == set(FEATURES) | set(NUMERIC) | {EVENTS_PER_USER, "catalogue"}
    assert Settings(retrain_drift_features="catalogue, price").retrain.retrain_features == ("catalogue", "price")
    assert Settings(retrain_drift_features="").retrain.retrain_features == ()
    with pytest.raises(SettingsError, match="unknown drift feature.*colour"):
        Settings.from_env({"RECSYS_RETRAIN_DRIFT_FEATURES": "catalogue,colour", "RECSYS_ENV_FILE": ""})
