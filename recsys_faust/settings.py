"""One typed, frozen settings object, built from the environment (and a ``.env`` file).

Every size, window, timeout and weight that shapes behaviour lives here with a documented
default, so operators tune a deployment without reading code and tests build exact,
isolated configurations. Nothing else in the package reads ``os.environ``.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping, Optional

PACKAGE_DIR = Path(__file__).resolve().parent
#: Where a micro-batch's ALS maths runs (RECSYS_SCORING; ranking/scorer.py).
SCORING_MODES = ("process", "thread", "inline")



class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal ``.env`` file (KEY=VALUE, ``#`` comments, optional quotes)."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values


@dataclass(frozen=True)
class EventWeights:
    """How much one interaction counts, for popularity, affinities and (later) ALS confidence.

    Views are cheap signals, purchases strong ones; a review counts by its rating so a
    one-star review adds little.
    """

    view: float = 1.0
    purchase: float = 4.0
    review_per_star: float = 0.8

    def weight(self, kind: str, rating: Optional[float] = None) -> float:
        if kind == "view":
            return self.view
        if kind == "purchase":
            return self.purchase
        if kind == "review":
            return self.review_per_star * float(rating if rating is not None else 3)
        return 0.0

    def als_weight(self, kind: str, rating: Optional[float] = None) -> float:
        """The ALS input value: the weight relative to a purchase (a purchase is 1.0).

        Keeps ALS's alpha meaningful whatever the weight scale: datasets of plain
        interactions (sent as purchases) train exactly like implicit feedback with r = 1.
        """
        return self.weight(kind, rating) / self.purchase


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with defaults fit for one dev machine.

    Broker timeouts default to the values measured to make workers start in ~3 s on the dev
    broker (see BROKER_NOTES.md); production on Apache Kafka wants larger ones
    (e.g. 10 / 1 / 10 s), set through the environment.
    """

    # --- identity and wiring -------------------------------------------------------------
    app_id: str = "recsys-faust"
    broker: str = "kafka://127.0.0.1:9092"
    database_url: Optional[str] = None
    web_port: int = 6066
    web_host: str = field(default_factory=socket.gethostname)
    web_bind: str = "0.0.0.0"
    data_dir: Path = Path("./data")
    models_dir: Path = Path("./models")
    topics_file: Optional[Path] = None
    user_partitions: int = 0      # 0: as topics.yaml says; else overrides per-user topics (dev/test)
    replication_factor: int = 0   # 0: as topics.yaml says; 1 on a single dev broker
    api_token: Optional[str] = None
    worker_name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")

    # --- broker security ------------------------------------------------------------------
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: Optional[str] = None
    kafka_sasl_username: Optional[str] = None
    kafka_sasl_password: Optional[str] = None
    kafka_ssl_cafile: Optional[str] = None
    kafka_ssl_certfile: Optional[str] = None
    kafka_ssl_keyfile: Optional[str] = None

    # --- consumer group timing (seconds) -----------------------------------------------------
    broker_session_timeout: float = 2.0
    broker_heartbeat_interval: float = 0.3
    broker_rebalance_timeout: float = 2.0
    broker_request_timeout: float = 30.0
    broker_commit_interval: float = 1.0
    # Standby replicas make failover faster but are off by default: with them, a worker taking
    # over partitions mid-stream sometimes never resumed consuming them on the dev broker
    # (caught by the two-worker exactness test, ~1 run in 4); without them, 0 in 12 runs.
    table_standby_replicas: int = 0
    fetch_max_wait_ms: int = 25    # fetch long-poll: an upper bound on produce -> processed latency
    fetch_min_interval_ms: int = 8  # a fetch starts at least this long after the previous answer (0: at once)

    # --- producer (table changelogs, responses, dead letters) ------------------------------------
    producer_linger_s: float = 0.005          # batch changelog records for up to 5 ms
    producer_max_batch_bytes: int = 1_000_000   # bytes per partition batch

    # --- hot path sizes -----------------------------------------------------------------------
    batch_size: int = 500            # events taken per micro-batch
    batch_within: float = 0.02       # seconds to wait filling a batch (adds to freshness)
    max_event_bytes: int = 65_536    # larger payloads are dead-lettered
    max_future_skew_s: float = 86_400.0  # timestamps further in the future are rejected

    # --- profile state ------------------------------------------------------------------------
    profile_recent_items: int = 50       # recent interactions kept per user
    profile_recent_event_ids: int = 256  # event_ids remembered per user for idempotency
    tumbling_window_s: int = 3_600
    tumbling_expires_s: int = 86_400
    hopping_window_s: int = 3_600
    hopping_step_s: int = 900
    hopping_expires_s: int = 21_600

    # --- popularity and serving -----------------------------------------------------------------
    popularity_bucket_s: int = 3_600
    trending_window_s: int = 7 * 86_400
    trending_refresh_s: float = 0.5     # the ranked trending lists are rebuilt at most this often
    rec_list_size: int = 50             # items kept in each user's ready list
    affinity_boost: float = 1.0
    weights: EventWeights = field(default_factory=EventWeights)

    # --- ranking: item transitions and the blend (README, "Item transitions") -------------------
    transitions_max_successors: int = 100  # successors kept per item and partition (memory bound)
    blend_als_weight: float = 1.0          # weight of the z-scored ALS scores
    blend_transitions_weight: float = 0.75  # weight of the z-scored transition scores (0: off)

    metrics_snapshot_s: float = 60.0   # how often a worker posts its counters to amazon-system-metrics
    drift_window_s: float = 300.0      # tumbling window (processing time) of the drift detector
    drift_min_events: int = 500        # per feature and window per worker; smaller windows are not judged
    drift_threshold: float = 0.2       # population stability index above which an alert is published
    drift_max_buckets: int = 30        # buckets kept per feature (categories beyond are "(other)")
    gc_gen0_threshold: int = 50_000    # allocations between young GC passes (Python's default: 700)
    scoring: str = "process"           # where a micro-batch's ALS maths runs: process, thread or inline
    gil_switch_interval_s: float = 0.0005  # how soon a thread waiting for the GIL gets it (Python: 0.005)
    loop_watch_interval_s: float = 0.025  # event-loop lag probe (recsys_event_loop_lag_seconds); 0: off
    loop_stall_log_s: float = 0.05        # a loop stuck this long gets its stack logged

    # --- PostgreSQL sink ---------------------------------------------------------------------------
    sink_batch_size: int = 1_000       # records per sink transaction
    sink_batch_within: float = 0.2     # seconds to wait filling a sink batch
    db_pool_min: int = 1
    db_pool_max: int = 4
    db_max_backoff_s: float = 5.0      # cap of the retry backoff while PostgreSQL is down

    # --- ALS (implicit) ---------------------------------------------------------------------------
    als_factors: int = 128
    als_regularization: float = 1.0
    als_alpha: float = 10.0
    als_iterations: int = 15
    als_seed: int = 42
    max_model_bytes: int = 64 * 1024 * 1024  # largest model message on amazon-model-updates

    # --- RocksDB (per table partition) -----------------------------------------------------------
    rocksdb_write_buffer_size: int = 16 * 1024 * 1024
    rocksdb_max_write_buffer_number: int = 3
    rocksdb_target_file_size_base: int = 32 * 1024 * 1024
    rocksdb_block_cache_size: int = 32 * 1024 * 1024
    rocksdb_bloom_filter_size: int = 10
    rocksdb_max_open_files: int = 256

    @property
    def broker_urls(self) -> list[str]:
        return [u.strip() for u in self.broker.replace(";", ",").split(",") if u.strip()]

    @property
    def bootstrap_servers(self) -> list[str]:
        """host:port list for plain Kafka clients (the faust URL scheme stripped)."""
        out = []
        for url in self.broker_urls:
            out.append(url.split("://", 1)[1] if "://" in url else url)
        return out

    @property
    def web_url(self) -> str:
        return f"http://{self.web_host}:{self.web_port}"

    @property
    def persistence_enabled(self) -> bool:
        return bool(self.database_url)

    def resolved_topics_file(self) -> Path:
        """Where topics.yaml is: the setting, the working directory, then the source tree."""
        candidates = [self.topics_file] if self.topics_file else []
        candidates += [Path.cwd() / "topics.yaml", PACKAGE_DIR.parent / "topics.yaml"]
        for path in candidates:
            if path and path.is_file():
                return path
        raise SettingsError(
            "topics.yaml not found (set RECSYS_TOPICS_FILE); looked in: "
            + ", ".join(str(p) for p in candidates if p)
        )

    def with_overrides(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @classmethod
    def from_env(
        cls, environ: Optional[Mapping[str, str]] = None, dotenv: Optional[Path] = None
    ) -> "Settings":
        """Build settings from ``environ`` (default ``os.environ``) over a ``.env`` file.

        Real environment variables win over the file, as with docker and systemd.
        """
        source = os.environ if environ is None else environ
        if dotenv is None:
            # RECSYS_ENV_FILE names the file; set empty, no file is read (the test suite sets it
            # so that a developer's ./.env never reaches the workers and tools it starts).
            named = source.get("RECSYS_ENV_FILE")
            dotenv = Path(named) if named else (Path("/nonexistent") if named == "" else Path.cwd() / ".env")
        env: dict[str, str] = {}
        env.update(read_dotenv(dotenv))
        env.update(source)
        kwargs: dict[str, Any] = {}
        names = {f.name: f for f in fields(cls)}

        def put(attr: str, *variables: str) -> None:
            for var in variables:
                raw = env.get(var)
                if raw is None or raw == "":
                    continue
                kwargs[attr] = _coerce(names[attr].type, raw, var)
                return

        put("app_id", "RECSYS_APP_ID")
        put("broker", "KAFKA_BROKER", "BROKER_URL")
        put("database_url", "DATABASE_URL")
        put("web_port", "WEB_PORT")
        put("web_host", "WEB_HOST")
        put("web_bind", "WEB_BIND")
        put("data_dir", "RECSYS_DATA_DIR")
        put("models_dir", "RECSYS_MODELS_DIR")
        put("topics_file", "RECSYS_TOPICS_FILE")
        put("api_token", "RECSYS_API_TOKEN")
        put("worker_name", "RECSYS_WORKER_NAME")
        put("kafka_security_protocol", "KAFKA_SECURITY_PROTOCOL")
        put("kafka_sasl_mechanism", "KAFKA_SASL_MECHANISM")
        put("kafka_sasl_username", "KAFKA_SASL_USERNAME")
        put("kafka_sasl_password", "KAFKA_SASL_PASSWORD")
        put("kafka_ssl_cafile", "KAFKA_SSL_CAFILE")
        put("kafka_ssl_certfile", "KAFKA_SSL_CERTFILE")
        put("kafka_ssl_keyfile", "KAFKA_SSL_KEYFILE")
        # Every remaining field is reachable as RECSYS_<FIELD NAME IN CAPITALS>.
        for name in names:
            if name not in kwargs and name != "weights":
                put(name, f"RECSYS_{name.upper()}")
        weights = {}
        for wname in ("view", "purchase", "review_per_star"):
            raw = env.get(f"RECSYS_WEIGHT_{wname.upper()}")
            if raw:
                weights[wname] = _coerce("float", raw, f"RECSYS_WEIGHT_{wname.upper()}")
        if weights:
            kwargs["weights"] = EventWeights(**weights)
        settings = cls(**kwargs)
        settings.validate()
        return settings

    def validate(self) -> None:
        positive = [
            "batch_size", "max_event_bytes", "profile_recent_items", "profile_recent_event_ids",
            "tumbling_window_s", "hopping_window_s", "hopping_step_s", "popularity_bucket_s",
            "trending_window_s", "rec_list_size", "web_port", "gc_gen0_threshold", "gil_switch_interval_s",
            "loop_stall_log_s",
            "drift_window_s", "drift_min_events", "drift_threshold", "drift_max_buckets",
            "transitions_max_successors",
        ]
        for name in positive:
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if self.fetch_min_interval_ms < 0:
            raise SettingsError(f"RECSYS_FETCH_MIN_INTERVAL_MS must be >= 0 (0: off), got {self.fetch_min_interval_ms!r}")
        if self.loop_watch_interval_s < 0:
            raise SettingsError(f"loop_watch_interval_s must be >= 0 (0: off), got {self.loop_watch_interval_s!r}")
        if self.blend_als_weight < 0 or self.blend_transitions_weight < 0:
            raise SettingsError("RECSYS_BLEND_ALS_WEIGHT and RECSYS_BLEND_TRANSITIONS_WEIGHT must be >= 0")
        if self.scoring not in SCORING_MODES:
            raise SettingsError(f"RECSYS_SCORING={self.scoring!r}: expected one of {', '.join(SCORING_MODES)}")
        if self.hopping_window_s % self.hopping_step_s:
            raise SettingsError("RECSYS_HOPPING_WINDOW_S must be a multiple of RECSYS_HOPPING_STEP_S")
        if not self.broker_urls:
            raise SettingsError("KAFKA_BROKER is empty")


def _coerce(type_name: Any, raw: str, var: str) -> Any:
    text = str(type_name)
    try:
        if "bool" in text:
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if "int" in text and "Optional" not in text:
            return int(raw)
        if "float" in text:
            return float(raw)
        if "Path" in text:
            return Path(raw)
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r} is not a valid {text}") from exc
    return raw
