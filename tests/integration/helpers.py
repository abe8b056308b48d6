"""Test-side tools: a plain Kafka client (as an outside service would use) and an independent
model of what the workers should compute, written from the contract's definitions rather than
from the implementation."""

from __future__ import annotations

import asyncio
import csv
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import aiokafka
from aiokafka import TopicPartition

# Defaults from Settings (the workers run with them).
W_VIEW, W_PURCHASE, W_STAR = 1.0, 4.0, 0.8
TUMBLING = (3600, 3600, 86400)
HOPPING = (3600, 900, 21600)
TRENDING_WINDOW, BUCKET = 7 * 86400, 3600

DAY = 86400


def across_midnight(span_s: float = 6 * 3600) -> float:
    """An ``end`` for ``synthetic_events`` at least a minute in the past whose ``span_s`` before
    it crosses a UTC midnight, so that the transitions' day rule (same day, previous active day)
    and events of one user read out of time order across topics are exercised on every run,
    not only by a run that happens to start soon after midnight."""
    midnight = (time.time() - 60 - span_s / 2) // DAY * DAY
    return midnight + span_s / 2

TOPIC_OF = {"view": "amazon-product-views", "purchase": "amazon-purchases", "review": "amazon-reviews",
            "user-event": "amazon-user-events"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _produce(bootstrap: str, records: Iterable[tuple]) -> None:
    producer = aiokafka.AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                         max_request_size=4_000_000)
    await producer.start()
    try:
        futs = []
        for rec in records:
            topic, key, value = rec[:3]
            partition = rec[3] if len(rec) > 3 else None
            futs.append(await producer.send(topic, value=value, key=key, partition=partition))
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


def produce(bootstrap: str, records: Iterable[tuple]) -> None:
    """(topic, key bytes, value bytes[, partition]) records, keyed and partitioned by aiokafka (murmur2)."""
    run(_produce(bootstrap, list(records)))


def produce_events(bootstrap: str, events: Iterable[tuple[str, dict]]) -> None:
    produce(bootstrap, [(TOPIC_OF[k], o["user_id"].encode(), json.dumps(o).encode()) for k, o in events])


async def _read_topic(bootstrap: str, topic: str, timeout_s: float) -> list[Any]:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                         auto_offset_reset="earliest", fetch_max_wait_ms=50)
    await consumer.start()
    out = []
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            await consumer._client.force_metadata_update()
            parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + timeout_s
        idle = 0
        while time.monotonic() < deadline and idle < 3:
            batch = await consumer.getmany(timeout_ms=300)
            n = sum(len(v) for v in batch.values())
            idle = idle + 1 if n == 0 else 0
            for records in batch.values():
                out.extend(records)
    finally:
        await consumer.stop()
    return out


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record currently on ``topic`` (reads until idle)."""
    return run(_read_topic(bootstrap, topic, timeout_s))


def http(method: str, url: str, body: Optional[bytes] = None, headers: Optional[dict] = None,
         timeout: float = 10.0) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
            ctype = resp.headers.get("Content-Type", "")
            return resp.status, json.loads(raw) if "json" in ctype else raw.decode()
    except urllib.error.HTTPError as err:
        raw = err.read()
        try:
            return err.code, json.loads(raw)
        except ValueError:
            return err.code, raw.decode("utf-8", "replace")


def write_shop_csv(path: Path, events: Iterable[tuple[str, dict]]) -> Path:
    """The interactions of ``events`` as the dataset CSV that ``train`` and ``evaluate`` read."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "item_id", "rating", "timestamp", "category"])
        for kind, o in events:
            if kind != "user-event":
                w.writerow([o["user_id"], o["product_id"], 1, o["timestamp"], o["category"]])
    return path


def cli(stack: Any, *args: str, models_dir: Path, env: Optional[dict[str, str]] = None) -> subprocess.CompletedProcess:
    """``recsys-faust ARGS`` against ``stack``, as an operator would run it."""
    env = {**os.environ, **stack.env, "RECSYS_MODELS_DIR": str(models_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "recsys_faust", *args], env=env, capture_output=True,
                          text=True, timeout=300)


def get(url: str, headers: Optional[dict] = None) -> tuple[int, Any]:
    return http("GET", url, headers=headers)


def metric(worker: Any, name: str, labels: str = "") -> float:
    """The sum of a worker's ``name`` series on /metrics, of those whose labels hold ``labels``."""
    _, text = http("GET", f"{worker.url}/metrics?name[]={name}")
    return sum(float(value) for found, value in re.findall(rf"^{name}(?:{{([^}}]*)}})? ([0-9.e+-]+)$", text, re.M)
               if labels in found)


def wait_until(check: Callable[[], Any], timeout_s: float = 60.0, interval: float = 0.3, what: str = "") -> Any:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what or check}: last={last!r}")


# ---------------------------------------------------------------------------------------------
# The independent model
# ---------------------------------------------------------------------------------------------

def weight(kind: str, obj: dict) -> float:
    if kind == "view":
        return W_VIEW
    if kind == "purchase":
        return W_PURCHASE
    if kind == "review":
        return W_STAR * obj["rating"]
    return 0.0


def windows_for(ts: float, size: int, step: int) -> list[int]:
    return [s for s in range(int(ts // step) * step - size + step, int(ts // step) * step + 1, step)
            if s <= ts < s + size]


class Model:
    """What profiles, trending and recommendations must be, from the events alone."""

    def __init__(self, events: Iterable[tuple[str, dict]]) -> None:
        self.events = list(events)
        self.by_user: dict[str, list[tuple[str, dict]]] = defaultdict(list)
        for kind, obj in self.events:
            self.by_user[obj["user_id"]].append((kind, obj))

    def counts(self, user: str) -> dict[str, int]:
        c: Counter = Counter()
        for kind, obj in self.by_user[user]:
            c[obj["event_type"] if kind == "user-event" else kind] += 1
        return dict(c)

    def affinity_shares(self, user: str) -> dict[str, float]:
        aff: dict[str, float] = defaultdict(float)
        for kind, obj in self.by_user[user]:
            if kind != "user-event" and obj.get("category"):
                aff[obj["category"]] += weight(kind, obj)
        total = sum(aff.values()) or 1.0
        return {c: w / total for c, w in aff.items()}

    def windows(self, user: str, spec: tuple[int, int, int]) -> dict[int, dict[str, int]]:
        size, step, expires = spec
        evs = self.by_user[user]
        stream_time = max(o["timestamp"] for _, o in evs)
        out: dict[int, Counter] = defaultdict(Counter)
        for kind, obj in evs:
            name = obj["event_type"] if kind == "user-event" else kind
            for s in windows_for(obj["timestamp"], size, step):
                out[s][name] += 1
        return {s: dict(c) for s, c in out.items() if s + size + expires > stream_time}

    def seen(self, user: str) -> set[str]:
        return {o["product_id"] for k, o in self.by_user[user] if k != "user-event"}

    def item_table(self) -> dict[str, dict]:
        items: dict[str, dict] = {}
        for kind, obj in self.events:
            if kind == "user-event":
                continue
            it = items.setdefault(obj["product_id"], {"events": [], "category": None})
            it["events"].append((obj["timestamp"], weight(kind, obj)))
            if obj.get("category"):
                it["category"] = obj["category"]
        clock = max(math.floor(ts / BUCKET) * BUCKET + BUCKET for it in items.values() for ts, _ in it["events"])
        for it in items.values():
            it["total"] = round(sum(w for _, w in it["events"]), 6)
            it["trend"] = round(sum(w for ts, w in it["events"]
                                    if math.floor(ts / BUCKET) * BUCKET >= clock - TRENDING_WINDOW), 6)
        return items

    def trending(self, k: int, category: Optional[str] = None) -> list[str]:
        items = self.item_table()
        ranked = sorted(items, key=lambda p: (-items[p]["trend"], -items[p]["total"], p))
        if category:
            ranked = [p for p in ranked if items[p]["category"] == category]
        return ranked[:k]

    def successors(self) -> dict[str, Counter]:
        """Item transitions, from the rule's definition on each user's history in time order (a
        repeated event_id counted once), whatever order the worker reads the topics in: each
        interaction pairs with the user's other ones of the same day both ways, and with those
        of the user's previous active day forwards."""
        out: dict[str, Counter] = defaultdict(Counter)
        history: dict[str, list[tuple[str, float]]] = defaultdict(list)
        ids: dict[str, set] = defaultdict(set)
        for kind, obj in self.events:
            user = obj["user_id"]
            if kind == "user-event" or obj["event_id"] in ids[user]:
                continue
            ids[user].add(obj["event_id"])
            history[user].append((obj["product_id"], obj["timestamp"]))
        for events in history.values():
            events.sort(key=lambda e: e[1])
            for n, (pid, ts) in enumerate(events):
                day = ts // DAY
                h = events[:n]
                for other, t in h:
                    if t // DAY == day and other != pid:
                        out[other][pid] += 1
                        out[pid][other] += 1
                earlier = [t // DAY for _, t in h if t // DAY < day]
                if earlier:
                    for other, t in h:
                        if t // DAY == max(earlier) and other != pid:
                            out[other][pid] += 1
        return {p: c for p, c in out.items() if c}

    def wrong_successors(self, url: str, items: Iterable[str]) -> dict[str, dict[str, tuple]]:
        """The items whose "users took next" on the worker at ``url`` differ from the model:
        {item: {successor: (worker count, model count)}}, only the differing successors."""
        out = {}
        for pid in items:
            got = {i["product_id"]: i["score"] for i in get(f"{url}/api/products/{pid}/similar?kind=next&k=100")[1]["items"]}
            want = dict(self.next_items(pid, 100))
            if got != want:
                out[pid] = {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
        return out

    def next_items(self, product_id: str, k: int) -> list[tuple[str, float]]:
        succ = self.successors().get(product_id, Counter())
        return sorted(((p, float(c)) for p, c in succ.items()), key=lambda kv: (-kv[1], kv[0]))[:k]

    def recommendations(self, user: str, k: int) -> list[tuple[str, float]]:
        """Without a model: the user's transitions (from their latest active day's items), the
        rest of the list from popularity x affinity with score 0; popularity alone without any."""
        popular = self.popular_recommendations(user, k + 50)
        interactions = [o for kind, o in self.by_user.get(user, []) if kind != "user-event"]
        if not interactions:
            return popular[:k]
        last = max(o["timestamp"] // DAY for o in interactions)
        query = {o["product_id"] for o in interactions if o["timestamp"] // DAY == last}
        seen = self.seen(user)
        scores: Counter = Counter()
        succ = self.successors()
        for q in query:
            for p, c in succ.get(q, Counter()).items():
                if p not in seen:
                    scores[p] += c
        if not scores:
            return popular[:k]
        ranked = sorted(((p, float(c)) for p, c in scores.items()), key=lambda kv: (-kv[1], kv[0]))
        ranked += [(p, 0.0) for p, _ in popular if p not in scores]
        return ranked[:k]

    def strategy(self, user: str) -> str:
        return "transitions" if self.recommendations(user, 1) and any(
            s > 0 for _, s in self.recommendations(user, 1)) else "popular_affinity"

    def popular_recommendations(self, user: str, k: int) -> list[tuple[str, float]]:
        items = self.item_table()
        ranked = sorted(items, key=lambda p: (-items[p]["trend"], -items[p]["total"], p))
        position = {p: i for i, p in enumerate(ranked)}
        shares = self.affinity_shares(user) if user in self.by_user else {}
        top3 = dict(sorted(shares.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
        seen = self.seen(user) if user in self.by_user else set()
        scored = []
        for p in ranked:
            if p in seen:
                continue
            share = top3.get(items[p]["category"], 0.0)
            scored.append((round(items[p]["trend"] * (1 + share), 6), position[p], p))
        scored.sort(key=lambda t: (t[0] * -1, t[1]))
        return [(p, s) for s, _, p in scored[:k]]


async def _committed_vs_end(bootstrap: str, group: str, topics: Iterable[str]) -> dict[tuple[str, int], tuple[int, int]]:
    consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or ())]
        ends = await consumer.end_offsets(tps)
        return {(tp.topic, tp.partition): (await consumer.committed(tp) or 0, ends[tp]) for tp in tps}
    finally:
        await consumer.stop()


def wait_committed_to_end(bootstrap: str, topics: Iterable[str], group: str = "recsys-faust",
                          timeout_s: float = 60.0) -> None:
    """Until the workers' group has committed every partition of ``topics`` to its end offset:
    every record on them was processed (and stored) by every agent that reads them, since a
    commit passes a record only once all of them acked it."""
    topics = list(topics)

    def done() -> bool:
        return all(c == e for c, e in run(_committed_vs_end(bootstrap, group, topics)).values())

    wait_until(done, timeout_s, interval=0.5, what=f"the group's commits to reach the end of {topics}")


async def partition_ids(bootstrap: str, topic: str) -> list[int]:
    """The topic's partitions, from the broker (a fresh consumer's metadata may not list it yet)."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
        return sorted(p["partition"] for p in described[0]["partitions"])
    finally:
        await admin.close()
