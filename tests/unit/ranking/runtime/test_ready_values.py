"""Stored values of scored users: the same lists the live path builds, vectors that read back."""

import numpy as np
import orjson

from recsys_faust.kafka.codecs import dumps_json, loads_json
from recsys_faust.ranking.maths.foldin import FoldIn
from recsys_faust.ranking.maths.scores import BatchQuery, BatchResult, score_batch
from recsys_faust.ranking.model.active import Catalogue, ScoringModel
from recsys_faust.ranking.strategies import STRATEGY_ALS
from recsys_faust.ranking.runtime.ready_values import (columns_of, encode_scored, factor_entry, factor_vector,
                                               ready_entry, score_values)


def test_encoded_lists_are_the_ready_entries_of_the_top_k_rows():
    rng = np.random.default_rng(11)
    items, factors = 60, 6
    catalogue = Catalogue(np.asarray([f"p{i}" for i in range(items)], dtype=object),
                          np.asarray([f"c{i % 4}" for i in range(items)], dtype=object))
    model = ScoringModel("v7", FoldIn(rng.normal(size=(items, factors)).astype(np.float32),
                                      regularization=0.5, alpha=5.0), catalogue)
    # User 1 has seen all but 3 items: a row shorter than the list.
    hist = [rng.integers(0, items, 5), np.arange(items - 3)]
    offsets = np.array([0, len(hist[0]), len(hist[0]) + len(hist[1])])
    flat = np.concatenate(hist).astype(np.int64)
    q = BatchQuery(flat, np.ones(len(flat)), offsets, flat, offsets, n=10)
    values = score_values(model, q, 123.5)
    result = score_batch(model.foldin, q)
    assert len(values.lists) == len(values.factors) == 2
    for row, raw in enumerate(values.lists):
        stored = loads_json(raw)
        best = [int(i) for i in result.best[row] if i >= 0]
        # exactly the model's top-k, as product ids with their categories and scores
        assert stored["ids"] == [f"p{i}" for i in best]
        assert stored["categories"] == [f"c{i % 4}" for i in best]
        assert np.allclose(stored["scores"], result.scores[row][:len(best)], atol=1e-6)
        assert (stored["strategy"], stored["model_version"], stored["generated_at"]) == (STRATEGY_ALS, "v7", 123.5)
        # and byte for byte what the table codec writes for the same entry
        assert raw == dumps_json(ready_entry(columns_of(catalogue, result)[row], STRATEGY_ALS, "v7", 123.5))
    assert len(loads_json(values.lists[1])["ids"]) == 3
    for row, raw in enumerate(values.factors):
        value = loads_json(raw)
        assert value["model_version"] == "v7"
        assert np.array_equal(factor_vector(value), result.vectors[row])


def test_factor_values_read_back_and_are_compact():
    vector = np.random.default_rng(2).normal(size=64).astype(np.float32)
    value = factor_entry("m1", vector)
    assert np.array_equal(factor_vector(loads_json(orjson.dumps(value))), vector)
    assert len(orjson.dumps(value)) < len(orjson.dumps({"model_version": "m1", "vector": vector.tolist()})) * 0.6


def test_encode_scored_of_an_empty_batch_is_empty():
    model = ScoringModel("v", FoldIn(np.ones((3, 2), np.float32), regularization=1.0, alpha=1.0),
                         Catalogue(np.asarray(["a", "b", "c"], dtype=object), np.asarray(["", "", ""], dtype=object)))
    empty = BatchResult(np.zeros((0, 2), np.float32), np.zeros((0, 3), np.int32), np.zeros((0, 3), np.float32))
    no_users = BatchQuery(*(np.zeros(n, np.int64) for n in (0, 0, 1, 0, 1)), n=3)
    values = encode_scored(model, no_users, empty, 1.0)
    assert values.lists == [] and values.factors == []
