from tests.unit.factories import B, popularity_entry
from recsys_faust.popularity.trending import PopularityIndex
from recsys_faust.serving.recommend import select


def test_ready_lists_older_than_the_cache_epoch_are_not_served():
    from recsys_faust.ranking.strategies import POPULARITY_MODEL_VERSION
    from recsys_faust.ranking.runtime.ready_values import ready_entry
    from recsys_faust.serving.service import Recommender
    from recsys_faust.settings import Settings

    idx = PopularityIndex(window_s=200, bucket_s=B, refresh_s=0)
    idx.put("live@0", popularity_entry("live", "x", [(1000, 5.0)], 0))
    ready = ready_entry((["cached"], [9.0], ["x"]), "popular", POPULARITY_MODEL_VERSION, 100.0)
    rec = Recommender(Settings().ranking, {}, {"u1": ready}, _ranker(Settings(), idx))
    first = rec.recommend("u1", 1)
    assert [i["product_id"] for i in first["items"]] == ["cached"] and first["generated_at"] == 100.0
    rec.clear_cache(150.0)
    rec.clear_cache(120.0)  # an older epoch arriving late does not move it back
    assert rec.cache_epoch == 150.0
    live = rec.recommend("u1", 1)
    assert [i["product_id"] for i in live["items"]] == ["live"] and live["generated_at"] > 150.0
    rec.ready_lists["u1"] = {**ready, "generated_at": 160.0}  # rebuilt after the clear: served again
    assert rec.recommend("u1", 1)["items"][0]["product_id"] == "cached"


def test_the_plain_request_reads_the_stored_head_like_the_filtered_path():
    """k items with no filter come straight from the stored columns; they must equal what the
    general select-and-answer path gives, and a short list, an exclusion or a category still
    take the general path."""
    from recsys_faust.ranking.strategies import POPULARITY_MODEL_VERSION
    from recsys_faust.serving.recommend import answer
    from recsys_faust.ranking.runtime.ready_values import ready_entry
    from recsys_faust.serving.service import Recommender, from_columns
    from recsys_faust.settings import Settings

    settings = Settings()
    n = settings.ranking.rec_list_size
    ids = [f"p{i}" for i in range(n)]
    cols = (ids, [float(n - i) for i in range(n)], ["a" if i % 3 else "b" for i in range(n)])
    ready = ready_entry(cols, "als", POPULARITY_MODEL_VERSION, 42.0)
    idx = PopularityIndex(window_s=200, bucket_s=B, refresh_s=0)
    rec = Recommender(settings.ranking, {}, {"u1": ready}, _ranker(settings, idx))
    for k in (1, 10, n):
        general = answer("u1", select(from_columns(ready), k), strategy="als",
                         model_version=POPULARITY_MODEL_VERSION, generated_at=42.0)
        assert rec.recommend("u1", k) == general
    got = rec.recommend("u1", 5, exclude=["p0", "p2"])
    assert [i["product_id"] for i in got["items"]] == ["p1", "p3", "p4", "p5", "p6"]
    got = rec.recommend("u1", 3, category="b")
    assert [i["product_id"] for i in got["items"]] == ["p0", "p3", "p6"]


def test_an_answer_says_whether_the_users_ready_list_was_stale():
    """Stale: no ready list of the serving model (none, an older model's, or cleared), which
    ranking the user again mends. A filter the list cannot serve is ranked live but not stale."""
    from recsys_faust.ranking.strategies import POPULARITY_MODEL_VERSION
    from recsys_faust.ranking.runtime.ready_values import ready_entry
    from recsys_faust.serving.service import Recommender
    from recsys_faust.settings import Settings

    settings = Settings()
    idx = PopularityIndex(window_s=200, bucket_s=B, refresh_s=0)
    idx.put("live@0", popularity_entry("live", "x", [(1000, 5.0)], 0))
    full = settings.ranking.rec_list_size
    cols = ([f"p{i}" for i in range(full)], [float(full - i) for i in range(full)], ["a"] * full)
    lists = {"fresh": ready_entry(cols, "als", POPULARITY_MODEL_VERSION, 100.0),
             "older": ready_entry(cols, "als", "an-older-model", 100.0)}
    rec = Recommender(settings.ranking, {}, lists, _ranker(settings, idx))
    assert rec.answer("fresh", 3).stale is False
    assert rec.answer("older", 3).stale is True
    assert rec.answer("nobody", 3).stale is True
    assert rec.answer("fresh", 3, category="b").stale is False   # live for the filter, list current
    assert rec.answer("fresh", 3).body == rec.recommend("fresh", 3)
    rec.clear_cache(150.0)
    assert rec.answer("fresh", 3).stale is True


def _ranker(settings, idx):
    from recsys_faust.ranking.model.active import ModelHolder
    from recsys_faust.ranking.policy.ranker import Ranker
    from recsys_faust.transitions.index import TransitionIndex

    return Ranker(settings, idx, TransitionIndex(), ModelHolder())
