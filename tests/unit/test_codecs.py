"""The table and payload JSON codec."""

from __future__ import annotations


def test_table_codec_writes_non_string_keys_numpy_and_decimals_like_before():
    """The fast path (string keys only) and the fallback give the same JSON as one encoder would."""
    from decimal import Decimal

    import numpy as np
    import orjson

    from recsys_faust.kafka.codecs import dumps_json, loads_json

    value = {"user_id": "u1", "counts": {"view": 2}, "vector": np.arange(3, dtype=np.float32)}
    assert loads_json(dumps_json(value)) == {"user_id": "u1", "counts": {"view": 2}, "vector": [0.0, 1.0, 2.0]}
    mixed = {"a": 1, 2: "x", "nested": {3: [1, 2]}, "price": Decimal("1.50")}
    assert loads_json(dumps_json(mixed)) == {"a": 1, "2": "x", "nested": {"3": [1, 2]}, "price": "1.50"}
    assert dumps_json(value) == orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
