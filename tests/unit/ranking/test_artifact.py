import numpy as np

from recsys_faust.ranking import artifact as art
from recsys_faust.ranking.payload import decode, encode


def test_artifact_round_trip_without_pickle(tmp_path):
    a = art.ModelArtifact("v1", ["p1", "p2"], np.eye(2, dtype=np.float32), ["u1"], np.ones((1, 2), np.float32),
                          ["c", None], {"alpha": 2.0}, {"created_at": 5.0})
    path = art.save(a, tmp_path)
    b = art.load(path)
    assert b.item_ids == ["p1", "p2"] and b.item_category == ["c", None] and b.params == {"alpha": 2.0}
    assert np.array_equal(b.item_factors, a.item_factors) and art.latest(tmp_path) == path
    with np.load(path / "model.npz", allow_pickle=False) as npz:
        assert npz["item_factors"].dtype == np.float32
    m = decode(encode(a, created_at=7.0))
    assert m.version == "v1" and np.array_equal(m.item_factors, a.item_factors)
