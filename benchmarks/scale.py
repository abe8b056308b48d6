"""``recsys-faust bench --scale``: how the ranking grows with the catalogue, exact and approximate.

Every other figure is on the Amazon data's 8,687 items. This generates shops with planted
structure (items in clusters of similar taste; each user mostly buys from one cluster, a day
per purchase), at 10k, 100k and 1M items, trains ALS on them (64 factors, 10 iterations; a
million items by a million users takes about a minute; ``--quick`` plants the 1M-item factors
instead), and per size times the ranking step of one event: fold-in +
transitions (counts from the users' histories, shipped with the model) + blend + top-50, on
the exact path (every item scored) and on the HNSW path (ranking/maths/ann.py), with the recall@50
of the HNSW lists against the exact ones on the same users. Also: the model's load time (the
fold-in's matrices, and the HNSW build), its memory (item factors + HNSW index), and the
process's RSS growth while it holds both.

At every size the first 20,000 interactions also go through a real worker with the model active
(a dev broker of its own), the model saved and published as ``train --publish`` does it (by
reference to the models dir past ``RECSYS_MAX_MODEL_BYTES``, with its HNSW index saved beside it
past ``RECSYS_ANN_MIN_ITEMS``): events/s of the full path, the time from the announcement to the
model served, and the memory of the worker and its scoring process, as PSS (the mapped factors
they share counted once) and as peak RSS (counted in both). Last, ``measure_users``: table
state for up to a million users on one worker, memory and data dir at each step.
"""

from __future__ import annotations

import gc
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import click
import numpy as np


@dataclass(frozen=True)
class Size:
    items: int
    users: int
    per_user: int          # interactions per user
    train: bool            # ALS trained here (else planted factors: the 1M row of --quick)


SIZES = (Size(10_000, 15_000, 20, True), Size(100_000, 150_000, 20, True), Size(1_000_000, 1_000_000, 10, True))
QUICK = (Size(10_000, 15_000, 20, True), Size(100_000, 150_000, 10, True), Size(1_000_000, 200_000, 10, False))
FACTORS = 64
PROFILES = 300             # users whose ranking is timed, one event at a time
WORKER_EVENTS = 20_000     # streamed through a real worker at the sizes a worker can load
BATCH = 100                # and in micro-batches of this many users
PASSES = 3                 # timed passes over them; the best is the figure


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
    worker: Optional[WorkerFigures] = None  # the full path on one worker (None: not measured)


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


def _rss_mib(pid: "int | str" = "self") -> float:
    """Resident set size now (not the peak: suite.peak_rss_mib)."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024


def measure(size: Size, say: Callable[[str], None], workdir: Optional[Path] = None) -> Row:
    import scipy.sparse as sp
    from threadpoolctl import threadpool_limits

    from recsys_faust.popularity.trending import PopularityIndex
    from recsys_faust.ranking.model.active import ModelHolder
    from recsys_faust.ranking.maths.ann import AnnConfig
    from recsys_faust.ranking.model.artifact import ModelArtifact
    from recsys_faust.ranking.policy.ranker import Ranker
    from recsys_faust.transitions.index import TransitionIndex
    from recsys_faust.transitions.counts import counts_from_histories
    from recsys_faust.settings import Settings
    from recsys_faust.training.als import ALSParams, train_als

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
    rss_mib = _rss_mib() - rss0  # the active model (factors, fold-in, norms) + its HNSW index
    import faiss

    index_bytes = len(faiss.serialize_index(index.index))  # the graph and the 8-bit codes
    model_mib = (Y.nbytes + index_bytes) / 2**20
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
            # Best of PASSES: a first pass over a freshly built index and factors also pays their
            # page faults (882, 706, then 580 us an event at 100k items, three passes in a row),
            # which a worker pays once, not per event. The same for both paths.
            timings[name] = timings[name + " batched"] = float("inf")
            for _ in range(PASSES):
                started = time.perf_counter()
                lists[name] = [ranker.score(model, [p], n=50)[0] for p in profiles]
                timings[name] = min(timings[name], (time.perf_counter() - started) / len(profiles) * 1e6)
                started = time.perf_counter()
                for lo in range(0, len(profiles), BATCH):
                    ranker.score(model, profiles[lo:lo + BATCH], n=50)
                timings[name + " batched"] = min(timings[name + " batched"],
                                                 (time.perf_counter() - started) / len(profiles) * 1e6)
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
    del exact_holder, ann_holder, exact, approx
    gc.collect()
    row = Row(size, timings["exact"], timings["ann"], timings["exact batched"], timings["ann batched"], recall, train_s,
              load_s, index_s, model_mib, rss_mib, notes)
    if workdir is not None:
        row.worker = measure_worker(artifact, users, items, ts, workdir / f"w{size.items}", say, index=index)
    return row


def _pss_mib(pid: int) -> float:
    """Proportional set size: a page shared by N processes counts 1/N in each, so the sum over
    a worker and its scoring process counts the mapped factors once."""
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    return int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024


@dataclass
class WorkerFigures:
    events_per_s: float
    peak_rss_mib: float        # worker + scoring process, peak RSS each (shared pages counted twice)
    pss_mib: float             # worker + scoring process, PSS at the end (shared pages once)
    load_s: float              # announcement read to model served (sha256 check, map, fold-in matrices)
    shipped: str               # inline / reference


def measure_worker(artifact, users: np.ndarray, items: np.ndarray, ts: np.ndarray, workdir: Path,
                   say: Callable[[str], None], extra_env: Optional[dict[str, str]] = None,
                   index: Optional[Any] = None) -> WorkerFigures:
    """Events/s of the full path on one worker with this model active, and the memory of the
    worker and its scoring process: the model is saved (with its HNSW index past
    ``RECSYS_ANN_MIN_ITEMS``, as ``train`` saves it) and published as ``train --publish`` does
    (by reference past ``RECSYS_MAX_MODEL_BYTES``) to the running worker; a warm-up of 2,000 events lets the scoring
    process take the model; then the first WORKER_EVENTS interactions are produced and timed."""
    import asyncio

    from recsys_faust.devstack.stack import DevStack
    from recsys_faust.ranking.model.artifact import INDEX_FILE, save, save_index
    from recsys_faust.training.train import publish
    from benchmarks.suite import _metric_sum, _produce, _wait_count, peak_rss_mib

    n = min(WORKER_EVENTS, len(users))
    order = np.argsort(ts, kind="stable")

    def event(j: int, tag: str) -> tuple[str, dict]:
        return ("purchase", {"event_id": f"{tag}{j}", "user_id": f"u{users[j]}",
                             "product_id": artifact.item_ids[items[j]], "quantity": 1, "timestamp": float(ts[j])})

    warm = [event(int(j), "w") for j in order[-2_000:]]
    events = [event(int(j), "s") for j in order[:n]]
    stack = DevStack(workdir, partitions=4, database=False).start()
    models_dir = workdir / "models"
    settings = stack.settings.with_overrides(models_dir=models_dir)
    if len(artifact.item_ids) >= settings.ranking.ann_min_items:
        # with its HNSW index saved beside it, a large model is best shipped by reference: the
        # scoring process reads the index instead of building it (minutes at a million items)
        settings = settings.with_overrides(model_shipping="reference")
    try:
        path = save(artifact, models_dir)
        if len(artifact.item_ids) >= settings.ranking.ann_min_items:
            if index is not None:  # the one just measured: the same build train would make
                index.write(str(path / INDEX_FILE))
            else:
                say(f"  HNSW index saved with the model in {save_index(path, artifact.item_factors):.1f} s")
        worker = stack.add_worker("scale", extra_env={"RECSYS_MODELS_DIR": str(models_dir), **(extra_env or {})})
        size = asyncio.run(publish(settings, artifact, path))
        started = time.perf_counter()  # from the announcement acknowledged by the broker
        shipped = "reference" if size < artifact.item_factors.nbytes else "inline"
        say(f"  published {shipped} ({size:,} bytes on the topic) to a running worker ...")
        while worker.get("/api/health")[1].get("model_version") != artifact.version:
            if time.perf_counter() - started > 600 or not worker.alive():
                raise RuntimeError(f"the worker did not serve {artifact.version}; see {workdir}")
            time.sleep(0.05)
        load_s = time.perf_counter() - started
        read = lambda: _metric_sum(worker.get_text("/metrics?name[]=recsys_events_total"), "recsys_events_total",
                                   'outcome="applied"')
        _produce(stack, warm)
        _wait_count(read, len(warm), 900, worker.alive)
        say(f"  model served {load_s:.1f} s after its announcement; warm; streaming {n:,} events ...")
        _produce(stack, events)
        _, rate = _wait_count(read, len(warm) + n, 900, worker.alive)
        scoring_pid = (worker.get("/api/health")[1].get("scoring") or {}).get("pid")
        pids = [worker.proc.pid] + ([scoring_pid] if scoring_pid else [])
        rss = sum(peak_rss_mib(p) for p in pids)
        pss = sum(_pss_mib(p) for p in pids)
        say(f"  worker: {rate:,.0f} events/s; worker + scoring process {pss:,.0f} MiB PSS ({rss:,.0f} MiB peak RSS, "
            f"the mapped factors counted in both)")
        return WorkerFigures(rate, rss, pss, load_s, shipped)
    finally:
        stack.stop()


USERS_STEPS = (100_000, 250_000, 500_000, 1_000_000)   # checkpoints of the table-state run
QUICK_USERS_STEPS = (50_000, 100_000)


@dataclass
class UsersStep:
    users: int
    events_per_s: float
    rss_mib: float             # worker + scoring process, now (not peak)
    pss_mib: float
    data_mib: float            # the worker's data dir: RocksDB tables on disk


def _dir_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def measure_users(steps: tuple[int, ...], workdir: Path, say: Callable[[str], None]) -> list[UsersStep]:
    """Table state at up to a million users: one worker with a 10k-item model takes one purchase
    from each of ``steps[-1]`` users, in steps; at each checkpoint the worker's and its scoring
    process's memory (now, not peak) and its data dir. Profiles, user factors and ready lists
    live in RocksDB (32 MiB block cache, 16 MiB write buffers per table partition), so memory
    should stay flat while the data dir grows with the users."""
    import asyncio

    from recsys_faust.devstack.stack import DevStack
    from recsys_faust.ranking.model.artifact import ModelArtifact, save
    from recsys_faust.training.train import publish
    from benchmarks.suite import _metric_sum, _produce, _wait_count

    size = Size(10_000, 15_000, 20, False)
    _, _, _, Y = planted_shop(size)
    ids = [f"i{j}" for j in range(size.items)]
    artifact = ModelArtifact("scale-users", ids, Y, item_category=[None] * size.items)
    stack = DevStack(workdir, partitions=4, database=False).start()
    models_dir = workdir / "models"
    settings = stack.settings.with_overrides(models_dir=models_dir)
    rng = np.random.default_rng(11)
    out: list[UsersStep] = []
    try:
        save(artifact, models_dir)
        worker = stack.add_worker("users", extra_env={"RECSYS_MODELS_DIR": str(models_dir)})
        asyncio.run(publish(settings, artifact))
        read = lambda: _metric_sum(worker.get_text("/metrics?name[]=recsys_events_total"), "recsys_events_total",
                                   'outcome="applied"')
        done = 0
        for step in steps:
            picks = rng.integers(0, size.items, size=step - done)
            events = [("purchase", {"event_id": f"m{u}", "user_id": f"m{u}", "product_id": ids[int(picks[u - done])],
                                    "quantity": 1, "timestamp": 1.7e9 + u * 0.01}) for u in range(done, step)]
            say(f"  users {done:,} -> {step:,}: producing ...")
            _produce(stack, events)
            _, rate = _wait_count(read, step, 3600, worker.alive)
            done = step
            scoring_pid = (worker.get("/api/health")[1].get("scoring") or {}).get("pid")
            pids = [worker.proc.pid] + ([scoring_pid] if scoring_pid else [])
            rss = sum(_rss_mib(p) for p in pids)
            pss = sum(_pss_mib(p) for p in pids)
            data = _dir_mib(worker.data_dir)
            out.append(UsersStep(step, rate, rss, pss, data))
            say(f"  {step:,} users: {rate:,.0f} events/s, worker + scoring {rss:,.0f} MiB RSS / {pss:,.0f} MiB PSS, "
                f"data dir {data:,.0f} MiB")
    finally:
        stack.stop()
    return out


def users_table(steps: list[UsersStep]) -> str:
    lines = ["| users with state | events/s (this step) | worker + scoring RSS MiB | PSS MiB | data dir MiB |",
             "|---|---|---|---|---|"]
    for s in steps:
        lines.append(f"| {s.users:,} | {s.events_per_s:,.0f} | {s.rss_mib:,.0f} | {s.pss_mib:,.0f} | {s.data_mib:,.0f} |")
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    head = ("items", "users", "ranking us/event exact", "ranking us/event HNSW", "HNSW/exact",
            f"in batches of {BATCH}: exact / HNSW us a user", "recall@50",
            "model load s (+ HNSW build)", "model MiB (factors + HNSW index)", "RSS MiB of a loaded model + index", "train s",
            "events/s on a worker", "worker + scoring PSS MiB (peak RSS)", "model shipped, served after s", "note")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join((
            f"{r.size.items:,}", f"{r.size.users:,}", f"{r.exact_us:,.0f}", f"{r.ann_us:,.0f}",
            f"{r.ann_us / r.exact_us:.2f}x", f"{r.exact_batched_us:,.0f} / {r.ann_batched_us:,.0f}", f"{r.recall:.3f}", f"{r.load_s:.1f} (+{r.index_s:.1f})",
            f"{r.model_mib:,.0f}", f"{r.rss_mib:,.0f}", "-" if r.train_s is None else f"{r.train_s:.1f}",
            "-" if r.worker is None else f"{r.worker.events_per_s:,.0f}",
            "-" if r.worker is None else f"{r.worker.pss_mib:,.0f} ({r.worker.peak_rss_mib:,.0f})",
            "-" if r.worker is None else f"{r.worker.shipped}, {r.worker.load_s:.1f}",
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
    b.loglog(x, [r.model_mib for r in rows], "o-", label="model: factors + HNSW index")
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
    click.echo("\ntable state at many users (one worker, a 10k-item model, one purchase per user):")
    steps = measure_users(QUICK_USERS_STEPS if quick else USERS_STEPS, out / "users", click.echo)
    click.echo(users_table(steps))
    return rows
