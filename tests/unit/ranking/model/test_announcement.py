"""ranking/model/announcement.py and the registry's use of it: what a worker refuses on
amazon-model-updates, each record skipped with its reason and never raised."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest

from recsys_faust.ranking.model import artifact as art
from recsys_faust.ranking.model.announcement import (
    ACTIVE_KEY, AnnouncementLimits, ModelSigner, ModelVerifier, check, generate_pair,
)
from recsys_faust.ranking.model.payload import ModelLoadError, decode, encode
from recsys_faust.ranking.model.registry import ModelRegistry

PRIVATE, PUBLIC = generate_pair()
OTHER_PRIVATE, _ = generate_pair()
LIMITS = AnnouncementLimits(max_items=1_000, max_factors=64, max_bytes=1_000_000, clock_skew_s=300.0)


def announcement(version: str = "v1", published_at: float = 100.0, **manifest) -> dict:
    return {"model_version": version, "created_at": published_at - 5, "published_at": published_at,
            "manifest": {"factors": 8, "n_items": 3, **manifest}, "artifact_npz_b64": "x" * 10}


def signed_registry() -> ModelRegistry:
    return ModelRegistry(limits=LIMITS, verifier=ModelVerifier(PUBLIC))


def test_a_signed_announcement_and_pin_are_folded_and_every_kind_of_forgery_is_refused():
    signer = ModelSigner(PRIVATE)
    good = signer.sign(announcement("v1"))
    r = signed_registry()
    r.apply([("v1", good, 101.0), (ACTIVE_KEY, signer.sign({"model_version": "v1", "activated_at": 102.0}), 102.0)])
    assert r.chosen()["model_version"] == "v1" and r.pin["model_version"] == "v1"
    forged = [
        ("v2", announcement("v2", 200.0), 200.0),                                    # unsigned
        ("v3", ModelSigner(OTHER_PRIVATE).sign(announcement("v3", 300.0)), 300.0),   # another key
        ("v4", {**signer.sign(announcement("v4", 400.0)), "published_at": 401.0}, 400.0),  # altered after signing
        ("v5", {**signer.sign(announcement("v5", 500.0)), "signature": "!!"}, 500.0),
        ("v6", signer.sign(announcement("other", 600.0)), 600.0),                   # key is not the version
        (ACTIVE_KEY, {"model_version": "v2", "activated_at": 700.0}, 700.0),         # unsigned pin
    ]
    r.apply(forged)
    assert sorted(r.versions) == ["v1"] and r.chosen()["model_version"] == "v1" and r.pin["activated_at"] == 102.0
    assert r.refused == {"unsigned": 2, "bad_signature": 3, "key_is_not_the_version": 1}


@pytest.mark.parametrize("value, reason", [
    ({"model_version": "zz-bad", "artifact_ref": {}, "published_at": "zz"}, "no_manifest"),
    ({**announcement("zz-bad"), "published_at": "zz"}, "bad_time"),
    ({**announcement("zz-bad"), "published_at": float("inf")}, "bad_time"),
    (announcement("zz-bad", factors=60_000), "too_many_factors"),
    (announcement("zz-bad", n_items=10**9), "too_many_items"),
    ({**announcement("zz-bad"), "artifact_npz_b64": "x" * 2_000_000}, "too_large"),
    ({k: v for k, v in announcement("zz-bad").items() if k != "artifact_npz_b64"}, "no_artifact"),
    ("not a dict", "not_an_object"),
])
def test_malformed_and_oversized_announcements_are_skipped_without_raising(value, reason):
    r = ModelRegistry(limits=LIMITS)
    r.apply([("zz-bad", value, 100.0), announcement_record := ("v1", announcement("v1"), 100.0)])
    assert r.refused == {reason: 1} and list(r.versions) == ["v1"]
    assert r.chosen()["model_version"] == announcement_record[0]


def test_a_time_in_the_far_future_is_clamped_to_the_append_time_so_a_later_publication_still_wins():
    r = ModelRegistry(limits=AnnouncementLimits(max_items=1_000, max_factors=64, max_bytes=1_000_000))
    r.apply([("v1", announcement("v1", published_at=1e18), 1_000.0)])
    assert r.versions["v1"]["published_at"] == 1_000.0
    r.apply([("v2", announcement("v2", published_at=1_001.0), 1_001.0)])   # written a second later
    assert r.chosen()["model_version"] == "v2"
    value, reason = check(ACTIVE_KEY, {"model_version": "v1", "activated_at": 1e18}, 3_000.0, LIMITS, None)
    assert reason is None and value["activated_at"] == 3_300.0   # LIMITS allow 300 s of skew


def test_an_inline_artifact_is_checked_against_its_announced_shape_and_the_caps():
    rng = np.random.default_rng(0)
    good = art.ModelArtifact("v1", ["a", "b", "c"], rng.normal(size=(3, 8)).astype(np.float32), item_category=[None] * 3)
    assert decode(encode(good), limits=LIMITS).version == "v1"
    lying = {**encode(good), "manifest": {**encode(good)["manifest"], "factors": 4}}  # says 4, holds 8
    with pytest.raises(ModelLoadError, match="not the announced"):
        decode(lying, limits=LIMITS)
    # a zip bomb: a few KB that unpack to 80 MB stop at the archive's header
    buf = io.BytesIO()
    np.savez_compressed(buf, item_ids=np.asarray(["a"]), item_category=np.asarray([""]),
                        item_factors=np.zeros((1, 20_000_000), dtype=np.float32))
    bomb = {**encode(good), "artifact_npz_b64": base64.b64encode(buf.getvalue()).decode()}
    assert len(bomb["artifact_npz_b64"]) < 200_000
    with pytest.raises(ModelLoadError, match="unpack"):
        decode(bomb, limits=LIMITS)
