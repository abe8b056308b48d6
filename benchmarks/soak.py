"""``recsys-faust soak``: a stack under a steady event rate and HTTP load for N minutes.

What a long run shows that the tests cannot: memory that creeps (caches without bounds, state
kept per event), lag that builds up slowly, serving latency that degrades as state grows. The
soak starts its own dev stack (broker, database, one worker with a published model), produces
live events at ``rate`` per second for users of a synthetic shop, requests recommendations from
a separate thread, and every ``sample_s`` prints the worker's, its scoring process's and the
broker's RSS, the consumer lag, the interval's serving p99 and the errors so far; at the end it
writes a plot. It fails (exit 1) on any HTTP error, a dead worker, dead letters, events not all
applied, or lag not drained after the load stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

#: Items and categories of the synthetic shop the soak's users browse.
ITEMS, CATEGORIES = 2_000, 20


@dataclass
class Sample:
    t_s: float
    worker_rss_mib: float
    scoring_rss_mib: float
    broker_rss_mib: float
    lag_records: float
    p99_ms: float
    requests: int
    errors: int
    applied: float
    worker_cpu: float = 0.0    # share of one core over the interval
    scoring_cpu: float = 0.0
    broker_cpu: float = 0.0


@dataclass
class SoakResult:
    minutes: float
    rate: float
    broker: str = "kafka"  # the broker it ran on: kafka (Apache Kafka) or tansu
    warm: int = 0       # events of the warm-up (in produced and applied too)
    produced: int = 0
    applied: float = 0
    dead_letters: float = 0
    errors: int = 0
    worker_alive: bool = True
    drained: bool = False
    samples: list[Sample] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def rss_mib(pid: Optional[int]) -> float:
    if not pid:
        return 0.0
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmRSS:\s+(\d+) kB", text)
    return int(m.group(1)) / 1024 if m else 0.0


def cpu_seconds(pid: Optional[int]) -> float:
    """User + system CPU time a process has used (``/proc/PID/stat``), 0 when it is gone."""
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuShare:
    """A process's CPU over the interval since the last call, as a share of one core."""

    def __init__(self) -> None:
        self._last: dict[int, tuple[float, float]] = {}

    def __call__(self, pid: Optional[int]) -> float:
        if not pid:
            return 0.0
        now, used = time.monotonic(), cpu_seconds(pid)
        before = self._last.get(pid)
        self._last[pid] = (now, used)
        return 0.0 if before is None or now <= before[0] else (used - before[1]) / (now - before[0])


def live_events(users: int, stop: threading.Event, seed: int = 3) -> Iterator[tuple[str, dict]]:
    """Views and purchases stamped now, for ``users`` users with a taste for a few categories."""
    rng = random.Random(seed)
    taste = [rng.sample(range(CATEGORIES), 3) for _ in range(users)]
    while not stop.is_set():
        u = rng.randrange(users)
        cat = rng.choice(taste[u])
        item = cat + CATEGORIES * min(ITEMS // CATEGORIES - 1, int(rng.paretovariate(1.2)) - 1)
        kind = "purchase" if rng.random() < 0.2 else "view"
        yield kind, {"event_id": uuid.uuid4().hex, "user_id": f"s{u:05d}", "product_id": f"i{item:05d}",
                     "category": f"c{cat:02d}", "timestamp": time.time()}


def _warm_up(stack: Any, worker: Any, n: int, users: int, echo: Callable[[str], None]) -> int:
    """Produce ``n`` events at full speed and wait until the worker applied them all."""
    if n <= 0:
        return 0
    from recsys_faust.client.replay import replay_events

    started = time.monotonic()
    events = [e for _, e in zip(range(n), live_events(users, threading.Event(), seed=2))]
    sent = asyncio.run(replay_events(stack.settings, events))
    deadline = time.monotonic() + max(120.0, n / 200)
    while time.monotonic() < deadline:
        if _metric(worker.get_text("/metrics"), "recsys_events_total", 'outcome="applied"') >= sent:
            echo(f"warm-up: {sent} events applied in {time.monotonic() - started:.0f} s (state full before the clock starts)")
            return sent
        time.sleep(1.0)
    raise RuntimeError(f"warm-up: {sent} events not applied within {deadline - started:.0f} s")


def _metric(text: str, name: str, label: str = "") -> float:
    total = 0.0
    for line in text.splitlines():
        if (line.startswith(name + "{") or line.startswith(name + " ")) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


class _HttpLoad(threading.Thread):
    """Recommendation requests at about ``per_s`` a second; latencies kept per interval."""

    def __init__(self, base: str, users: int, per_s: float, stop: threading.Event) -> None:
        super().__init__(daemon=True, name="soak-http")
        self.base, self.users, self.per_s, self.stop_ = base, users, per_s, stop
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.requests = self.errors = 0
        self.last_error = ""

    def run(self) -> None:
        rng = random.Random(5)
        while not self.stop_.is_set():
            url = f"{self.base}/api/recommendations/s{rng.randrange(self.users):05d}?k=10"
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
                    ok = resp.status == 200
            except urllib.error.HTTPError as err:
                ok = err.code == 404  # a user with no event yet: an answer, not an error
                if not ok:
                    self.last_error = f"HTTP {err.code} on {url}"
            except OSError as err:
                ok, self.last_error = False, f"{err!r} on {url}"
            with self.lock:
                self.latencies.append(time.perf_counter() - t0)
                self.requests += 1
                self.errors += 0 if ok else 1
            time.sleep(max(0.0, 1.0 / self.per_s - (time.perf_counter() - t0)))

    def take(self) -> tuple[list[float], int, int]:
        with self.lock:
            out, self.latencies = self.latencies, []
            return out, self.requests, self.errors


def run_soak(workdir: Path, *, minutes: float, rate: float, users: int = 2_000, sample_s: float = 5.0,
             http_per_s: float = 20.0, warm_per_user: int = 50, durable_broker: bool = False,
             broker: str = "kafka", echo: Callable[[str], None] = print) -> SoakResult:
    """``warm_per_user``: events per user produced as fast as possible and applied before the clock
    starts, so that the measured run begins from full state (every profile at its
    ``RECSYS_PROFILE_RECENT_ITEMS`` cap with the default) and growth it shows is not state filling up.
    ``durable_broker``: the dev broker keeps its log on a local S3 server instead of in its memory."""
    from benchmarks.suite import publish_model
    from recsys_faust.client.replay import replay_events
    from recsys_faust.devstack.stack import DevStack

    result = SoakResult(minutes=minutes, rate=rate, broker=broker)
    stack = DevStack(workdir, partitions=4, database=True, durable_broker=durable_broker, broker=broker).start()
    stop = threading.Event()
    try:
        stack.apply_topics()
        warm = [e for _, e in zip(range(5_000), live_events(users, threading.Event(), seed=1))]
        publish_model(stack, warm)  # so every event runs fold-in, transitions and the blend
        worker = stack.add_worker("soak")
        echo(f"soak: {minutes:g} min at {rate:g} events/s, {http_per_s:g} requests/s; worker {worker.url} "
             f"(metrics {worker.url}/metrics), workdir {workdir}")
        result.warm = _warm_up(stack, worker, users * warm_per_user, users, echo)
        produced: dict[str, int] = {}

        def produce() -> None:
            produced["n"] = asyncio.run(replay_events(stack.settings, live_events(users, stop), rate=rate))

        producer = threading.Thread(target=produce, daemon=True, name="soak-producer")
        load = _HttpLoad(worker.url, users, http_per_s, stop)
        producer.start()
        load.start()
        started = time.monotonic()
        broker_pid = stack.broker.pid if stack.broker is not None else None
        s3_pid = stack.s3.proc.pid if stack.s3 is not None and stack.s3.proc else None
        echo(f"{'t s':>6} {'worker':>8} {'scoring':>8} {'broker':>8} {'lag':>7} {'p99 ms':>7} {'reqs':>6} "
             f"{'errors':>6} {'applied':>8}  CPU worker/scoring/broker")
        cpu = CpuShare()
        while True:
            time.sleep(sample_s)
            elapsed = time.monotonic() - started
            health = worker.get("/api/health")[1] if worker.alive() else {}
            metrics = worker.get_text("/metrics") if worker.alive() else ""
            lat, requests, errors = load.take()
            p99 = 1000 * sorted(lat)[int(0.99 * (len(lat) - 1))] if lat else float("nan")
            worker_pid, scoring_pid = worker.proc.pid if worker.proc else None, (health.get("scoring") or {}).get("pid")
            # The broker's columns include its S3 server when its log is there (--durable-broker).
            s = Sample(round(elapsed, 1), rss_mib(worker_pid), rss_mib(scoring_pid),
                       rss_mib(broker_pid) + rss_mib(s3_pid),
                       _metric(metrics, "recsys_consumer_lag_records"), p99, requests, errors,
                       _metric(metrics, "recsys_events_total", 'outcome="applied"'),
                       round(cpu(worker_pid), 3), round(cpu(scoring_pid), 3),
                       round(cpu(broker_pid) + cpu(s3_pid), 3))
            result.samples.append(s)
            echo(f"{s.t_s:6.0f} {s.worker_rss_mib:7.0f}M {s.scoring_rss_mib:7.0f}M {s.broker_rss_mib:7.0f}M "
                 f"{s.lag_records:7.0f} {s.p99_ms:7.1f} {s.requests:6d} {s.errors:6d} {s.applied:8.0f}"
                 f"  {s.worker_cpu:.2f}/{s.scoring_cpu:.2f}/{s.broker_cpu:.2f}")
            if not worker.alive():
                result.worker_alive = False
                break
            if elapsed >= minutes * 60:
                break
        stop.set()
        producer.join(60)
        load.join(10)
        result.produced = result.warm + produced.get("n", 0)
        result.errors = load.errors
        deadline = time.monotonic() + 60
        while worker.alive() and time.monotonic() < deadline:
            metrics = worker.get_text("/metrics")
            result.applied = _metric(metrics, "recsys_events_total", 'outcome="applied"')
            result.dead_letters = _metric(metrics, "recsys_dead_letters_total")
            if result.applied >= result.produced:
                result.drained = True
                break
            time.sleep(0.5)
        result.worker_alive = worker.alive()
    finally:
        stop.set()
        stack.stop()
    if load.errors:
        result.problems.append(f"{load.errors} HTTP errors (last: {load.last_error})")
    if not result.worker_alive:
        result.problems.append("the worker exited")
    if result.dead_letters:
        result.problems.append(f"{result.dead_letters:.0f} dead letters")
    if not result.drained:
        result.problems.append(f"{result.applied:.0f} of {result.produced} events applied 60 s after the load stopped")
    return result


def plot(result: SoakResult, path: Path) -> None:
    """RSS, lag, serving p99 and CPU per process over time, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t_s / 60 for s in result.samples]
    broker = "broker (Apache Kafka)" if result.broker == "kafka" else "broker (Tansu)"
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    axes[0].plot(t, [s.worker_rss_mib for s in result.samples], label="worker")
    axes[0].plot(t, [s.scoring_rss_mib for s in result.samples], label="scoring process")
    axes[0].plot(t, [s.broker_rss_mib for s in result.samples], label=broker)
    axes[0].set_ylabel("RSS MiB")
    axes[0].legend(loc="upper left", fontsize=8)
    axes[1].plot(t, [s.lag_records for s in result.samples], color="tab:red")
    axes[1].set_ylabel("consumer lag (records)")
    axes[2].plot(t, [s.p99_ms for s in result.samples], color="tab:green")
    axes[2].set_ylabel("serving p99 ms")
    axes[3].plot(t, [s.worker_cpu for s in result.samples], label="worker")
    axes[3].plot(t, [s.scoring_cpu for s in result.samples], label="scoring process")
    axes[3].plot(t, [s.broker_cpu for s in result.samples], label=broker)
    axes[3].set_ylabel("CPU (cores)")
    axes[3].legend(loc="upper left", fontsize=8)
    axes[3].set_xlabel("minutes")
    fig.suptitle(f"recsys-faust soak on {broker.split('(')[1].rstrip(')')}: {result.rate:g} events/s for "
                 f"{result.minutes:g} min, "
                 f"{result.errors} errors, {result.produced:,} events")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def summary(result: SoakResult) -> dict[str, Any]:
    out = asdict(result)
    out["ok"] = result.ok
    out.pop("samples")
    rss = [s.worker_rss_mib + s.scoring_rss_mib for s in result.samples]
    if len(rss) >= 4:
        half = len(rss) // 2
        out["rss_mib_first_half_max"] = round(max(rss[:half]), 1)
        out["rss_mib_second_half_max"] = round(max(rss[half:]), 1)
    p99 = [s.p99_ms for s in result.samples if s.p99_ms == s.p99_ms]
    out["p99_ms_max"] = round(max(p99), 1) if p99 else None
    out["lag_max"] = max((s.lag_records for s in result.samples), default=0)
    return out


def dumps(result: SoakResult) -> str:
    return json.dumps(summary(result))
