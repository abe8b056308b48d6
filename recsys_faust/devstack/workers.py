"""Worker processes (``faust -A recsys_faust worker``) started, watched and stopped from Python.

Used by ``recsys-faust dev``, the benchmarks and the integration tests alike, so all three
run the real thing: a separate process, its own data dir and web port, talking Kafka and HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Optional

from .ports import free_port


class WorkerProcess:
    def __init__(
        self,
        name: str,
        env: Mapping[str, str],
        data_dir: Path,
        *,
        port: Optional[int] = None,
        log_path: Optional[Path] = None,
        loglevel: str = "info",
        app_module: str = "recsys_faust",
    ) -> None:
        self.name = name
        self.app_module = app_module
        self.port = port or free_port()
        self.data_dir = data_dir
        self.log_path = log_path or data_dir.parent / f"{name}.log"
        self.loglevel = loglevel
        self.env = {
            **os.environ,
            **env,
            "WEB_PORT": str(self.port),
            "WEB_HOST": "127.0.0.1",
            "WEB_BIND": "127.0.0.1",
            "RECSYS_DATA_DIR": str(data_dir),
            "RECSYS_WORKER_NAME": name,
            "PYTHONUNBUFFERED": "1",
        }
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def argv(self) -> list[str]:
        """``faust -A <app> worker -l <level>``, by this interpreter."""
        return [sys.executable, "-m", "faust", "-A", self.app_module, "worker", "-l", self.loglevel]

    def start(self) -> "WorkerProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _operator_token(self) -> Optional[str]:
        """The worker's metrics or admin token (the first of its list), if it has one: the full
        health document needs it."""
        for name in ("RECSYS_METRICS_TOKEN", "RECSYS_API_TOKEN"):
            token = (self.env.get(name) or "").split(",")[0].strip()
            if token:
                return token
        return None

    def get(self, path: str, timeout: float = 5.0) -> tuple[int, Any]:
        """GET ``path`` as JSON; ``/api/health`` with the worker's operator token when it has one."""
        request = urllib.request.Request(self.url + path)
        token = self._operator_token() if path.startswith("/api/health") else None
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            body = err.read()
            try:
                return err.code, json.loads(body)
            except ValueError:
                return err.code, body.decode("utf-8", "replace")

    def get_text(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
            return resp.read().decode("utf-8")

    def wait_ready(self, timeout_s: float = 90.0) -> dict:
        """Until /api/health says the broker is up with partitions assigned."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"worker {self.name} exited ({self.proc.returncode}); log: {self.log_path}\n"
                                   + self.tail())
            try:
                status, body = self.get("/api/health", timeout=2)
                last = body
                if status == 200 and body["broker"]["status"] == "up" and body["popularity"]["caught_up"]:
                    return body
            except (OSError, ValueError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker {self.name} not ready after {timeout_s:.0f}s (last health {last});\n" + self.tail())

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful stop (SIGTERM): Faust commits, flushes and closes its tables."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None
