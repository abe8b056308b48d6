from tests.unit.factories import B, popularity_entry
from recsys_faust.popularity.trending import PopularityIndex
from recsys_faust.profiles.profile import new_profile
from recsys_faust.ranking.policy.popular import popular_affinity
from recsys_faust.ranking.strategies import STRATEGY_AFFINITY, STRATEGY_POPULAR


def test_cold_start_is_popular_and_affinity_boosts_the_users_category():
    idx = PopularityIndex(window_s=1000, bucket_s=B, refresh_s=0)
    idx.put("a@0", popularity_entry("a", "x", [(1000, 10.0)]))
    idx.put("b@0", popularity_entry("b", "y", [(1000, 8.0)]))
    idx.put("c@0", popularity_entry("c", "y", [(1000, 4.0)]))
    items, strategy = popular_affinity(None, idx, 3)
    assert strategy == STRATEGY_POPULAR and [i["product_id"] for i in items] == ["a", "b", "c"]
    prof = new_profile("u")
    prof["affinity"] = {"y": 3.0}
    prof["recent"] = [["c", "view", 1.0, "y"]]
    items, strategy = popular_affinity(prof, idx, 3, boost=1.0)
    assert strategy == STRATEGY_AFFINITY
    # b: 8 * (1 + 1.0) = 16 beats a: 10; c is seen, so removed
    assert [(i["product_id"], i["score"]) for i in items] == [("b", 16.0), ("a", 10.0)]
