"""``recsys-faust bench``: each figure next to a baseline measured in the same run.

These machines are shared and absolute times drift; the ratio to a baseline run alongside, on
the same events, broker and machine, is the number to read.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import click
import numpy as np

from recsys_faust.client.datasets import ShopSpec, dataset_events, synthetic_events
from recsys_faust.devstack.stack import DevStack
from recsys_faust.devstack.workers import WorkerProcess



@dataclass
class Row:
    name: str
    value: str
    baseline: str
    ratio: str
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    broker: str = ""   # what every row ran on, printed above the table

    def add(self, *args: str) -> None:
        self.rows.append(Row(*args))
        click.echo(f"  -> {args[0]}: {args[1]} vs {args[2]} ({args[3]})")

    def table(self) -> str:
        head = ("benchmark", "figure", "baseline (same run)", "ratio", "note")
        cells = [head] + [(r.name, r.value, r.baseline, r.ratio, r.note) for r in self.rows]
        widths = [max(len(c[i]) for c in cells) for i in range(5)]
        line = lambda c: "| " + " | ".join(c[i].ljust(widths[i]) for i in range(5)) + " |"
        table = "\n".join([line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                           + [line(c) for c in cells[1:]])
        return (f"Every row, its baseline included, on {self.broker}.\n\n" if self.broker else "") + table


def _metric_sum(text: str, name: str, label_filter: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and label_filter in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def _wait_count(read: Callable[[], float], target: float, timeout_s: float,
                alive: Callable[[], bool] = lambda: True,
                on_first: Optional[Callable[[float], None]] = None) -> tuple[float, float]:
    """Poll ``read`` until it reaches ``target``; rate measured from the first progress seen
    (``on_first`` is called then, with the count, to start other meters at the same point)."""
    deadline = time.monotonic() + timeout_s
    t0 = c0 = None
    c = 0.0
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError("the measured worker exited; see its log in the bench workdir")
        try:
            c = read()
        except (OSError, ValueError):
            c = 0.0
        now = time.perf_counter()
        if t0 is None and c > 0:
            t0, c0 = now, c
            if on_first is not None:
                on_first(c)
        if c >= target:
            if t0 is None or now - t0 < 1e-3:
                return c, float("nan")
            return c, (c - c0) / (now - t0)
        time.sleep(0.1)  # each poll renders /metrics on the measured worker: ~1 ms of its time
    raise TimeoutError(f"only {c} of {target} processed after {timeout_s:.0f}s")


def _events(data: Optional[Path], n: int) -> list[tuple[str, dict]]:
    if data is not None and data.exists():
        return list(dataset_events(data, kind="purchase", limit=n))
    spec = ShopSpec(users=max(50, n // 20), items=2000, categories=20, events_per_user=20, seed=1)
    return [e for e in synthetic_events(spec) if e[0] != "user-event"][:n]


def _produce(stack: DevStack, events: list[tuple[str, dict]]) -> None:
    from recsys_faust.client.replay import replay_events

    asyncio.run(replay_events(stack.settings, events))


def peak_rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def publish_model(stack: DevStack, events: list[tuple[str, dict]]) -> str:
    """Train a 64-factor ALS on the events and publish it, so workers fold users in."""
    from recsys_faust.training.als import ALSParams
    from recsys_faust.training.train import publish, train_events

    settings = stack.settings.with_overrides(models_dir=stack.workdir / "models")
    result = train_events(settings, events, ALSParams(factors=64), "bench events")
    asyncio.run(publish(settings, result.artifact))
    return result.artifact.version


class CpuMeter:
    """CPU seconds of processes from a starting point on, per event counted since then.

    Events/s of one worker swing with this machine's speed from run to run (the minimal agent
    read from 2,800 to 3,700/s within one bench); the CPU a worker spends on an event swings
    less, and it says what a rate cannot: whether a path is bound by its core.
    """

    def __init__(self, *pids: Optional[int]) -> None:
        self.pids = [p for p in pids if p]
        self._cpu0: Optional[float] = None
        self._count0 = 0.0

    def start(self, count: float) -> None:
        self._cpu0, self._count0 = sum(_cpu_seconds(p) for p in self.pids), count

    def us_per_event(self, count: float) -> float:
        if self._cpu0 is None or count <= self._count0:
            return float("nan")
        return 1e6 * (sum(_cpu_seconds(p) for p in self.pids) - self._cpu0) / (count - self._count0)


def _baseline_rates(stack: DevStack, events: list[tuple[str, dict]], *,
                    raw: bool) -> tuple[float, float, Optional[float], float]:
    """(minimal agent events/s, its peak RSS in MiB, plain consume events/s if ``raw``, its CPU
    us per event), each reading the events from a fresh dev broker holding exactly them."""
    import aiokafka
    from aiokafka import TopicPartition

    n = len(events)
    baseline = DevStack(stack.workdir / "baseline", partitions=stack.partitions, database=False,
                        broker=stack.broker_kind, brokers=stack.n_brokers).start()
    try:
        _produce(baseline, events)

        # the broker limit: a plain aiokafka consumer without processing
        async def raw_consume() -> float:
            c = aiokafka.AIOKafkaConsumer(bootstrap_servers=baseline.broker.bootstrap, enable_auto_commit=False,
                                          auto_offset_reset="earliest", max_poll_records=5000)
            await c.start()
            tps = [TopicPartition("amazon-purchases", p) for p in range(baseline.partitions)]
            c.assign(tps)
            await c.seek_to_beginning(*tps)
            got, t0 = 0, time.perf_counter()
            while got < n:
                batch = await c.getmany(timeout_ms=500)
                got += sum(len(v) for v in batch.values())
            dt = time.perf_counter() - t0
            await c.stop()
            return n / dt

        raw_rate = asyncio.run(raw_consume()) if raw else None
        # Faust's per-event floor: table[key] += 1
        minimal = WorkerProcess("bench-minimal", {**baseline.env, "BENCH_TOPIC": "amazon-purchases"},
                                baseline.workdir / "bench-minimal" / "data",
                                log_path=baseline.workdir / "bench-minimal.log",
                                app_module="benchmarks.minimal_app").start()
        try:
            meter = CpuMeter(minimal.proc.pid)
            count, minimal_rate = _wait_count(lambda: minimal.get("/count", timeout=2)[1]["count"], n, 600,
                                              minimal.alive, on_first=meter.start)
            minimal_cpu = meter.us_per_event(count)
            minimal_rss = peak_rss_mib(minimal.proc.pid)
        finally:
            minimal.stop()
    finally:
        baseline.stop()
    return minimal_rate, minimal_rss, raw_rate, minimal_cpu


def _full_path(stack: DevStack, events: list[tuple[str, dict]], name: str) -> tuple[WorkerProcess, float, float, float]:
    """(worker, events/s, its CPU us an event, its scoring process's) for the full path over
    ``events``, with an ALS model active so fold-in + top-k run on every event; the sink is
    left out (it has its own row) by running the worker without DATABASE_URL."""
    n = len(events)
    version = publish_model(stack, events)
    click.echo(f"  model {version} published")
    _produce(stack, events)
    worker = stack.add_worker(name, wait=False, extra_env={"DATABASE_URL": ""})
    read = lambda: _metric_sum(worker.get_text("/metrics?name[]=recsys_events_total"), "recsys_events_total", 'outcome="applied"')
    meters = {"worker": CpuMeter(worker.proc.pid), "scoring": CpuMeter()}

    def start_meters(count: float) -> None:
        meters["scoring"] = CpuMeter((worker.get("/api/health")[1].get("scoring") or {}).get("pid"))
        for meter in meters.values():
            meter.start(count)

    count, full_rate = _wait_count(read, n, 900, worker.alive, on_first=start_meters)
    full_cpu, scoring_cpu = meters["worker"].us_per_event(count), meters["scoring"].us_per_event(count)
    click.echo(f"  full path: {full_rate:,.0f}/s, {full_cpu:,.0f} us of CPU an event (+ {scoring_cpu:,.0f} scoring)")
    return worker, full_rate, full_cpu, scoring_cpu


def bench_throughput_replicated(report: Report, events: list[tuple[str, dict]], workdir: Path) -> None:
    """The pipeline row on three Kafka brokers: replication factor 3 on every topic (changelogs
    included), ``min.insync.replicas=2``, and every producer at ``acks=all`` (Faust's default,
    and ours), so each write waits for a second broker. The minimal agent runs on a cluster of
    the same shape, before and after, as in ``bench_throughput``."""
    click.echo(f"pipeline throughput on three brokers (RF 3, acks=all): {len(events)} events")
    stack = DevStack(workdir / "three-brokers", partitions=4, database=False, brokers=3).start()
    try:
        before = _baseline_rates(stack, events, raw=False)[0]
        click.echo(f"  minimal agent (before): {before:,.0f}/s")
        worker, full_rate, _, _ = _full_path(stack, events, "bench-full-rf3")
        worker.stop()
        after = _baseline_rates(stack, events, raw=False)[0]
    finally:
        stack.stop()
    minimal = (before + after) / 2
    report.add("pipeline events/s, 3 brokers, RF 3, acks=all", f"{full_rate:,.0f}/s", f"minimal agent {minimal:,.0f}/s",
               f"{full_rate / minimal:.2f}x", f"the full path as above on a three-node KRaft cluster "
               f"(min.insync.replicas=2), the minimal agent on one of the same shape before {before:,.0f}/s "
               f"and after {after:,.0f}/s")


def bench_throughput(stack: DevStack, report: Report, events: list[tuple[str, dict]]) -> WorkerProcess:
    """Events/s of the full path against the broker limit and a minimal Faust agent.

    Each worker reads the same events from a dev broker holding exactly them: the dev broker's
    CPU per record grows with what it holds (see ``bench_freshness``), so a worker measured on
    the broker the other one had just filled with its changelog would run beside a busier
    broker on this two-core machine. The minimal agent runs before and after the full path and
    the baseline is the mean of both: this machine's speed drifts within minutes, and a
    baseline taken only before would tilt the ratio whichever way the machine moved.
    """
    n = len(events)
    click.echo(f"pipeline throughput: {n} events")
    minimal_before, minimal_rss, raw_rate, cpu_before = _baseline_rates(stack, events, raw=True)
    click.echo(f"  minimal agent (before): {minimal_before:,.0f}/s")
    worker, full_rate, full_cpu, scoring_cpu = _full_path(stack, events, "bench-full")
    minimal_after, _, _, cpu_after = _baseline_rates(stack, events, raw=False)  # the full worker idles meanwhile
    minimal_rate = (minimal_before + minimal_after) / 2
    minimal_cpu = (cpu_before + cpu_after) / 2
    report.add("pipeline events/s (full path, 1 worker)", f"{full_rate:,.0f}/s",
               f"minimal agent {minimal_rate:,.0f}/s", f"{full_rate / minimal_rate:.2f}x",
               f"validate, profile, popularity, ALS fold-in + top-50, table writes; minimal agent before "
               f"{minimal_before:,.0f}/s and after {minimal_after:,.0f}/s; raw consume {raw_rate:,.0f}/s")
    report.add("CPU an event, the worker's process (full path)", f"{full_cpu:,.0f} us",
               f"minimal agent {minimal_cpu:,.0f} us", f"{full_cpu / minimal_cpu:.2f}x",
               f"from the first event counted to the last; the scoring process adds {scoring_cpu:,.0f} us on "
               f"the other core; minimal agent before {cpu_before:,.0f} and after {cpu_after:,.0f} us. "
               f"A worker's rate is its core's speed over this figure")
    # The worker's memory includes its scoring process (RECSYS_SCORING=process).
    worker_rss = peak_rss_mib(worker.proc.pid)
    scoring_pid = (worker.get("/api/health")[1].get("scoring") or {}).get("pid")
    scoring_rss = peak_rss_mib(scoring_pid) if scoring_pid else 0.0
    report.add("worker peak RSS after the stream", f"{worker_rss + scoring_rss:,.0f} MiB",
               f"minimal agent {minimal_rss:,.0f} MiB", f"{(worker_rss + scoring_rss) / minimal_rss:.2f}x",
               f"{len({o['user_id'] for _, o in events})} users, {len({o['product_id'] for _, o in events})} items; "
               f"worker {worker_rss:,.0f} + scoring process {scoring_rss:,.0f} MiB")
    return worker


#: Open-loop serving rows: requests start at this rate whatever the answers do (benchmarks/load.py).
SERVING_RATE = 500.0
#: ... with at most this many in flight.
SERVING_MAX_IN_FLIGHT = 256
#: Closed-loop rows: this many clients, each sending its next request when answered.
SERVING_CLIENTS = 16


def _load(worker: WorkerProcess, path: str, users: list[str], seconds: float, token: str = "",
          rate: Optional[float] = None) -> dict:
    args = [worker.url + path, ",".join(users), str(seconds)]
    args += [str(SERVING_CLIENTS), token or "-"] if rate is None else [str(SERVING_MAX_IN_FLIGHT), token or "-", str(rate)]
    out = subprocess.run([sys.executable, "-m", "benchmarks.load", *args], capture_output=True, text=True,
                         timeout=seconds + 60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _latency_row(report: Report, what: str, route: dict, ping: dict, detail: str) -> None:
    report.add(what, f"{route['p99_ms']:.1f} ms (p50 {route['p50_ms']:.1f})",
               f"/api/ping p99 {ping['p99_ms']:.1f} ms (p50 {ping['p50_ms']:.1f})",
               f"{route['p99_ms'] / ping['p99_ms']:.2f}x",
               f"{detail}; {route['rate']:,.0f} requests/s started on a schedule (open loop), the client's own "
               f"start lag p99 {max(route['lag_p99_ms'], ping['lag_p99_ms']):.1f} ms; errors {route['errors']}")


def bench_serving(stack: DevStack, report: Report, worker: WorkerProcess, users: list[str], seconds: float) -> None:
    """Latency at a fixed rate (open loop), and the most each route sustains (closed loop).

    A closed loop's latency is its clients over the rate it reached (Little's law): it says
    what a request costs, not what a caller waits at a given load, so latency is measured at
    ``SERVING_RATE`` with requests started on a schedule, and the closed loop gives the
    throughput row.
    """
    click.echo(f"serving: {seconds:.0f}s of load per route at {SERVING_RATE:,.0f}/s, then {SERVING_CLIENTS} "
               f"clients as fast as answered, from a separate process")
    ping = _load(worker, "/api/ping", users, seconds, rate=SERVING_RATE)
    recs = _load(worker, "/api/recommendations/{user}?k=10", users, seconds, rate=SERVING_RATE)
    _latency_row(report, "serving GET /api/recommendations p99", recs, ping,
                 "online tracking on (a recsys-served record per answer, folded into the profile)")
    explained = _load(worker, "/api/recommendations/{user}?k=10&explain=true", users, seconds, rate=SERVING_RATE)
    _latency_row(report, "serving with explain=true, p99", explained, ping,
                 f"each item's reasons: the user's interactions' exact shares of its ALS score (one solve) and "
                 f"the latest day's transitions; without explain p99 {recs['p99_ms']:.1f} ms")
    ping_max = _load(worker, "/api/ping", users, seconds)
    recs_max = _load(worker, "/api/recommendations/{user}?k=10", users, seconds)
    report.add("serving throughput, GET /api/recommendations", f"{recs_max['rps']:,.0f} req/s",
               f"/api/ping {ping_max['rps']:,.0f} req/s", f"{recs_max['rps'] / ping_max['rps']:.2f}x",
               f"{SERVING_CLIENTS} clients, each sending when answered (closed loop); p99 {recs_max['p99_ms']:.1f} ms "
               f"against {ping_max['p99_ms']:.1f} ms; the load generator shares the two cores; errors {recs_max['errors']}")


#: Tokens on every scope and a rate limit every request passes through (but none exceeds).
SECURED_ENV = {"RECSYS_READ_TOKENS": "bench-old,bench-token", "RECSYS_INGEST_TOKENS": "bench-token",
               "RECSYS_API_TOKEN": "bench-token", "RECSYS_RATE_LIMIT_RPS": "1000000",
               "RECSYS_RATE_LIMIT_BURST": "1000000", "DATABASE_URL": ""}


def bench_serving_secured(stack: DevStack, report: Report, users: list[str], seconds: float) -> WorkerProcess:
    """The serving row again on a worker with tokens (two read tokens: a rotation) and the rate
    limiter on: what authentication and the token bucket add to a request."""
    click.echo("serving with tokens and rate limiting on: a worker of its own, tables rebuilt from the changelogs")
    worker = stack.add_worker("bench-secured", extra_env=SECURED_ENV, wait=False)
    # It recovers every table from the changelogs first: the full stream's, and a profile write
    # for each answer of the serving row before (tens of thousands of them).
    worker.wait_ready(timeout_s=600)
    ping = _load(worker, "/api/ping", users, seconds, rate=SERVING_RATE)
    recs = _load(worker, "/api/recommendations/{user}?k=10", users, seconds, token="bench-token", rate=SERVING_RATE)
    _latency_row(report, "serving with tokens + rate limit, p99", recs, ping,
                 "online tracking on; a bearer token checked (2 valid read tokens) and a token bucket taken per request")
    return worker


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


#: Freshness probes one event in 25: 20 probes a second at 500 events/s. At one in ten the
#: probes' polls (about 500 HTTP requests a second) took 0.3 cores of the bench process and a
#: share of the worker's, on a two-core machine that also runs the broker: the measurement
#: became most of the load it measured (p99 99 ms to 3.4 s between runs). Fewer probes over a
#: longer run give as many samples.
SAMPLE_EVERY = 25
#: Seconds of the stream before the first sample, not sampled: the worker's first batches and
#: connections, and the freshly started broker's JIT compilers, which took most of a core for
#: the first 20-30 s at this rate (``top -H``: the C2 and C1 compiler threads). Sampled after
#: 1 s, p99 read 1,538 and 1,492 ms; after 30 s, 640, 466 and 266 ms, on the same machine.
FRESHNESS_WARMUP_S = 30.0


def bench_freshness(report: Report, events: list[tuple[str, dict]], workdir: Path, rate: float,
                    seconds: float, broker: str = "kafka") -> None:
    """Produce views at ``rate`` events/s; for sampled events, time until the user's answer changes.

    On a dev stack of its own: the dev broker keeps its log in memory and its CPU per event
    grows with what it holds (measured at a steady 500 records/s: 0.29 cores empty, 0.95 cores
    holding 200k records; docs/benchmarks.md), so after the throughput run it would take most of a
    core of this two-core machine and measure itself. Each sampled event is a new user viewing
    the catalogue's most viewed item, so the full path runs: profile, ALS fold-in, top-k.
    """
    from collections import Counter

    from recsys_faust.client.producers import ProductEventProducer

    click.echo(f"freshness: {rate:.0f} events/s for {seconds:.0f}s on a dev stack of its own")
    stack = DevStack(workdir / "freshness", partitions=4, database=False, broker=broker).start()
    try:
        publish_model(stack, events)
        worker = stack.add_worker("bench-fresh", extra_env={"DATABASE_URL": ""})
        product, _ = Counter(o["product_id"] for _, o in events).most_common(1)[0]
        category = next((o.get("category") for _, o in events if o["product_id"] == product), None) or "unknown"
        latencies: list[float] = []
        missed: list[str] = []
        strategies: Counter[str] = Counter()

        async def produce_and_probe() -> None:
            import aiohttp

            producer = ProductEventProducer(stack.settings, linger_ms=0)
            await producer.start()
            pending: list[asyncio.Task] = []
            async with aiohttp.ClientSession() as session:
                async def probe(user: str, t0: float) -> None:
                    url = f"{worker.url}/api/recommendations/{user}?k=10"
                    body: dict = {}
                    while time.perf_counter() - t0 < 5:
                        async with session.get(url) as resp:
                            body = await resp.json()
                        if body.get("strategy") not in (None, "popular"):  # the user's own list: the event is in
                            latencies.append(time.perf_counter() - t0)
                            strategies[body["strategy"]] += 1
                            return
                        # 5 ms resolution where the target is; polled harder, a lagging worker
                        # would spend itself answering probes instead of catching up.
                        await asyncio.sleep(0.005 if time.perf_counter() - t0 < 0.2 else 0.05)
                    missed.append(f"{user}: strategy {body.get('strategy')!r}")

                warmup, n = int(rate * FRESHNESS_WARMUP_S), int(rate * seconds)
                started = time.perf_counter()
                for i in range(warmup + n):
                    user = f"fresh-{i}"
                    t0 = time.perf_counter()
                    await producer.send_event("view", {"event_id": user, "user_id": user, "product_id": product,
                                                       "timestamp": time.time(), "category": category}, wait=False)
                    if i >= warmup and i % SAMPLE_EVERY == 0:
                        pending.append(asyncio.create_task(probe(user, t0)))
                    ahead = (i + 1) / rate - (time.perf_counter() - started)
                    if ahead > 0:
                        await asyncio.sleep(ahead)
                await asyncio.gather(*pending)
            await producer.stop()

        # The worker's CPU includes its scoring process (RECSYS_SCORING=process).
        scoring_pid = (worker.get("/api/health")[1].get("scoring") or {}).get("pid")
        worker_pids = [worker.proc.pid] + ([scoring_pid] if scoring_pid else [])
        worker_cpu_s = lambda: sum(_cpu_seconds(pid) for pid in worker_pids)  # noqa: E731
        cpu0 = _cpu_seconds(stack.broker.pid), worker_cpu_s(), time.perf_counter()
        asyncio.run(produce_and_probe())
        elapsed = time.perf_counter() - cpu0[2]
        broker_cpu = (_cpu_seconds(stack.broker.pid) - cpu0[0]) / elapsed
        worker_cpu = (worker_cpu_s() - cpu0[1]) / elapsed
    finally:
        stack.stop()
    if missed:
        click.echo(f"  {len(missed)} sampled events not visible within 5 s, e.g. {missed[0]}")
    if not latencies:
        raise click.ClickException(f"freshness: none of {len(missed)} sampled events became visible; "
                                   f"worker log: {worker.log_path}")
    lat = sorted(latencies)
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    report.add("freshness event -> changed answer p99", f"{p(0.99):.0f} ms (p50 {p(0.5):.0f})",
               f"target 100 ms at {rate:.0f} ev/s", f"{p(0.99) / 100:.2f}x of target",
               f"{len(lat)} sampled ({len(missed)} not within 5 s; {dict(strategies)}); "
               f"CPU worker {worker_cpu:.2f}, broker {broker_cpu:.2f} cores; "
               f"batch within {stack.settings.ingest.batch_within * 1000:.0f} ms")


def bench_training(report: Report, data: Optional[Path], quick: bool, workdir: Path) -> None:
    from threadpoolctl import threadpool_limits

    from recsys_faust.ranking.maths.foldin import FoldIn
    from recsys_faust.settings import Settings
    from recsys_faust.training.als import ALSParams, train_als
    from recsys_faust.training.dataset import load_csv

    click.echo("training and fold-in")
    if data is None or not data.exists():
        click.echo("  (no dataset: training rows skipped)")
        return
    dataset = load_csv(data)
    # The production setting (128 factors), in quick runs too: at 64 the fit is so short that
    # loading the CSV alone was a fifth of the time.
    params = ALSParams(factors=128, iterations=15)
    matrix = dataset.matrix()
    from implicit.cpu.als import AlternatingLeastSquares

    from recsys_faust.training.train import load_dataset, train_dataset

    # Each fit writes a model (10 MB at 128 factors): into a directory removed afterwards.
    models = tempfile.TemporaryDirectory(prefix="train-models-", dir=workdir)
    settings = Settings().with_overrides(models_dir=Path(models.name))

    def bare_fit() -> float:
        """The baseline: a bare implicit fit of the same matrix."""
        with threadpool_limits(1, "blas"):
            bare = AlternatingLeastSquares(factors=params.factors, regularization=params.regularization,
                                           alpha=params.alpha, iterations=params.iterations,
                                           random_state=params.seed)
            t0 = time.perf_counter()
            bare.fit(matrix, show_progress=False)
            return time.perf_counter() - t0

    def train() -> tuple[float, float]:
        t0 = time.perf_counter()
        result = train_dataset(load_dataset(data, settings), settings, params, source=str(data), evaluate_first=False)
        return time.perf_counter() - t0, result.fit_seconds

    # Alternated, best of each: one fit's time moved by 1.5x between consecutive runs here
    # (ratios of single runs read 0.85x to 1.47x for the same code).
    rounds = 3 if quick else 5
    bare_times, train_times = [], []
    for _ in range(rounds):
        bare_times.append(bare_fit())
        train_times.append(train())
    models.cleanup()
    bare_s = min(bare_times)
    train_s, fit_s = min(train_times)
    report.add("train (load CSV, matrix, fit, save)", f"{train_s:.2f} s (fit {fit_s:.2f} s)",
               f"bare implicit fit {bare_s:.2f} s", f"{train_s / bare_s:.2f}x (fit {fit_s / bare_s:.2f}x)",
               f"{len(dataset)} interactions, {params.factors} factors, same matrix, best of {rounds} alternated")
    # fold-in + top-k per event, 64 factors, the full catalogue, one core
    _, item_f, _ = train_als(matrix, ALSParams(factors=64, iterations=5))
    fold = FoldIn(item_f, regularization=1.0, alpha=10.0)
    rng = np.random.default_rng(0)
    histories = [rng.choice(dataset.n_items, size=rng.integers(3, 30), replace=False) for _ in range(2000)]
    from recsys_faust.ranking.maths.scores import BatchQuery, score_batch

    # the production scoring path (ranking/maths/scores.py), one event at a time: a batch of one
    queries = [BatchQuery(h.astype(np.int64), np.ones(len(h)), np.array([0, len(h)]), h.astype(np.int64),
                          np.array([0, len(h)]), 50) for h in histories]
    with threadpool_limits(1, "blas"):
        t0 = time.perf_counter()
        for q in queries:
            score_batch(fold, q)
        per = (time.perf_counter() - t0) / len(histories)
        t0 = time.perf_counter()
        for h in histories:
            item_f @ np.ones(64, dtype=np.float32)
        dot = (time.perf_counter() - t0) / len(histories)
    report.add("fold-in + top-50 per event", f"{per * 1e6:.0f} us", f"scoring dot only {dot * 1e6:.0f} us",
               f"{per / dot:.1f}x", f"64 factors, {dataset.n_items} items, 1 BLAS thread; target < 1 ms")
    from benchmarks.against_implicit import compare

    click.echo("our maths against implicit's own routines (same model, same users, one thread)")
    for what, ours, theirs, note in compare(matrix, users=300 if quick else 1000):
        report.add(f"{what}: ours", f"{ours * 1e6:.1f} us", f"implicit {theirs * 1e6:.1f} us", f"{ours / theirs:.2f}x", note)
    bench_ranking(report, dataset, fold)


def bench_ranking(report: Report, dataset, fold) -> None:
    """The whole ranking step per event (fold-in + transitions + blend + top-50) against fold-in +
    top-50 alone, and the transitions index's memory against the item factors'.

    The index is built as the workers build it: every interaction's pairs folded into
    per-partition entries (4 partitions), bounded, then merged; each user's query is the latest
    day of their real history, with the real counts as candidates.
    """
    import tracemalloc

    from threadpoolctl import threadpool_limits

    from recsys_faust.kafka.partitioning import user_partition
    from recsys_faust.popularity.trending import PopularityIndex
    from recsys_faust.ranking.model.active import ModelHolder
    from recsys_faust.ranking.model.artifact import ModelArtifact
    from recsys_faust.ranking.policy.ranker import Ranker
    from recsys_faust.transitions.index import (
        MAX_SUCCESSORS, TransitionIndex, apply_successors, entry_key, new_entry, successor_updates,
    )
    from recsys_faust.transitions.counts import counts_from_histories, user_histories
    from recsys_faust.settings import Settings

    ids, users = dataset.item_ids, dataset.user_ids
    tracemalloc.start()
    entries: dict[str, dict] = {}
    recent_of: dict[int, list] = {}
    for n, (u, i, t) in enumerate(zip(dataset.users.tolist(), dataset.items.tolist(), dataset.ts.tolist())):
        rows = recent_of.setdefault(u, [])
        part = user_partition(users[u], 4)
        for src, dsts in successor_updates(rows, ids[i], t).items():
            key = entry_key(src, part)
            entry = entries.get(key) or entries.setdefault(key, new_entry(src))
            apply_successors(entry, dsts, ("t", part, n), MAX_SUCCESSORS)
        rows.append([ids[i], "purchase", t, None, None])
        del rows[:-50]
    index = TransitionIndex()
    index.put_many(entries.items())
    del recent_of
    index_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    shipped = counts_from_histories(dataset.users, dataset.items, dataset.ts, dataset.n_items)
    holder = ModelHolder()
    holder.offer(ModelArtifact("bench", ids, fold.Y, item_category=[None] * len(ids), transitions=shipped), 1.0)
    model = holder.active
    popularity = PopularityIndex(window_s=10**9, bucket_s=10**9)
    settings = Settings()
    blend = Ranker(settings, popularity, index, holder)
    plain = Ranker(settings.with_overrides(blend_transitions_weight=0.0), popularity, index, holder)
    rng = np.random.default_rng(0)
    histories = list(user_histories(dataset.users, dataset.items, dataset.ts))
    picks = [histories[j] for j in rng.choice(len(histories), size=min(2000, len(histories)), replace=False)]
    profiles = [{"recent": [[ids[i], "purchase", t, None, None] for i, t in zip(items[-50:], times[-50:])]}
                for _u, items, times in picks]
    with threadpool_limits(1, "blas"):
        timings: dict[str, list[float]] = {"plain": [], "blend": []}
        for _ in range(2):
            for name, ranker in (("plain", plain), ("blend", blend)):
                t0 = time.perf_counter()
                for p in profiles:  # one event at a time: pack, fold-in, blend, top-50
                    ranker.score(model, [p], n=50)
                timings[name].append((time.perf_counter() - t0) / len(profiles))
        for name, ranker in (("plain", plain), ("blend", blend)):  # micro-batches of 200 users
            t0 = time.perf_counter()
            for lo in range(0, len(profiles), 200):
                ranker.score(model, profiles[lo:lo + 200], n=50)
            timings[name + " batched"] = [(time.perf_counter() - t0) / len(profiles)]
    blend_us, plain_us = min(timings["blend"]) * 1e6, min(timings["plain"]) * 1e6
    batched = timings["blend batched"][0] * 1e6, timings["plain batched"][0] * 1e6
    packed = [blend.pack(model, [p])[1].trans_items for p in profiles]
    candidates = np.mean([0 if t is None else len(t) for t in packed])
    report.add("ranking per event (fold-in + transitions + blend + top-50)", f"{blend_us:.0f} us",
               f"fold-in + top-50 {plain_us:.0f} us", f"{blend_us / plain_us:.2f}x",
               f"{len(profiles)} real users' last 50 items, one at a time (pack + score; in micro-batches of 200: "
               f"{batched[0]:.0f} vs {batched[1]:.0f} us a user), {candidates:.0f} streamed candidates each on average "
               f"plus the shipped counts; {dataset.n_items} items, 64 factors, 1 BLAS thread")
    factor_bytes = fold.Y.nbytes
    report.add("transitions index memory", f"{index_bytes / 2**20:.1f} MiB", f"item factors {factor_bytes / 2**20:.1f} MiB",
               f"{index_bytes / factor_bytes:.2f}x",
               f"{len(index)} entries, {index.pairs:,} successor counts (at most {MAX_SUCCESSORS} per item and "
               f"partition) from {len(dataset):,} interactions, 4 partitions; Python dicts as a worker holds them")


def bench_dedup(report: Report, events: list[tuple[str, dict]], window_s: float = 7 * 86_400) -> None:
    """The de-duplication state (profiles/dedup.py) over the stream, as the workers hold it:
    each applied event's key under its partition's epoch (4 partitions), the epochs before the
    last two deleted as each partition's clock enters a new one, against what the profiles used
    to carry (their users' last 256 event ids, rewritten into the changelog with every event of
    the user).
    """
    from collections import deque

    from recsys_faust.events.model import Source
    from recsys_faust.kafka import codecs
    from recsys_faust.kafka.partitioning import user_partition
    from recsys_faust.profiles import dedup

    held: dict[int, dict[int, int]] = {}  # partition -> epoch -> bytes
    counts: dict[int, dict[int, int]] = {}  # partition -> epoch -> keys
    clock: dict[int, int] = {}
    peak_bytes = peak_entries = 0
    last_ids: dict[str, deque] = {}
    per_event: list[int] = []
    for offset, (topic_kind, obj) in enumerate(events):
        user, eid, ts = obj["user_id"], obj["event_id"], float(obj["timestamp"])
        part = user_partition(user, 4)
        source = Source(f"amazon-{topic_kind}s", part, offset)
        epoch = clock[part] = max(clock.get(part, 0), dedup.epoch_of(ts, window_s))
        size = len(dedup.epoch_key(epoch, user, eid).encode()) + len(codecs.dumps_json(dedup.entry(ts, source)))
        per_event.append(size)
        by_epoch, n_by_epoch = held.setdefault(part, {}), counts.setdefault(part, {})
        by_epoch[epoch] = by_epoch.get(epoch, 0) + size
        n_by_epoch[epoch] = n_by_epoch.get(epoch, 0) + 1
        for old in [e for e in by_epoch if e < epoch - 1]:
            del by_epoch[old], n_by_epoch[old]
        total = sum(sum(b.values()) for b in held.values())
        if total > peak_bytes:
            peak_bytes, peak_entries = total, sum(sum(n.values()) for n in counts.values())
        last_ids.setdefault(user, deque(maxlen=256)).append(eid)
    users = len(last_ids)
    old_bytes = sum(len(codecs.dumps_json(list(ids))) for ids in last_ids.values())
    span_days = (max(float(o["timestamp"]) for _, o in events) - min(float(o["timestamp"]) for _, o in events)) / 86_400
    report.add("de-dup state (event_ids table)", f"{np.mean(per_event):.0f} B/event, peak {peak_bytes / users:.1f} B/user",
               f"profiles' last-256 ids {old_bytes / users:.0f} B/user", f"{peak_bytes / old_bytes:.2f}x",
               f"one key per event, held for one to two windows of {window_s / 86_400:.0f} days of event time: peak "
               f"{peak_entries:,} events, {peak_bytes / 2**10:,.0f} KiB over {users:,} users ({len(events):,} events "
               f"spanning {span_days:,.0f} days); a live shop holds up to B/event x its events in two windows; the old "
               f"ids were in every profile changelog write")


def bench_sink(stack: DevStack, report: Report, n: int) -> None:
    from recsys_faust.sink.rows import event_row
    from recsys_faust.sink.writer import PostgresSink, insert_row_by_row
    from recsys_faust.events.model import Event

    click.echo(f"sink: {n} rows")
    now = time.time()
    rows = [event_row(Event("purchase", f"bench-{i}", f"u{i % 500}", now, product_id=f"p{i % 900}", category="c",
                            payload={"i": i}), ("amazon-purchases", 0, i))[1] for i in range(n)]
    base_rows = [(f"base-{r[0]}",) + r[1:] for r in rows[: max(500, n // 10)]]

    async def run() -> tuple[float, float]:
        sink = PostgresSink(stack.postgres.url)
        await sink.open()
        await sink.ensure_schema()
        t0 = time.perf_counter()
        for i in range(0, n, 1000):
            await sink.write({"interactions": rows[i:i + 1000]})
        batched = n / (time.perf_counter() - t0)
        await sink.close()
        single = len(base_rows) / await insert_row_by_row(stack.postgres.url, base_rows)
        return batched, single

    batched, single = asyncio.run(run())
    report.add("sink rows/s (COPY + upsert, 1000/txn)", f"{batched:,.0f}/s", f"row-by-row INSERT {single:,.0f}/s",
               f"{batched / single:.1f}x", "same process, same database, interactions table")


def run_suite(*, quick: bool, data: Optional[Path], workdir: Path, broker: str = "kafka") -> Report:
    from recsys_faust.training.dataset import amazon_csv
    from benchmarks.validation import bench_validation

    data = data if data is not None else amazon_csv()
    n_events = 20_000 if quick else 121_892
    from recsys_faust.devstack.kafka_broker import KAFKA_VERSION

    report = Report(broker=f"Apache Kafka {KAFKA_VERSION} (one node, KRaft)" if broker == "kafka"
                    else "the Tansu dev broker")
    stack = DevStack(workdir, partitions=4, broker=broker).start()
    try:
        events = _events(data, n_events)
        worker = bench_throughput(stack, report, events)
        users = sorted({o["user_id"] for _, o in events})[:2000]
        bench_serving(stack, report, worker, users, 8 if quick else 20)
        worker.stop()  # idle, it would still poll the broker while freshness runs beside it
        bench_serving_secured(stack, report, users, 8 if quick else 20).stop()
        bench_freshness(report, events, workdir, 500, 10 if quick else 20, broker=broker)
        if broker == "kafka":
            bench_throughput_replicated(report, events, workdir)
        bench_sink(stack, report, 20_000 if quick else 100_000)
        bench_training(report, data, quick, workdir)
        bench_validation(report, events)
        bench_dedup(report, events)
    finally:
        stack.stop()
    return report
