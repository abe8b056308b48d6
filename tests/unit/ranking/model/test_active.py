import numpy as np
import pytest

from recsys_faust.ranking.model import artifact as art
from recsys_faust.ranking.model.active import ModelHolder


def test_model_holder_switches_only_forward():
    holder = ModelHolder()
    mk = lambda v: art.ModelArtifact(v, ["a", "b"], np.eye(2, dtype=np.float32), params={"alpha": 1, "regularization": 1})
    assert holder.offer(mk("v2"), 2.0) and holder.active.version == "v2"
    assert not holder.offer(mk("v1"), 1.0) and holder.active.version == "v2"
    assert holder.active.similar("a", 1)[0]["product_id"] == "b"
    assert holder.active.similar("zzz", 1) is None


def test_similar_items_are_the_cosine_ranking_without_the_item_itself():
    rng = np.random.default_rng(4)
    ids = [f"p{i}" for i in range(40)]
    Y = rng.normal(size=(40, 6)).astype(np.float32)
    holder = ModelHolder()
    holder.offer(art.ModelArtifact("v1", ids, Y, params={"alpha": 1, "regularization": 1}), 1.0)
    unit = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    for i in (0, 7, 39):
        cos = unit @ unit[i]
        want = [ids[j] for j in np.argsort(-cos, kind="stable") if j != i][:5]
        got = holder.active.similar(ids[i], 5)
        assert [g["product_id"] for g in got] == want
        assert [g["score"] for g in got] == pytest.approx([float(cos[ids.index(p)]) for p in want], abs=1e-5)
    assert len(holder.active.similar("p3", 100)) == 39  # k past the catalogue: every other item
