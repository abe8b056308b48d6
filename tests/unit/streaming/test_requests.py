"""streaming/requests.py: one answer per request record, exactly once across replays, with
invalid requests dead-lettered and misrouted ones re-sent to the user's partition."""

from __future__ import annotations

import json
from types import SimpleNamespace

from recsys_faust.kafka.partitioning import user_partition
from recsys_faust.popularity.trending import PopularityIndex
from recsys_faust.ranking.model.active import ModelHolder
from recsys_faust.ranking.policy.ranker import Ranker
from recsys_faust.ranking.runtime.ready_values import ready_entry
from recsys_faust.ranking.strategies import POPULARITY_MODEL_VERSION
from recsys_faust.transitions.index import TransitionIndex
from recsys_faust.serving.service import Recommender
from recsys_faust.settings import Settings
from recsys_faust.streaming.requests import RequestAnswerer
from tests.unit.factories import B, popularity_entry

TOPIC = "amazon-recommendation-requests"
N = 4


class Sent:
    def __init__(self) -> None:
        self.records: list[tuple] = []

    async def send(self, *args, key=None, value=None):
        self.records.append((*args, key, value))


def record(value, *, user="u1", offset=0, partition=None):
    partition = user_partition(user, N) if partition is None else partition
    raw = json.dumps(value).encode() if isinstance(value, dict) else value
    return SimpleNamespace(message=SimpleNamespace(topic=TOPIC, partition=partition, offset=offset,
                                                   key=user.encode(), value=raw))


def answerer():
    settings = Settings()
    idx = PopularityIndex(window_s=200, bucket_s=B, refresh_s=0)
    idx.put("hot@0", popularity_entry("hot", "x", [(1000, 5.0)], 0))
    ready = {"u1": ready_entry((["a", "b", "c"], [3.0, 2.0, 1.0], ["x", "x", "y"]), "popular",
                               POPULARITY_MODEL_VERSION, 10.0)}
    rec = Recommender(settings.ranking, {}, ready, Ranker(settings, idx, TransitionIndex(), ModelHolder()))
    responses, dead, requests = Sent(), Sent(), Sent()
    a = RequestAnswerer(settings.ingest, recommender=rec, answered={}, responses=responses, dead_letters=dead,
                        requests_topic=requests, partitions_of=lambda topic: N)
    return a, responses, dead, requests


async def test_a_request_is_answered_once_even_when_a_rebalance_replays_it():
    a, responses, dead, _ = answerer()
    req = {"request_id": "r1", "user_id": "u1", "k": 2, "exclude": ["a"]}
    await a.handle(record(req, offset=7))
    await a.handle(record(req, offset=7))          # the replay
    await a.handle(record({**req, "request_id": "r2", "k": 1}, offset=8))
    answers = [value for *_, key, value in responses.records]
    assert [(x["request_id"], [i["product_id"] for i in x["items"]]) for x in answers] == \
        [("r1", ["b", "c"]), ("r2", ["b"])]
    assert all(key == "u1" for *_, key, _ in responses.records) and dead.records == []
    assert answers[0]["strategy"] == "popular" and answers[0]["model_version"] == POPULARITY_MODEL_VERSION


async def test_invalid_requests_are_dead_lettered_with_the_reason_and_not_answered():
    a, responses, dead, _ = answerer()
    for n, bad in enumerate([b"not json", {"user_id": "u1", "k": 2}, {"request_id": "r", "user_id": "u1", "k": 0},
                             {"request_id": "r", "user_id": "u1", "exclude": "a"}]):
        await a.handle(record(bad, offset=n))
    codes = [invalid.code for _rec, invalid, _key, _value in dead.records]
    assert codes == ["not_json", "missing_field", "out_of_range", "wrong_type"]
    assert responses.records == []


async def test_a_request_on_the_wrong_partition_is_resent_keyed_by_the_user_not_answered():
    a, responses, dead, requests = answerer()
    wrong = (user_partition("u1", N) + 1) % N
    value = {"request_id": "r9", "user_id": "u1"}
    await a.handle(record(value, partition=wrong))
    assert responses.records == [] and dead.records == []
    assert requests.records == [(b"u1", json.dumps(value).encode())]
