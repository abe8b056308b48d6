import pytest

from recsys_faust.ranking.policy.variants import assign, bucket, parse_variants
from recsys_faust.settings import Settings, SettingsError


def test_parse_names_specs_and_weights_and_refuses_what_is_wrong():
    v = parse_variants("control=blend:50, treatment=als:30,popular=popular,heavy=1.0/1.5:20")
    assert [(x.name, x.spec, x.weight) for x in v] == [
        ("control", "blend", 50.0), ("treatment", "als", 30.0), ("popular", "popular", 1.0), ("heavy", "1.0/1.5", 20.0)]
    assert v[0].blend_weights((1.0, 0.75)) == (1.0, 0.75) and v[1].blend_weights((1.0, 0.75)) == (1.0, 0.0)
    assert v[3].blend_weights((1.0, 0.75)) == (1.0, 1.5) and not v[2].uses_model
    assert parse_variants("") == ()
    for bad, words in (("a=blend", "at least two"), ("a=blend,a=als", "twice"), ("a=foo,b=als", "not blend"),
                       ("a=blend:x,b=als", "not a number"), ("a=blend:0,b=als", "positive"), ("=blend,b=als", "name=")):
        with pytest.raises(ValueError, match=words):
            parse_variants(bad)
    with pytest.raises(SettingsError, match="RECSYS_AB_VARIANTS|ab_variants|twice"):
        Settings.from_env(environ={"RECSYS_AB_VARIANTS": "a=blend,a=als"})


def test_two_thousand_users_split_by_the_weights_and_each_keeps_its_variant():
    variants = parse_variants("control=blend:50,treatment=als:50")
    users = [f"user-{i}" for i in range(2000)]
    chosen = [assign(u, variants).name for u in users]
    share = chosen.count("treatment") / len(users)
    assert 0.45 <= share <= 0.55, share
    assert chosen == [assign(u, variants).name for u in users]  # stable
    skewed = parse_variants("a=blend:90,b=als:10")
    assert 0.07 <= [assign(u, skewed).name for u in users].count("b") / 2000 <= 0.13
    assert 0 <= bucket("x") < 1 and bucket("x") == bucket("x") != bucket("y")
    assert assign("u", ()) is None
