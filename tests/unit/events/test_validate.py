import json

import pytest

from recsys_faust.events.deadletter import MAX_KEPT_BYTES, dead_letter
from recsys_faust.events.model import Event, Invalid, TOPIC_PURCHASES, TOPIC_REVIEWS, TOPIC_USER_EVENTS, TOPIC_VIEWS
from recsys_faust.events.validate import validate_event, validate_request

NOW = 1_700_000_000.0


def view(**kw):
    base = {"event_id": "e1", "user_id": "u1", "product_id": "p1", "timestamp": NOW - 10}
    base.update(kw)
    return json.dumps(base).encode()


def check(topic, raw):
    return validate_event(topic, raw, now=NOW)


def test_valid_view_keeps_unknown_fields():
    ev = check(TOPIC_VIEWS, view(category="snacks", colour="red"))
    assert isinstance(ev, Event)
    assert (ev.kind, ev.user_id, ev.product_id, ev.category) == ("view", "u1", "p1", "snacks")
    assert ev.payload["colour"] == "red"


def test_iso_timestamp_is_accepted():
    ev = check(TOPIC_VIEWS, view(timestamp="2023-11-14T22:13:20Z"))
    assert ev.ts == 1_700_000_000.0


@pytest.mark.parametrize(
    "topic,raw,code",
    [
        (TOPIC_VIEWS, b"not json {", "not_json"),
        (TOPIC_VIEWS, b"\xff\xfe\x00", "not_utf8"),
        (TOPIC_VIEWS, b"[1, 2]", "not_object"),
        (TOPIC_VIEWS, json.dumps({"event_id": "e", "user_id": "u", "timestamp": 1}).encode(), "missing_field"),
        (TOPIC_VIEWS, view(user_id=42), "wrong_type"),
        (TOPIC_VIEWS, view(timestamp=True), "wrong_type"),
        (TOPIC_VIEWS, view(timestamp="yesterday"), "wrong_type"),
        (TOPIC_VIEWS, view(timestamp=NOW + 10 * 86400), "out_of_range"),
        (TOPIC_VIEWS, view(timestamp=-5), "out_of_range"),
        (TOPIC_VIEWS, view(price=-1), "out_of_range"),
        (TOPIC_VIEWS, view(user_id=""), "out_of_range"),
        (TOPIC_REVIEWS, view(rating=6), "out_of_range"),
        (TOPIC_REVIEWS, view(rating="5"), "wrong_type"),
        (TOPIC_REVIEWS, view(), "missing_field"),
        (TOPIC_PURCHASES, view(quantity=0), "out_of_range"),
        (TOPIC_PURCHASES, view(quantity=1.5), "wrong_type"),
        (TOPIC_USER_EVENTS, json.dumps({"event_id": "e", "user_id": "u", "timestamp": 1, "event_type": "dance"}).encode(), "out_of_range"),
        (TOPIC_VIEWS, b'{"event_id": "' + b"x" * 70_000 + b'"}', "too_large"),
        (TOPIC_VIEWS, None, "empty"),
    ],
)
def test_invalid_records_get_a_reason(topic, raw, code):
    result = check(topic, raw)
    assert isinstance(result, Invalid), result
    assert result.code == code
    assert result.detail


def test_review_and_purchase_fields():
    ev = check(TOPIC_REVIEWS, view(rating=4, text="good"))
    assert ev.rating == 4 and ev.kind == "review"
    ev = check(TOPIC_PURCHASES, view(quantity=3, price=9.5))
    assert (ev.quantity, ev.price) == (3, 9.5)


def test_user_event():
    raw = json.dumps({"event_id": "e", "user_id": "u", "timestamp": 5, "event_type": "login",
                      "properties": {"device": "ios"}}).encode()
    ev = check(TOPIC_USER_EVENTS, raw)
    assert ev.kind == "user-event" and ev.event_type == "login" and not ev.is_interaction


def test_requests():
    req = validate_request(json.dumps({"request_id": "r", "user_id": "u", "k": 5, "exclude": ["p1"]}).encode())
    assert (req.k, req.exclude) == (5, ("p1",))
    assert validate_request(b'{"request_id": "r", "user_id": "u"}').k == 10
    assert validate_request(b'{"request_id": "r", "user_id": "u", "k": 101}').code == "out_of_range"
    assert validate_request(b'{"request_id": "r", "user_id": "u", "exclude": "p1"}').code == "wrong_type"
    assert validate_request(b'{"user_id": "u"}').code == "missing_field"


def test_dead_letter_keeps_bytes_and_reason():
    bad = b"\xff\x00binary"
    dl = dead_letter(Invalid("not_utf8", "x"), topic="t", partition=1, offset=7, key=b"u1", value=bad, worker="w")
    assert dl["reason"] == "not_utf8" and dl["payload_encoding"] == "base64"
    import base64
    assert base64.b64decode(dl["payload"]) == bad
    assert (dl["source_topic"], dl["source_partition"], dl["source_offset"], dl["key"]) == ("t", 1, 7, "u1")
    huge = b"a" * (MAX_KEPT_BYTES * 3)
    dl = dead_letter(Invalid("too_large", "x"), topic="t", partition=0, offset=0, key=None, value=huge, worker="w")
    assert dl["payload_truncated"] and dl["payload_size"] == len(huge) and len(dl["payload"]) == MAX_KEPT_BYTES
