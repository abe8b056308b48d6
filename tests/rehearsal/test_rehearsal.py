"""The production shell rehearsed for real, from docker/'s own files (devstack/rehearsal.py):
three Apache Kafka brokers, PostgreSQL, init, two workers as the worker role, the retrainer,
HAProxy and Prometheus with the shipped alert rules, their times divided by ``FACTOR``.

Every alert rule is driven to fire by causing its condition, read back from Prometheus's
``/api/v1/alerts``, and driven to resolve by removing the cause. The seconds each took are
written to ``REPORT`` (docs/operations.md carries the table of the last run).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import aiokafka
import psycopg
import pytest

from recsys_faust.client.datasets import ShopSpec, synthetic_events
from recsys_faust.devstack.rehearsal import Rehearsal
from tests.integration.helpers import TOPIC_OF, http, produce, produce_events, wait_until

pytestmark = pytest.mark.rehearsal

FACTOR = 20
FREEZE_S = 35.0
#: Where the seconds to fire and resolve go (the docs' table is made from it).
REPORT = Path(os.environ.get("RECSYS_REHEARSAL_REPORT", "/tmp/recsys-rehearsal.json"))
TIMES: dict[str, dict[str, Any]] = {}
ALERTS = ("RecsysWorkerDown", "RecsysWorkerNotReady", "RecsysConsumerLagGrowing", "RecsysConsumerTimeLagHigh",
          "RecsysFreshnessP99High", "RecsysDeadLetters", "RecsysSinkRetrying", "RecsysDriftAlert")


@pytest.fixture(scope="module")
def reh(tmp_path_factory):
    started = time.monotonic()
    r = Rehearsal(tmp_path_factory.mktemp("rehearsal") / "stack", factor=FACTOR, say=lambda line: None).start()
    TIMES["_start_s"] = round(time.monotonic() - started, 1)
    yield r
    REPORT.write_text(json.dumps(TIMES, indent=1))
    r.stop()


# --- load: a steady event stream and HTTP clients through HAProxy ------------------------------


class Stream(threading.Thread):
    """Views at ``rate`` per second until stopped; ``late_s`` sets each record's Kafka timestamp
    that far in the past (a producer that holds its records, as freshness sees it)."""

    def __init__(self, bootstrap: str, rate: float, *, late_s: float = 0.0, category: str = "cat0",
                 users: int = 200) -> None:
        super().__init__(daemon=True)
        self.bootstrap, self.rate, self.late_s, self.category, self.users = bootstrap, rate, late_s, category, users
        self.ids: list[str] = []
        self._halt = threading.Event()
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:  # noqa: BLE001 - read by stop()
            self.error = exc

    async def _run(self) -> None:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        await producer.start()
        # Sends are not awaited one by one: at acks=all on three brokers sharing two cores a
        # round trip took up to 25 ms, and a stream that waited for each ack ran at 40 views/s
        # where 80 were asked (too few for a drift window). Every delivery is checked instead.
        deliveries: list[asyncio.Future] = []
        try:
            tag = uuid.uuid4().hex[:6]
            started, n = time.monotonic(), 0
            while not self._halt.is_set():
                now = time.time()
                event = {"event_id": f"{tag}-{n}", "user_id": f"s{tag}-u{n % self.users}",
                         "product_id": f"p{random.randrange(300)}", "category": self.category, "timestamp": now}
                deliveries.append(await producer.send(TOPIC_OF["view"], json.dumps(event).encode(),
                                                      key=event["user_id"].encode(),
                                                      timestamp_ms=int((now - self.late_s) * 1000)))
                self.ids.append(event["event_id"])
                n += 1
                if len(deliveries) >= 200:
                    for fut in [f for f in deliveries if f.done()]:
                        fut.result()   # a record the brokers refused fails the stream
                    deliveries = [f for f in deliveries if not f.done()]
                ahead = started + n / self.rate - time.monotonic()
                if ahead > 0:
                    await asyncio.sleep(ahead)   # pacing the load, not waiting for an outcome
            await asyncio.gather(*deliveries)   # every record the stream sent is acknowledged
        finally:
            await producer.stop()

    def stop(self) -> list[str]:
        self._halt.set()
        self.join(30)
        assert self.error is None, self.error
        return self.ids

    def __enter__(self) -> "Stream":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self.join(30)


class Clients:
    """GET /api/recommendations through HAProxy from ``threads`` clients at ``rate`` per second
    in all, every answer counted (several clients: one waiting on a frozen worker does not stop
    the others asking)."""

    def __init__(self, reh: Rehearsal, users: list[str], rate: float = 15.0, threads: int = 4) -> None:
        self.reh, self.users, self.period = reh, users, threads / rate
        self.statuses: dict[Any, int] = {}
        self.degraded = 0
        self.slowest_s = 0.0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.reh.read_token}"}
        while not self._halt.is_set():
            t0 = time.monotonic()
            degraded = False
            try:
                status, body = http("GET", f"{self.reh.lb_url}/api/recommendations/{random.choice(self.users)}",
                                    headers=headers, timeout=60)
                degraded = status == 200 and isinstance(body, dict) and bool(body.get("degraded"))
            except OSError as exc:
                status = type(exc).__name__
            with self._lock:
                self.slowest_s = max(self.slowest_s, time.monotonic() - t0)
                self.statuses[status] = self.statuses.get(status, 0) + 1
                self.degraded += degraded
            ahead = t0 + self.period - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)   # pacing under the per-token rate limit (no catching up after a slow answer)

    def stop(self) -> dict[Any, int]:
        self._halt.set()
        for thread in self._threads:
            thread.join(90)
        return self.statuses


# --- helpers -------------------------------------------------------------------------------------


def quiet(reh: Rehearsal, *names: str) -> None:
    """Wait until none of ``names`` fires or is pending, so that what fires next was caused next
    (an earlier test's stream may have raised drift, say)."""
    for name in names:
        wait_until(lambda: reh.alert_state(name) is None, 180, 0.25, f"{name} quiet before its cause")


def fires_and_resolves(reh: Rehearsal, name: str, cause: str, *, fire_s: float, resolve_s: float,
                       caused_at: float, removed: Any, key: Optional[str] = None) -> None:
    """Wait for ``name`` to fire (seconds from ``caused_at``), call ``removed()`` to take the cause
    away, wait for it to resolve; both times go to the report."""
    wait_until(lambda: reh.alert_state(name) == "firing", fire_s, 0.25, f"{name} firing ({cause})")
    fired = time.monotonic() - caused_at
    t0 = time.monotonic()
    removed()
    wait_until(lambda: reh.alert_state(name) is None, resolve_s, 0.25, f"{name} resolved")
    TIMES[key or name] = {"cause": cause, "fire_s": round(fired, 1), "resolve_s": round(time.monotonic() - t0, 1)}


def check_window_s() -> float:
    """fall x (inter + timeout check) of the shipped HAProxy backend: how long failing checks take."""
    text = (Path(__file__).resolve().parents[2] / "docker/haproxy/haproxy.cfg").read_text()
    inter = float(re.search(r"default-server .*\binter (\d+)s", text).group(1))
    fall = int(re.search(r"default-server .*\bfall (\d+)", text).group(1))
    check = float(re.search(r"timeout check (\d+)s", text).group(1))
    return fall * (inter + check)


def whole_pool(reh: Rehearsal, timeout_s: float, what: str) -> None:
    """Wait until every worker is in HAProxy's pool; when that times out, the failure says why:
    each worker's own health document, HAProxy's last check of it, and the end of its log."""
    try:
        wait_until(lambda: len(reh.pool()) == len(reh.workers), timeout_s, what=what)
    except AssertionError as exc:
        lines = [str(exc)]
        for row in reh.servers():
            lines.append(f"haproxy {row['svname']}: {row['status']} check={row.get('check_status')}"
                         f" {row.get('check_code')} {row.get('check_duration')} ms, last_chk={row.get('last_chk')!r}")
        for worker in reh.workers:
            try:
                status, body = http("GET", f"{worker.url}/api/health", timeout=5)
                lines.append(f"{worker.name} /api/health {status}: {json.dumps(body)[:1500]}")
            except Exception as err:  # noqa: BLE001 - a diagnosis, whatever it finds
                lines.append(f"{worker.name} /api/health failed: {type(err).__name__}: {err}")
            tail = worker.log_path.read_text(errors="replace").splitlines()[-40:]
            lines.append(f"--- the end of {worker.name}'s log\n" + "\n".join(tail))
        raise AssertionError("\n".join(lines)) from None


def server_answers(reh: Rehearsal) -> dict[str, int]:
    """2xx answers per worker, from HAProxy's stats."""
    return {r["svname"]: int(r["hrsp_2xx"] or 0) for r in reh.servers()}


def owner_db(reh: Rehearsal) -> str:
    return reh._env("init")["DATABASE_URL"]


def stored(reh: Rehearsal, ids: list[str]) -> int:
    with psycopg.connect(owner_db(reh)) as conn:
        return conn.execute("SELECT (SELECT count(*) FROM interactions WHERE event_id = ANY(%s))"
                            " + (SELECT count(*) FROM user_events WHERE event_id = ANY(%s))", (ids, ids)).fetchone()[0]


# --- the rehearsal -------------------------------------------------------------------------------

SHOP = synthetic_events(ShopSpec(users=150, items=200, categories=4, events_per_user=8, seed=11))
USERS = sorted({o["user_id"] for _, o in SHOP})


def test_traffic_through_haproxy_is_answered_by_every_worker(reh):
    produce_events(reh.kafka.bootstrap, SHOP)
    wait_until(lambda: stored(reh, [o["event_id"] for _, o in SHOP]) == len(SHOP), 120, what="the shop stored")
    headers = {"Authorization": f"Bearer {reh.read_token}"}
    for user in USERS[:40]:
        status, body = http("GET", f"{reh.lb_url}/api/recommendations/{user}", headers=headers)
        assert status == 200 and body["items"] and "degraded" not in body, body
    answers = server_answers(reh)
    assert sorted(answers) == ["worker-1", "worker-2"] and all(n > 0 for n in answers.values()), answers
    # The internal routes are not reachable through the load balancer.
    assert http("GET", f"{reh.lb_url}/metrics")[0] == 403
    assert http("GET", f"{reh.lb_url}/api/health", headers=headers)[0] == 403
    assert http("GET", f"{reh.lb_url}/api/health/ready")[0] == 200


def test_prometheus_scrapes_every_worker_and_every_dashboard_panel_returns_data(reh):
    up = {r["metric"]["instance"]: r["value"][1] for r in reh.query('up{job="recsys-worker"}')}
    assert sorted(up) == sorted(f"127.0.0.1:{w.port}" for w in reh.workers) and set(up.values()) == {"1"}
    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docker/grafana/dashboards/recsys-faust.json")
                           .read_text())
    targets = [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p["targets"]]
    assert len(targets) >= 12
    empty: dict[str, str] = {}
    with Stream(reh.kafka.bootstrap, 40) as stream:
        clients = Clients(reh, USERS)
        clients.start()
        try:
            for title, expr in targets:
                try:
                    wait_until(lambda: reh.query(expr), 60, 0.5, f"data for panel {title!r}: {expr}")
                except AssertionError:
                    empty[title] = expr
        finally:
            clients.stop()
            stream.stop()
    TIMES["_panels"] = {"queries": len(targets), "without_data": empty}
    assert empty == {}, empty


def test_a_frozen_worker_leaves_the_pool_fires_worker_down_and_no_client_sees_an_error(reh):
    quiet(reh, "RecsysWorkerDown")
    frozen = reh.workers[1]
    clients = Clients(reh, USERS)
    clients.start()
    try:
        wait_until(lambda: sum(clients.statuses.values()) >= 20, 30, what="clients running")
        caused = time.monotonic()
        os.kill(frozen.proc.pid, signal.SIGSTOP)
        try:
            wait_until(lambda: reh.pool() == ["worker-1"], 30, 0.1, "the frozen worker out of the pool")
            out_s = time.monotonic() - caused
            wait_until(lambda: reh.alert_state("RecsysWorkerDown") == "firing", 60, 0.25, "RecsysWorkerDown")
            fired = time.monotonic() - caused
            # Frozen longer than a client's patience (HAProxy's old 30 s server timeout) and the
            # group's session timeout: requests sent to it before it left the pool must be sent
            # again elsewhere, and its users' partitions move to the other worker meanwhile.
            time.sleep(max(0.0, FREEZE_S - (time.monotonic() - caused)))   # the scenario's length, not a wait
        finally:
            os.kill(frozen.proc.pid, signal.SIGCONT)
        thawed = time.monotonic()
        wait_until(lambda: reh.pool() == ["worker-1", "worker-2"], 120, 0.2, "the worker back in the pool")
        back_s = time.monotonic() - thawed
        wait_until(lambda: reh.alert_state("RecsysWorkerDown") is None, 60, 0.25, "RecsysWorkerDown resolved")
        TIMES["RecsysWorkerDown (SIGSTOP)"] = {"cause": "a worker frozen (SIGSTOP): its scrapes time out",
                                     "fire_s": round(fired, 1), "resolve_s": round(time.monotonic() - thawed, 1)}
    finally:
        statuses = clients.stop()
    TIMES["_haproxy"] = {"out_of_pool_s": round(out_s, 1), "back_in_pool_s": round(back_s, 1),
                         "requests": sum(statuses.values()), "statuses": {str(k): v for k, v in statuses.items()},
                         "degraded_answers": clients.degraded, "slowest_s": round(clients.slowest_s, 2)}
    # Out within its failed checks as the shipped config sets them (fall x (inter + check
    # timeout)), plus 2 s for where the freeze fell in the cycle and the stats page's polling.
    assert out_s < check_window_s() + 2, TIMES["_haproxy"]
    assert set(statuses) == {200}, TIMES["_haproxy"]


def test_dead_letters_and_a_shifted_stream_fire_their_alerts_and_resolve(reh):
    quiet(reh, "RecsysDeadLetters")
    caused = time.monotonic()
    produce(reh.kafka.bootstrap, [("amazon-product-views", b"u-bad", b"not json")])
    fires_and_resolves(reh, "RecsysDeadLetters", "one record that is not JSON", fire_s=60, resolve_s=120,
                       caused_at=caused, removed=lambda: None)
    # Drift: the worker's baseline is the shop's categories; a window of one new category.
    quiet(reh, "RecsysDriftAlert")
    with Stream(reh.kafka.bootstrap, 80, category="cat-shifted") as stream:
        caused = time.monotonic()
        fires_and_resolves(reh, "RecsysDriftAlert", "a window of views of one new category", fire_s=90,
                           resolve_s=180, caused_at=caused, removed=stream.stop)


def test_late_records_fire_freshness(reh):
    quiet(reh, "RecsysFreshnessP99High")
    with Stream(reh.kafka.bootstrap, 40, late_s=1.0) as stream:
        caused = time.monotonic()
        fires_and_resolves(reh, "RecsysFreshnessP99High", "records arriving 1 s after their Kafka timestamp",
                           fire_s=120, resolve_s=120, caused_at=caused, removed=stream.stop)


def test_postgres_down_fires_sink_retries_and_lag_and_nothing_is_lost(reh):
    ids: list[str] = []
    quiet(reh, "RecsysSinkRetrying", "RecsysConsumerLagGrowing", "RecsysConsumerTimeLagHigh")
    with Stream(reh.kafka.bootstrap, 60) as stream:
        caused = time.monotonic()
        reh.postgres.stop()
        try:
            wait_until(lambda: reh.alert_state("RecsysSinkRetrying") == "firing", 90, 0.25, "RecsysSinkRetrying")
            TIMES["RecsysSinkRetrying"] = {"cause": "PostgreSQL stopped under a stream",
                                           "fire_s": round(time.monotonic() - caused, 1)}
            wait_until(lambda: reh.alert_state("RecsysConsumerLagGrowing") == "firing", 180, 0.25,
                       "RecsysConsumerLagGrowing")
            TIMES["RecsysConsumerLagGrowing"] = {"cause": "PostgreSQL stopped under a stream: the workers hold records until they are stored",
                                                 "fire_s": round(time.monotonic() - caused, 1)}
            wait_until(lambda: reh.alert_state("RecsysConsumerTimeLagHigh") == "firing", 180, 0.25,
                       "RecsysConsumerTimeLagHigh")
            TIMES["RecsysConsumerTimeLagHigh"] = {"cause": "the same outage, past 60 s behind",
                                                  "fire_s": round(time.monotonic() - caused, 1)}
            # Serving needs no database: both workers stay in the pool and answer.
            assert len(reh.pool()) == 2
            status, body = http("GET", f"{reh.lb_url}/api/recommendations/{USERS[1]}",
                                headers={"Authorization": f"Bearer {reh.read_token}"})
            assert status == 200 and "degraded" not in body, body
        finally:
            ids = stream.stop()
            restarted = time.monotonic()
            reh.postgres.restart()
    for name in ("RecsysSinkRetrying", "RecsysConsumerLagGrowing", "RecsysConsumerTimeLagHigh"):
        wait_until(lambda: reh.alert_state(name) is None, 180, 0.25, f"{name} resolved")
        TIMES[name]["resolve_s"] = round(time.monotonic() - restarted, 1)
    wait_until(lambda: stored(reh, ids) == len(ids), 120, what="every event of the outage stored")
    TIMES["_outage"] = {"events": len(ids), "stored": stored(reh, ids)}


def test_a_killed_worker_fires_worker_down_and_resolves_when_it_is_back(reh):
    quiet(reh, "RecsysWorkerDown")
    victim = reh.workers[1]
    caused = time.monotonic()
    victim.kill()

    def restart() -> None:
        victim.start()
        victim.wait_ready(180)

    fires_and_resolves(reh, "RecsysWorkerDown", "a worker SIGKILLed, then started again", fire_s=60,
                       resolve_s=240, caused_at=caused, removed=restart, key="RecsysWorkerDown (SIGKILL)")
    whole_pool(reh, 60, "both workers in the pool")


def test_brokers_down_make_workers_not_ready_and_they_recover(reh):
    quiet(reh, "RecsysWorkerNotReady")
    caused = time.monotonic()
    reh.kafka.kill()

    def brokers_back() -> None:
        for node in reh.kafka.nodes:
            reh.kafka.start_node(node, wait=False)
        reh.kafka.wait_ready(120)

    fires_and_resolves(reh, "RecsysWorkerNotReady", "all three brokers SIGKILLed, then started again",
                       fire_s=90, resolve_s=240, caused_at=caused, removed=brokers_back)
    whole_pool(reh, 120, "both workers back in the pool")
    status, body = http("GET", f"{reh.lb_url}/api/recommendations/{USERS[0]}",
                        headers={"Authorization": f"Bearer {reh.read_token}"})
    assert status == 200 and "degraded" not in body, body


def test_the_retrainer_kept_its_heartbeat_and_every_rule_was_proven(reh):
    beat = reh.workdir / "retrain.alive"
    assert reh.retrainer.poll() is None and time.time() - beat.stat().st_mtime < 60
    proven = {name.split(" ")[0] for name in TIMES if not name.startswith("_")}
    assert proven == set(ALERTS), sorted(set(ALERTS) - proven)
