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


async def test_raw_bytes_schema_gives_the_events_fausts_raw_codecs_give():
    """The lean decode builds the same events as Faust's registry path with raw serializers."""
    import faust
    from faust.types import TP
    from faust.types.tuples import Message

    from recsys_faust.kafka.codecs import RawBytesSchema

    app = faust.App("codec-test", broker="memory://", store="memory://")
    lean = RawBytesSchema().compile(app)
    stock = faust.Schema(key_serializer="raw", value_serializer="raw").compile(app)
    for key, value in [(b"u1", b'{"user_id": "u1"}'), (None, b"\xff not json"), (b"u2", None), (b"", b"")]:
        message = Message(topic="amazon-purchases", partition=1, offset=7, timestamp=1.0, timestamp_type=0,
                          headers=[("h", b"v")], key=key, value=value, checksum=None, tp=TP("amazon-purchases", 1))
        got, want = await lean(message), await stock(message)
        assert (got.key, got.value, got.message, got.headers) == (want.key, want.value, want.message, want.headers)
        assert type(got) is type(want) and got.value == value and got.key == key
