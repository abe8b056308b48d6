"""ranking/model/registry.py: the latest action on amazon-model-updates wins, on every worker alike."""

from recsys_faust.ranking.model.registry import ACTIVE_KEY, ModelRegistry


def announcement(version: str, published_at: float) -> tuple[str, dict]:
    return version, {"model_version": version, "created_at": published_at - 5, "published_at": published_at,
                     "manifest": {"factors": 8, "n_items": 3}, "artifact_npz_b64": "x" * 10}


def pin(version: str, at: float) -> tuple[str, dict]:
    return ACTIVE_KEY, {"model_version": version, "activated_at": at}


def chosen(registry: ModelRegistry) -> str:
    return registry.chosen()["model_version"]


def test_the_newest_publication_is_served_until_an_activation_comes_after_it():
    r = ModelRegistry()
    assert r.chosen() is None
    r.apply([announcement("v1", 100.0), announcement("v2", 200.0)])
    assert chosen(r) == "v2"
    r.apply([pin("v1", 300.0)])                 # a rollback
    assert chosen(r) == "v1"
    r.apply([announcement("v3", 400.0)])        # a later publication wins again
    assert chosen(r) == "v3"
    r.apply([pin("v2", 500.0)])
    assert chosen(r) == "v2"


def test_replaying_the_topic_from_the_start_gives_the_same_choice():
    """A restarted worker reads the same records: it comes back on the same version."""
    records = [announcement("v1", 100.0), announcement("v2", 200.0), pin("v1", 300.0)]
    first, second = ModelRegistry(), ModelRegistry()
    first.apply(records[:2])
    first.apply(records[2:])
    second.apply(records)
    assert chosen(first) == chosen(second) == "v1"


def test_pruning_keeps_the_newest_and_the_served_one_and_tombstones_remove_versions():
    r = ModelRegistry()
    r.apply([announcement(f"v{n}", 100.0 * n) for n in range(1, 6)] + [pin("v2", 900.0)])
    assert r.to_prune(keep=2) == ["v1", "v3"]    # v4, v5 newest; v2 served
    r.apply([(v, None) for v in r.to_prune(keep=2)])
    assert sorted(r.versions) == ["v2", "v4", "v5"] and chosen(r) == "v2"
    r.apply([("v2", None)])                      # the pinned version pruned by hand: the newest serves
    assert chosen(r) == "v5"
    summary = r.summary()
    assert [s["model_version"] for s in summary] == ["v5", "v4"]
    assert summary[0]["active"] and not summary[1]["active"] and not any(s["pinned"] for s in summary)


def test_records_that_are_not_announcements_are_ignored():
    r = ModelRegistry()
    r.apply([("junk", {"hello": 1}), ("v1", "not a dict"), (ACTIVE_KEY, {"no": "version"})])
    assert r.versions == {} and r.pin is None and r.chosen() is None


def test_only_the_chosen_and_the_newest_inline_artifacts_stay_in_memory():
    r = ModelRegistry()
    r.apply([announcement(f"v{n}", 100.0 * n) for n in range(1, 5)])
    held = {v for v, value in r.versions.items() if "artifact_npz_b64" in value}
    assert held == {"v4"}                                   # chosen and newest: the same one
    assert r.versions["v1"]["stripped"] and r.versions["v1"]["manifest"] == {"factors": 8, "n_items": 3}
    assert {s["model_version"]: s["bytes"] for s in r.summary()} == {f"v{n}": 10 for n in range(1, 5)}
    r.apply([pin("v2", 900.0)])   # a rollback to a stripped version: it stays marked for a re-read
    assert r.chosen()["model_version"] == "v2" and r.chosen().get("stripped")
    r.apply([announcement("v2", 950.0)])   # its record read again (or published again): held from now on
    assert "artifact_npz_b64" in r.versions["v2"] and not r.versions["v2"].get("stripped")
