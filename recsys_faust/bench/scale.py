"""``recsys-faust bench --scale``: how the ranking grows with the catalogue, exact and approximate.

Every other figure is on the Amazon data's 8,687 items. This generates shops with planted
structure (items in clusters of similar taste; each user mostly buys from one cluster, a day
per purchase), at 10k, 100k and 1M items, trains ALS on them where this machine can (64
factors, 10 iterations), and per size times the ranking step of one event: fold-in +
transitions (counts from the users' histories, shipped with the model) + blend + top-50, on
the exact path (every item scored) and on the HNSW path (ranking/ann.py), with the recall@50
of the HNSW lists against the exact ones on the same users. Also: the model's load time (the
fold-in's matrices, and the HNSW build), its memory (item factors + HNSW graph), and the
process's RSS growth while it holds both.

Where a worker can load the model (the trained sizes), the first 20,000 interactions also go
through a real worker with it active (a dev broker of its own): events/s of the full path, and
the worker's and its scoring process's peak RSS. Not at 1M items: a 1M-item model (256 MB of
factors) is over ``RECSYS_MAX_MODEL_BYTES`` on the model topic, so no worker can load it yet.
"""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import click
import numpy as np


@dataclass(frozen=True)
class Size:
    items: int
    users: int
    per_user: int          # interactions per user
    train: bool            # ALS trained here (else planted factors: the 1M row of --quick)


SIZES = (Size(10_000, 15_000, 20, True), Size(100_000, 150_000, 20, True), Size(1_000_000, 1_000_000, 10, False))
QUICK = (Size(10_000, 15_000, 20, True), Size(100_000, 150_000, 10, True), Size(1_000_000, 200_000, 10, False))
FACTORS = 64
PROFILES = 300             # users whose ranking is timed, one event at a time
WORKER_EVENTS = 20_000     # streamed through a real worker at the sizes a worker can load
BATCH = 100                # and in micro-batches of this many users


@dataclass
class Row:
    size: Size
    exact_us: float
    ann_us: float
    exact_batched_us: float    # per user, in micro-batches of BATCH users (as the workers score)
    ann_batched_us: float
    recall: float
    train_s: Optional[float]
    load_s: float
    index_s: float
    model_mib: float
    rss_mib: float
    notes: list[str] = field(default_factory=list)
    events_per_s: Optional[float] = None   # the full path on one worker (None: not measured)
    worker_rss_mib: Optional[float] = None  # that worker + its scoring process, peak


def planted_shop(size: Size, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, ts, planted item factors): interactions in time order."""
    rng = np.random.default_rng(seed)
    clusters = max(20, size.items // 500)
    cluster_of = rng.integers(0, clusters, size=size.items)
    members = [np.flatnonzero(cluster_of == c) for c in range(clusters)]
    home = rng.integers(0, clusters, size=size.users)
    n = size.users * size.per_user
    users = np.repeat(np.arange(size.users, dtype=np.int32), size.per_user)
    from_home = rng.random(n) < 0.8
    items = rng.integers(0, size.items, size=n).astype(np.int32)
    # home-cluster picks, popular items first within a cluster (a Zipf-like rank)
    pick = np.minimum((rng.pareto(1.2, size=n) * 3).astype(np.int64), 10**9)
    for c in range(clusters):
        rows = np.flatnonzero(from_home & (home[users] == c))
        if len(rows) and len(members[c]):
            items[rows] = members[c][pick[rows] % len(members[c])]
    ts = np.tile(np.arange(size.per_user, dtype=np.float64) * 86_400.0, size.users) + 1.7e9
    centers = rng.normal(size=(clusters, FACTORS))
    Y = (centers[cluster_of] + 0.6 * rng.normal(size=(size.items, FACTORS))) * 0.1
    return users, items, ts, Y.astype(np.float32)


def _rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def measure(size: Size, say: Callable[[str], None], workdir: Optional[Path] = None) -> Row:
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    from ..popularity.trending import PopularityIndex
    from ..ranking.active import ModelHolder
    from ..ranking.ann import AnnConfig
    from ..ranking.artifact import ModelArtifact
    from ..ranking.ranker import Ranker
    from ..ranking.transition_index import TransitionIndex
    from ..ranking.transitions import counts_from_histories
    from ..settings import Settings
    from ..training.als import ALSParams, train_als

    notes: list[str] = []
    say(f"{size.items:,} items, {size.users:,} users: generating {size.users * size.per_user:,} interactions ...")
    users, items, ts, Y = planted_shop(size)
    train_s: Optional[float] = None
    if size.train:
        matrix = sp.csr_matrix((np.ones(len(users), dtype=np.float32), (users, items)),
                               shape=(size.users, size.items))
        say("  training ALS (64 factors, 10 iterations) ...")
        started = time.perf_counter()
        _, Y, _fit = train_als(matrix, ALSParams(factors=FACTORS, iterations=10))
        train_s = time.perf_counter() - started
        del matrix
    else:
        notes.append("planted factors (not trained)")
    say("  transition counts from the histories ...")
    shipped = counts_from_histories(users, items, ts, size.items)
    ids = [f"i{j}" for j in range(size.items)]
    artifact = ModelArtifact(f"scale-{size.items}", ids, Y, item_category=[None] * size.items, transitions=shipped)
    gc.collect()
    rss0 = _rss_mib()
    started = time.perf_counter()
    exact_holder = ModelHolder()
    exact_holder.offer(artifact, 1.0)
    load_s = time.perf_counter() - started
    gc.collect()
    rss0 = _rss_mib()  # what one model with its index adds is measured from here
    ann_holder = ModelHolder(ann_min_items=1, ann=AnnConfig(build_threads=2))  # the bench has the machine
    ann_holder.offer(artifact, 1.0)
    say("  building the HNSW index ...")
    started = time.perf_counter()
    with threadpool_limits(1, "blas"):
        index = ann_holder.active.scoring.ann_index()
    index_s = time.perf_counter() - started
    rss_mib = _rss_mib() - rss0  # the active model (factors, fold-in, unit factors) + its HNSW index
    import faiss

    graph_bytes = len(faiss.serialize_index(index.index)) - Y.nbytes  # the HNSW links beyond the vectors
    model_mib = (Y.nbytes + graph_bytes) / 2**20
    # the users' last 50 items as profiles (each interaction its own day: the next-day pairs)
    rng = np.random.default_rng(1)
    chosen = rng.choice(size.users, size=PROFILES, replace=False)
    profiles = []
    for u in chosen:
        lo = u * size.per_user
        profiles.append({"user_id": f"u{u}", "recent": [[ids[items[j]], "purchase", ts[j], None, None]
                                                         for j in range(lo, lo + size.per_user)][-50:]})
    popularity = PopularityIndex(window_s=10**9, bucket_s=10**9)
    settings = Settings()
    exact = Ranker(settings, popularity, TransitionIndex(), exact_holder)
    approx = Ranker(settings, popularity, TransitionIndex(), ann_holder)
    say(f"  ranking {PROFILES} users one event at a time, exact and on the index ...")
    timings: dict[str, float] = {}
    lists: dict[str, list] = {}
    with threadpool_limits(1, "blas"):
        for name, ranker in (("exact", exact), ("ann", approx)):
            model = ranker.models.active
            ranker.score(model, profiles[:5], n=50)  # warm
            started = time.perf_counter()
            lists[name] = [ranker.score(model, [p], n=50)[0] for p in profiles]
            timings[name] = (time.perf_counter() - started) / len(profiles) * 1e6
            started = time.perf_counter()
            for lo in range(0, len(profiles), BATCH):
                ranker.score(model, profiles[lo:lo + BATCH], n=50)
            timings[name + " batched"] = (time.perf_counter() - started) / len(profiles) * 1e6
    hits = total = 0
    for e, a in zip(lists["exact"], lists["ann"]):
        if e is None:
            continue
        want = set(e[0][0][:50])
        hits += len(want & set(a[0][0][:50])) if a is not None else 0
        total += len(want)
    recall = hits / total if total else float("nan")
    say(f"  exact {timings['exact']:,.0f} us, HNSW {timings['ann']:,.0f} us a user one at a time; in batches of "
        f"{BATCH}: {timings['exact batched']:,.0f} vs {timings['ann batched']:,.0f} us; recall@50 {recall:.3f}")
    del exact_holder, ann_holder, exact, approx, index
    gc.collect()
    row = Row(size, timings["exact"], timings["ann"], timings["exact batched"], timings["ann batched"], recall, train_s,
              load_s, index_s, model_mib, rss_mib, notes)
    if workdir is not None and size.train:
        try:
            row.events_per_s, row.worker_rss_mib = measure_worker(artifact, users, items, ts, workdir / f"w{size.items}",
                                                                  say)
        except ValueError as exc:  # the model message over RECSYS_MAX_MODEL_BYTES
            row.notes.append(f"no worker row: {exc}")
    return row


def measure_worker(artifact, users: np.ndarray, items: np.ndarray, ts: np.ndarray, workdir: Path,
                   say: Callable[[str], None], extra_env: Optional[dict[str, str]] = None) -> tuple[float, float]:
    """Events/s of the full path on one worker with this model active, and the worker's and its
    scoring process's peak RSS: the first WORKER_EVENTS interactions produced to a dev broker
    that holds exactly them, as ``bench`` measures the Amazon data."""
    import asyncio

    from ..devstack.stack import DevStack
    from ..training.train import publish
    from .suite import _metric_sum, _produce, _wait_count, peak_rss_mib

    n = min(WORKER_EVENTS, len(users))
    events = [("purchase", {"event_id": f"s{j}", "user_id": f"u{users[j]}", "product_id": artifact.item_ids[items[j]],
                            "quantity": 1, "timestamp": float(ts[j])}) for j in np.argsort(ts, kind="stable")[:n]]
    stack = DevStack(workdir, partitions=4, database=False).start()
    try:
        say(f"  a worker with this model: publishing it, streaming {n:,} events ...")
        asyncio.run(publish(stack.settings, artifact))
        _produce(stack, events)
        worker = stack.add_worker("scale", wait=False, extra_env=extra_env)
        read = lambda: _metric_sum(worker.get_text("/metrics?name[]=recsys_events_total"), "recsys_events_total",
                                   'outcome="applied"')
        _, rate = _wait_count(read, n, 900, worker.alive)
        scoring_pid = (worker.get("/api/health")[1].get("scoring") or {}).get("pid")
        rss = peak_rss_mib(worker.proc.pid) + (peak_rss_mib(scoring_pid) if scoring_pid else 0.0)
        say(f"  worker: {rate:,.0f} events/s, worker + scoring process {rss:,.0f} MiB")
        return rate, rss
    finally:
        stack.stop()


def table(rows: list[Row]) -> str:
    head = ("items", "users", "ranking us/event exact", "ranking us/event HNSW", "HNSW/exact",
            f"in batches of {BATCH}: exact / HNSW us a user", "recall@50",
            "model load s (+ HNSW build)", "model MiB (factors + graph)", "RSS MiB of a loaded model + index", "train s",
            "events/s on a worker", "worker + scoring RSS MiB", "note")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join((
            f"{r.size.items:,}", f"{r.size.users:,}", f"{r.exact_us:,.0f}", f"{r.ann_us:,.0f}",
            f"{r.ann_us / r.exact_us:.2f}x", f"{r.exact_batched_us:,.0f} / {r.ann_batched_us:,.0f}", f"{r.recall:.3f}", f"{r.load_s:.1f} (+{r.index_s:.1f})",
            f"{r.model_mib:,.0f}", f"{r.rss_mib:,.0f}", "-" if r.train_s is None else f"{r.train_s:.1f}",
            "-" if r.events_per_s is None else f"{r.events_per_s:,.0f}",
            "-" if r.worker_rss_mib is None else f"{r.worker_rss_mib:,.0f}",
            "; ".join(r.notes) or "")) + " |")
    return "\n".join(lines)


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [r.size.items for r in rows]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(x, [r.exact_us for r in rows], "o-", label="exact (every item scored)")
    a.loglog(x, [r.ann_us for r in rows], "s-", label="HNSW candidates")
    a.loglog(x, [r.exact_batched_us for r in rows], "o--", label=f"exact, batches of {BATCH}")
    a.loglog(x, [r.ann_batched_us for r in rows], "s--", label=f"HNSW, batches of {BATCH}")
    a.axhline(1000, color="grey", linestyle=":", label="1 ms")
    a.set_xlabel("items")
    a.set_ylabel("ranking per event (us)")
    a.legend(fontsize=7)
    a.set_title("fold-in + transitions + blend + top-50")
    b.loglog(x, [r.model_mib for r in rows], "o-", label="model: factors + HNSW graph")
    b.loglog(x, [max(r.rss_mib, 1.0) for r in rows], "s-", label="RSS growth holding it")
    b.set_xlabel("items")
    b.set_ylabel("MiB")
    b.legend()
    b.set_title("memory")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run_scale(quick: bool, out: Path) -> list[Row]:
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for size in (QUICK if quick else SIZES):
        rows.append(measure(size, click.echo, out))
    click.echo("")
    click.echo(table(rows))
    plot(rows, out / "scale.png")
    click.echo(f"\nplot: {out / 'scale.png'}")
    click.echo("events/s and a worker's RSS are not measured at 1M items: a 1M-item model is over "
               "RECSYS_MAX_MODEL_BYTES on the model topic, so no worker can load it through Kafka yet")
    return rows
