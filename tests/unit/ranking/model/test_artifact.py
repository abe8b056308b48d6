import json
import pickle

import numpy as np
import pytest

from recsys_faust.ranking.model import artifact as art
from recsys_faust.ranking.model.active import ActiveModel
from recsys_faust.ranking.maths.foldin import FoldIn
from recsys_faust.ranking.maths.mapped import mapped_file
from recsys_faust.ranking.model.payload import ModelLoadError, decode, encode, encode_reference, shipped_bytes
from recsys_faust.ranking.model.registry import ModelRegistry


def _artifact(version: str = "v1", n: int = 40, f: int = 8) -> art.ModelArtifact:
    rng = np.random.default_rng(3)
    return art.ModelArtifact(version, [f"p{i}" for i in range(n)], rng.normal(size=(n, f)).astype(np.float32), ["u1"],
                             np.ones((1, f), np.float32), ["c"] * (n - 1) + [None], {"alpha": 2.0}, {"created_at": 5.0})


def test_artifact_round_trip_without_pickle(tmp_path):
    a = _artifact()
    path = art.save(a, tmp_path)
    b = art.load(path)
    assert b.item_ids == a.item_ids and b.item_category[-1] is None and b.params == {"alpha": 2.0}
    assert np.array_equal(b.item_factors, a.item_factors) and art.latest(tmp_path) == path
    assert np.load(path / art.FACTORS_FILE, allow_pickle=False).dtype == np.float32
    m = decode(encode(a, created_at=7.0))
    assert m.version == "v1" and np.array_equal(m.item_factors, a.item_factors)


def test_an_artifact_of_the_earlier_layout_still_loads(tmp_path):
    """Before the factors had a file of their own they were inside model.npz."""
    a = _artifact()
    path = tmp_path / a.version
    path.mkdir()
    np.savez(path / art.ARRAYS_FILE, **art.arrays(a, with_users=True))
    (path / "manifest.json").write_text(json.dumps({"version": a.version, "params": a.params}))
    b = art.load(path, mmap=True)
    assert np.array_equal(b.item_factors, a.item_factors) and mapped_file(b.item_factors) is None


def test_mapped_factors_are_pickled_as_the_file_name_and_mapped_again(tmp_path):
    """What makes a worker and its scoring process share one copy of a large model's factors."""
    a = _artifact(n=2_000, f=16)
    path = art.save(a, tmp_path)
    b = art.load(path, mmap=True)
    assert mapped_file(b.item_factors) == str(path / art.FACTORS_FILE)
    foldin = FoldIn(b.item_factors, regularization=1.0, alpha=10.0)
    wire = pickle.dumps(foldin)
    assert len(wire) < a.item_factors.nbytes // 4  # the matrix itself is not in the pickle
    back = pickle.loads(wire)
    assert mapped_file(back.Y) == str(path / art.FACTORS_FILE) and np.array_equal(back.Y, a.item_factors)
    items, weights, offsets = np.array([3, 7, 9]), np.array([1.0, 2.0, 1.0]), np.array([0, 3])
    assert np.allclose(back.user_vectors(items, weights, offsets), foldin.user_vectors(items, weights, offsets))
    # an array in memory still travels as data
    inline = FoldIn(a.item_factors, regularization=1.0, alpha=10.0)
    assert len(pickle.dumps(inline)) > a.item_factors.nbytes


def test_similar_items_on_mapped_factors_match_cosine(tmp_path):
    a = _artifact(n=300, f=8)
    model = ActiveModel.build(art.load(art.save(a, tmp_path), mmap=True))
    Y = a.item_factors.astype(np.float64)
    unit = Y / np.linalg.norm(Y, axis=1, keepdims=True)
    cos = unit @ unit[5]
    cos[5] = -np.inf
    want = [f"p{j}" for j in np.argsort(-cos)[:10]]
    got = model.similar("p5", 10)
    assert [g["product_id"] for g in got] == want
    assert np.allclose([g["score"] for g in got], np.sort(cos)[::-1][:10], atol=1e-5)


def test_a_model_announced_by_reference_is_checked_then_mapped(tmp_path):
    a = _artifact(n=500)
    path = art.save(a, tmp_path)
    message = json.loads(json.dumps(encode_reference(a, path, created_at=9.0)))
    assert "artifact_npz_b64" not in message and shipped_bytes(message) == sum(
        f.stat().st_size for f in (path / art.FACTORS_FILE, path / art.ARRAYS_FILE))
    registry = ModelRegistry()
    registry.apply([(a.version, message)])
    assert registry.chosen() is message and registry.summary()[0]["shipped"] == "reference"
    b = decode(message, tmp_path)
    assert b.version == a.version and np.array_equal(b.item_factors, a.item_factors)
    assert mapped_file(b.item_factors) is not None
    with pytest.raises(ModelLoadError, match="no models dir"):
        decode(message, None)
    with pytest.raises(ModelLoadError, match="cannot see"):
        decode(message, tmp_path / "elsewhere")
    # a file changed after the announcement (a partial copy, another model) is refused
    factors = np.load(path / art.FACTORS_FILE)
    factors[0, 0] += 1.0
    np.save(path / art.FACTORS_FILE, factors)
    with pytest.raises(ModelLoadError, match="not the file announced"):
        decode(message, tmp_path)


@pytest.mark.parametrize("name", ["../etc", "/abs", "", "a/b", ".hidden"])
def test_a_reference_outside_the_models_dir_is_refused(tmp_path, name):
    message = {"model_version": "v1", "artifact_ref": {"dir": name, "files": {"model.npz": {"sha256": "x", "bytes": 1}}}}
    with pytest.raises(ModelLoadError, match="malformed"):
        decode(message, tmp_path)
