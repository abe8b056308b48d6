"""Fuzzed input at volume: over 10,000 bad records drawn from hypothesis strategies (missing and
wrong-typed fields, NaN and infinities as JSON literals, huge and deeply nested values, invalid
UTF-8, empty and huge keys, out-of-range numbers, unknown event types, non-objects) interleaved
with good records (unicode edge cases in their ids, some on partitions their key does not hash
to) on every input topic and the requests topic. The worker never restarts, every bad record is
in the dead-letter topic with its reason at its exact source position, every good event is
applied (profiles equal the independent model) and every good request is answered."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiokafka
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.events.model import USER_EVENT_TYPES
from recsys_faust.kafka.partitioning import user_partition

from .helpers import TOPIC_OF, Model, get, read_topic, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
NOW = time.time()
END = NOW - 3600
N_BATCHES, PER_BATCH = 210, 50          # 10,500 bad records
REQUESTS = "amazon-recommendation-requests"
REQUIRED = {"view": ["event_id", "user_id", "product_id", "timestamp"],
            "purchase": ["event_id", "user_id", "product_id", "timestamp"],
            "review": ["event_id", "user_id", "product_id", "timestamp", "rating"],
            "user-event": ["event_id", "user_id", "timestamp", "event_type"],
            "request": ["request_id", "user_id"]}
STRINGS = {"view": ["event_id", "user_id", "product_id"], "purchase": ["event_id", "user_id", "product_id"],
           "review": ["event_id", "user_id", "product_id"], "user-event": ["event_id", "user_id", "event_type"],
           "request": ["request_id", "user_id"]}
#: Numbers out of their range, per kind (field, strategy).
OUT_OF_RANGE = {
    "review": [("rating", st.one_of(st.floats(-1e9, 0.99), st.floats(5.01, 1e9)))],
    "purchase": [("quantity", st.integers(-10**6, 0)), ("price", st.floats(-1e12, -0.01)),
                 ("quantity", st.integers(10**6 + 1, 10**12))],
    "view": [("price", st.floats(1e12 + 1, 1e300))],
    "user-event": [("timestamp", st.floats(NOW + 3 * 86400, 1e12))],
    "request": [("k", st.one_of(st.integers(-100, 0), st.integers(101, 10**9)))],
}
WRONG_TYPES = st.one_of(st.integers(), st.floats(allow_nan=False, allow_infinity=False), st.booleans(),
                        st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def valid(kind: str, i: int) -> dict:
    base = {"event_id": f"fz-{i}", "user_id": f"fz-user-{i % 50}", "timestamp": END}
    if kind == "user-event":
        return {**base, "event_type": "login"}
    if kind == "request":
        return {"request_id": f"fz-req-{i}", "user_id": f"fz-user-{i % 50}", "k": 5}
    return {**base, "product_id": f"fz-p{i % 20}", **({"rating": 4} if kind == "review" else {})}


@st.composite
def bad_record(draw) -> tuple[str, bytes, bytes]:
    kind = draw(st.sampled_from(sorted(REQUIRED)))
    topic = REQUESTS if kind == "request" else TOPIC_OF[kind]
    obj = valid(kind, draw(st.integers(0, 10**6)))
    branch = draw(st.integers(0, 99))
    if branch < 15:                                   # a required field missing (or null)
        field = draw(st.sampled_from(REQUIRED[kind]))
        if draw(st.booleans()):
            del obj[field]
        else:
            obj[field] = None
    elif branch < 30:                                 # a string field of another type
        obj[draw(st.sampled_from(STRINGS[kind]))] = draw(WRONG_TYPES)
    elif branch < 40:                                 # NaN / Infinity as JSON literals
        literal = draw(st.sampled_from(["NaN", "Infinity", "-Infinity"]))
        raw = json.dumps(obj)[:-1] + f', "price": {literal}}}'
        return topic, draw(keys()), raw.encode()
    elif branch < 50:                                 # an id longer than allowed, or empty / blank
        obj["user_id"] = draw(st.one_of(st.text(alphabet="xyz", min_size=257, max_size=3000),
                                        st.sampled_from(["", "   ", "\t\n"])))
    elif branch < 52:                                 # the whole record over the size limit
        obj["blob"] = "x" * 70_000
    elif branch < 60:                                 # nested deeper than any parser allows
        depth = draw(st.integers(1100, 3000))
        raw = json.dumps(obj)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
        return topic, draw(keys()), raw.encode()
    elif branch < 68:                                 # invalid UTF-8
        raw = json.dumps(obj).encode()
        cut = draw(st.integers(1, len(raw) - 1))
        return topic, draw(keys()), raw[:cut] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80"])) + raw[cut:]
    elif branch < 76:                                 # not a JSON object at all
        return topic, draw(keys()), draw(st.sampled_from([b"", b"[]", b"1", b'"text"', b"null", b"{", b"true"]))
    elif branch < 92:                                 # numbers out of range
        field, values = draw(st.sampled_from(OUT_OF_RANGE.get(kind, OUT_OF_RANGE["user-event"])))
        obj[field] = draw(values)
    elif kind == "user-event":                        # an unknown event type
        obj["event_type"] = draw(st.text(min_size=1, max_size=20).filter(lambda t: t not in USER_EVENT_TYPES))
    elif kind == "request":
        obj["exclude"] = draw(st.one_of(st.text(min_size=1, max_size=5), st.lists(st.integers(), min_size=1, max_size=3)))
    else:
        obj["timestamp"] = draw(st.one_of(st.floats(-1e12, -1), st.text(alphabet="abc", min_size=1, max_size=8)))
    return topic, draw(keys()), json.dumps(obj).encode()


def keys():
    return st.one_of(st.just(b""), st.binary(min_size=1000, max_size=5000), st.text(max_size=30).map(str.encode))


def draw_bad_records() -> list[tuple[str, bytes, bytes]]:
    out: list[tuple[str, bytes, bytes]] = []

    @settings(max_examples=N_BATCHES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(bad_record(), min_size=PER_BATCH, max_size=PER_BATCH))
    def collect(batch):
        out.extend(batch)

    collect()
    return out


UNICODE_IDS = ["ünïcødé", "用户", "😀user", "rtl-\u05d0\u05d1", "e\u0301", "zero\u200bwidth", "nul-\u0001"]


def good_records() -> tuple[list[tuple[str, bytes, bytes, int | None]], list[tuple[str, dict]], list[str]]:
    events = synthetic_events(ShopSpec(users=120, items=80, categories=4, events_per_user=12, seed=23), end=END)
    rename = {f"u{i}": f"{UNICODE_IDS[i % len(UNICODE_IDS)]}-{i}" for i in range(0, 120, 3)}
    events = [(k, {**o, "user_id": rename.get(o["user_id"], o["user_id"])}) for k, o in events]
    rng = random.Random(5)
    records = []
    for kind, obj in events:
        key = obj["user_id"].encode()
        partition = None
        if rng.random() < 0.1:        # on a partition its key does not hash to: re-routed, then applied
            partition = (user_partition(obj["user_id"], 4) + 1 + rng.randrange(3)) % 4
        records.append((TOPIC_OF[kind], key, json.dumps(obj, ensure_ascii=False).encode(), partition))
    requests = []
    for i in range(100):
        user = events[i * 7][1]["user_id"]
        rid = f"good-req-{i}"
        requests.append(rid)
        records.append((REQUESTS, user.encode(), json.dumps({"request_id": rid, "user_id": user, "k": 3}).encode(), None))
    return records, events, requests


async def produce_all(bootstrap: str, records) -> list[tuple[str, int, int]]:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                         max_request_size=4_000_000)
    await producer.start()
    try:
        futs = [await producer.send(t, value=v, key=k, partition=p) for t, k, v, p in records]
        return [(m.topic, m.partition, m.offset) for m in await asyncio.gather(*futs)]
    finally:
        await producer.stop()


def test_ten_thousand_bad_records_among_good_ones(stack):
    worker = stack.add_worker("w1")
    pid = worker.proc.pid
    bad = draw_bad_records()
    good, events, requests = good_records()
    assert len(bad) >= 10_000
    tagged = [(r + (None,), True) for r in bad] + [(r, False) for r in good]
    random.Random(11).shuffle(tagged)
    # Requests are answered from the profile: keep the good ones after their users' events.
    tagged.sort(key=lambda t: t[0][0] == REQUESTS and not t[1])
    started = time.monotonic()
    positions = asyncio.run(produce_all(stack.broker.bootstrap, [r for r, _ in tagged]))
    bad_at = {pos for pos, (_, is_bad) in zip(positions, tagged) if is_bad}
    print(f"\n{len(bad)} bad and {len(good)} good records produced in {time.monotonic() - started:.1f} s")

    def dead_letters():
        return [json.loads(r.value) for r in read_topic(stack.broker.bootstrap, "amazon-dead-letters", 20)]
    letters = wait_until(lambda: (lambda d: d if len(d) >= len(bad) else None)(dead_letters()), 300, interval=2,
                         what=f"{len(bad)} dead letters")
    got = {(d["source_topic"], d["source_partition"], d["source_offset"]) for d in letters}
    assert len(letters) == len(bad) and got == bad_at
    reasons: dict[str, int] = {}
    for d in letters:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
        assert d["reason"] and d["detail"]
    print(f"dead letters by reason: {dict(sorted(reasons.items()))}")
    assert {"missing_field", "wrong_type", "not_json", "not_utf8", "out_of_range", "too_large", "not_object"} <= set(reasons)

    model = Model(events)
    wrong = lambda: [u for u in sorted(model.by_user)
                     if get(f"{worker.url}/api/users/{_quote(u)}/profile")[1].get("counts") != model.counts(u)]
    wait_until(lambda: not wrong(), 120, interval=1, what="every good event applied")
    answered = {json.loads(r.value)["request_id"] for r in read_topic(stack.broker.bootstrap,
                                                                       "amazon-recommendation-responses", 20)}
    assert set(requests) <= answered
    assert worker.proc.pid == pid and worker.alive()   # never restarted


def _quote(user: str) -> str:
    from urllib.parse import quote

    return quote(user, safe="")
